//! Forwarding an upstream's 1xx informational responses (`103 Early Hints` and the like) to
//! an HTTP/1.1 client (`docs/security.md#protocol-conformance`).
//!
//! hyper 1.12's server has no way to send a 1xx (it writes only its own `100 Continue`), so
//! canaryd writes them into the client socket underneath hyper, through [`InformationalIo`].
//! The one rule that keeps the byte stream well-formed: a 1xx is written only while hyper's own
//! write buffer is empty. hyper calls the socket's `poll_flush` only once its buffer is drained,
//! so "flushed and nothing written since" means every byte of earlier responses is out, and the
//! final response the 1xx belongs to cannot have been started (it needs the upstream's final
//! head, which comes after its 1xx). A 1xx that arrives while hyper still holds unwritten bytes
//! (a pipelining client that has not read its previous answer) is dropped rather than risk
//! landing inside that answer.
//!
//! Not forwarded: `100 Continue` (hyper's server answers `Expect` itself when the body is read),
//! `101` (upgrades have their own path), anything to an HTTP/1.0 client (RFC 9110 §15.2), and
//! anything on HTTP/2: h2 can send a 1xx (`send_informational`), but hyper's server keeps each
//! stream's sender to itself.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::headers::remove_hop_by_hop;

/// At most this many bytes of 1xx heads wait for the socket; more are dropped.
const MAX_PENDING: usize = 64 * 1024;

/// One HTTP/1 client connection's queue of 1xx heads waiting to be written.
#[derive(Debug, Default)]
pub struct Informational {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Serialised 1xx heads, not yet written.
    pending: Vec<u8>,
    /// hyper flushed its write buffer and has written nothing since.
    hyper_drained: bool,
    /// The connection task, woken so that a 1xx goes out before the final response is ready.
    waker: Option<Waker>,
}

impl Default for State {
    fn default() -> Self {
        // Nothing was written before the first request.
        State {
            pending: Vec::new(),
            hyper_drained: true,
            waker: None,
        }
    }
}

impl Informational {
    /// Queue an upstream's informational response for the client, if it is one to forward.
    pub fn forward(&self, status: StatusCode, headers: &HeaderMap) {
        if !status.is_informational()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return;
        }
        let mut headers = headers.clone();
        remove_hop_by_hop(&mut headers);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.hyper_drained {
            tracing::debug!(%status, "informational response dropped: an earlier response is still being written");
            return;
        }
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        // Names and values are valid `http` types: no CR, LF or NUL can get in.
        for (name, value) in &headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        if state.pending.len() + head.len() > MAX_PENDING {
            tracing::debug!(%status, "informational response dropped: too many waiting");
            return;
        }
        state.pending.extend_from_slice(&head);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// A client socket that writes queued 1xx heads while hyper's write buffer is empty.
#[derive(Debug)]
pub struct InformationalIo<T> {
    inner: T,
    /// `None` on HTTP/2 connections: a pass-through.
    queue: Option<Arc<Informational>>,
}

impl<T> InformationalIo<T> {
    /// Wrap a socket; `queue` is where this connection's 1xx heads wait.
    pub fn new(inner: T, queue: Option<Arc<Informational>>) -> Self {
        InformationalIo { inner, queue }
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The socket underneath.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsyncWrite + Unpin> InformationalIo<T> {
    /// Write every waiting 1xx head; `Pending` until they are all out.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(queue) = &self.queue else {
            return Poll::Ready(Ok(()));
        };
        let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &state.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    state.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// hyper is about to write: its buffer is no longer empty.
    fn hyper_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A 1xx queued while hyper was drained belongs before whatever hyper writes now.
        std::task::ready!(self.write_pending(cx))?;
        if let Some(queue) = &self.queue {
            queue
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .hyper_drained = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for InformationalIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InformationalIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.hyper_writes(cx))?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.hyper_writes(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes the socket only once its own buffer is empty.
        if let Some(queue) = &self.queue {
            let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.hyper_drained = true;
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
        }
        std::task::ready!(self.write_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forwardable_informational_responses_are_queued() {
        let queue = Informational::default();
        let mut headers = HeaderMap::new();
        headers.insert("link", "</a.css>; rel=preload".parse().unwrap());
        headers.insert("connection", "x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        for status in [100, 101, 200, 404] {
            queue.forward(StatusCode::from_u16(status).unwrap(), &headers);
        }
        assert!(queue.state.lock().unwrap().pending.is_empty());
        queue.forward(StatusCode::EARLY_HINTS, &headers);
        let pending = String::from_utf8(queue.state.lock().unwrap().pending.clone()).unwrap();
        assert_eq!(
            pending,
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn nothing_is_queued_while_hyper_has_unwritten_bytes() {
        let queue = Informational::default();
        queue.state.lock().unwrap().hyper_drained = false;
        queue.forward(StatusCode::EARLY_HINTS, &HeaderMap::new());
        assert!(queue.state.lock().unwrap().pending.is_empty());
    }
}
