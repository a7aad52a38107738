//! Closing an HTTP/1 client connection without destroying its last answer
//! (`docs/security.md#lingering-close`, RFC 9112 §9.6).
//!
//! A connection closed while the client's bytes are still unread (the rest of a head over
//! `max_header_bytes`, a body behind a framing error, a pipelined request) makes the kernel
//! answer with a TCP reset instead of a FIN, and a reset can discard the answer still in
//! flight before the client reads it. So the write side is shut first (the client sees the
//! whole answer and a FIN), then whatever the client still sends is read and thrown away until
//! it closes too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`], as nginx's
//! `lingering_close` and HAProxy do.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest a closing connection is read and discarded.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// The most bytes a closing connection reads and discards before it closes regardless.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Shut the write side of `socket`, then read and discard until the client closes, for at most
/// [`LINGER_TIME`] and [`LINGER_BYTES`]; the socket closes when dropped after that.
pub async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    // A client that reads nothing could hold the flush of a TLS close_notify for ever.
    if !matches!(
        tokio::time::timeout_at(deadline, socket.shutdown()).await,
        Ok(Ok(()))
    ) {
        return;
    }
    // Small: a lingering connection should cost little more than its socket. On the heap:
    // inline, these bytes would be part of every connection task's size from its accept on,
    // idle or not (docs/performance.md#memory-per-idle-connection).
    let mut discard = vec![0u8; 2048];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, socket.read(&mut discard)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            // The client closed (0), the socket failed, or time is up.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_until_the_peer_closes_and_sends_a_fin_first() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(b"unread bytes").await.unwrap();
        let closing = tokio::spawn(lingering_close(ours));
        // Our side shut its writes: the peer reads end of stream, not an error.
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(theirs);
        closing.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_time_bound() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        lingering_close(ours).await;
        assert_eq!(started.elapsed(), LINGER_TIME);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_byte_bound() {
        let (ours, mut theirs) = tokio::io::duplex(LINGER_BYTES * 4);
        let started = tokio::time::Instant::now();
        let closing = tokio::spawn(lingering_close(ours));
        let endless = tokio::spawn(async move {
            let chunk = [b'x'; 4096];
            let mut sent = 0;
            while theirs.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        closing.await.unwrap();
        assert!(started.elapsed() < LINGER_TIME);
        let sent = endless.await.unwrap();
        assert!(sent <= LINGER_BYTES * 5 + 4096, "{sent}");
    }
}
