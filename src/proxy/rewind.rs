//! A client socket with bytes put back in front of it.
//!
//! Bytes already read from a connection but not yet consumed — the few bytes read to tell an
//! HTTP/2 preface from an HTTP/1 request, or what hyper had read past the last request of a
//! round (`http1_rounds.rs`) — are read again, first, by whoever reads the socket next.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::write_through::write_through;

/// A socket that replays `prefix` before reading from `inner`.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// A socket with nothing put back.
    pub fn new(inner: T) -> Self {
        Rewind {
            prefix: Bytes::new(),
            inner,
        }
    }

    /// Put `bytes` back in front of whatever is still waiting to be replayed.
    pub fn put_back(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.prefix = if self.prefix.is_empty() {
            bytes
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            joined.freeze()
        };
    }

    /// Replace whatever waits to be replayed with `bytes` (a reader that took the waiting bytes
    /// and read more from the socket gives back what it did not use, in order).
    pub fn replace_put_back(&mut self, bytes: Bytes) {
        self.prefix = bytes;
    }

    /// Whether bytes are waiting to be replayed (then the next read does not touch the socket).
    pub fn has_put_back(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// The bytes waiting to be replayed, without taking them.
    pub fn put_back_bytes(&self) -> &[u8] {
        &self.prefix
    }

    /// Drop the first `n` bytes waiting to be replayed (a reader that looked at them with
    /// [`Rewind::put_back_bytes`] took them).
    pub fn consume_put_back(&mut self, n: usize) {
        self.prefix.advance(n.min(self.prefix.len()));
        if self.prefix.is_empty() {
            self.prefix = Bytes::new();
        }
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let go of the buffer the bytes came from.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Rewind);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn put_back_bytes_come_first_and_in_order() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut rewind = Rewind::new(client);
        rewind.put_back(Bytes::from_static(b"cd"));
        rewind.put_back(Bytes::from_static(b"ab"));
        assert!(rewind.has_put_back());
        server.write_all(b"ef").await.unwrap();
        drop(server);
        let mut all = Vec::new();
        rewind.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdef");
        assert!(!rewind.has_put_back());
    }

    #[tokio::test]
    async fn a_small_read_takes_part_of_the_put_back_bytes() {
        let (client, _server) = tokio::io::duplex(64);
        let mut rewind = Rewind::new(client);
        rewind.put_back(Bytes::from_static(b"hello"));
        let mut two = [0u8; 2];
        rewind.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        assert!(rewind.has_put_back());
        let mut rest = [0u8; 3];
        rewind.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"llo");
    }
}
