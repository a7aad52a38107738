//! What a short read tells the reactor: the socket's receive queue is empty, so its readable
//! readiness can go without asking the kernel again.
//!
//! tokio keeps a socket readable after a non-blocking read (`try_read`) until a read fails
//! with `WouldBlock`, so the next look at the socket costs a `recvfrom` that finds nothing:
//! two per proxied HTTP/1.1 request (the client's next head at the boundary, the idle
//! upstream connection's quiet check), HAProxy making none. tokio's own `poll_read` drops the
//! readiness after a read that did not fill its buffer (with epoll, that read proves the queue
//! drained); canaryd's non-blocking reads do the same here
//! (docs/performance.md#the-client-side-fast-path).

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// After a read of `read` bytes into room for `asked`: a read that stopped short of its room
/// emptied the receive queue, so forget the readiness that read used. Bytes that arrive later
/// make the reactor see the socket readable again; the readiness is dropped only if the
/// reactor saw nothing new since, so no wake-up is lost.
pub(crate) fn after_read(io: &TcpStream, read: usize, asked: usize) {
    if read > 0 && read < asked {
        let _ = io.try_io(Interest::READABLE, || {
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::after_read;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// Whether the reactor still calls the socket readable, without waiting.
    async fn readable_now(io: &TcpStream) -> bool {
        poll_fn(|cx| Poll::Ready(io.poll_read_ready(cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_short_read_forgets_readiness_and_the_next_bytes_bring_it_back() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.try_read(&mut buf).unwrap();
        assert_eq!(n, 18);
        assert!(
            readable_now(&server).await,
            "tokio keeps it readable by itself"
        );
        after_read(&server, n, buf.len());
        assert!(
            !readable_now(&server).await,
            "the drained socket is not readable"
        );

        // Nothing is lost: the next bytes wake the socket again.
        client.write_all(b"next").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), server.readable())
            .await
            .expect("readable again once bytes arrive")
            .unwrap();
        assert_eq!(server.try_read(&mut buf).unwrap(), 4);
    }

    #[tokio::test]
    async fn a_full_read_keeps_readiness_for_what_may_still_wait() {
        let (mut client, server) = pair().await;
        client.write_all(b"0123456789").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = [0u8; 4];
        let n = server.try_read(&mut buf).unwrap();
        after_read(&server, n, buf.len());
        assert!(readable_now(&server).await);
        assert_eq!(server.try_read(&mut buf).unwrap(), 4);
    }
}
