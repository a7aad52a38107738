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
