//! The body sent to an upstream: the client's body streamed as it arrives, or a buffered copy.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body on its way to an upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed frame by frame without buffering.
    Streamed(Incoming),
    /// As `Streamed`, and the watch says whether the upstream is waiting for the client.
    Watched(Incoming, BodyWatch),
    /// A body already in memory (mirrored copies), possibly empty.
    Buffered(Option<Bytes>),
}

/// Whether the last read of a streamed client body found nothing to read: the upstream
/// connection is waiting for the client's bytes, so a `request_timeout` running out now is the
/// client's stall (`docs/routing.md#5-errors-made-by-the-proxy`), not the upstream's.
///
/// One small allocation for a request that has a body; a request without one is not watched.
#[derive(Debug, Clone, Default)]
pub struct BodyWatch(Arc<AtomicBool>);

impl BodyWatch {
    /// The client has not sent the next bytes of its body that the upstream asked for.
    pub fn waits_for_client(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streamed(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Watched(body, watch) => {
                let polled = Pin::new(body).poll_frame(cx);
                watch.0.store(polled.is_pending(), Ordering::Relaxed);
                polled
            }
            RequestBody::Buffered(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(body) | RequestBody::Watched(body, _) => body.is_end_stream(),
            RequestBody::Buffered(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streamed(body) | RequestBody::Watched(body, _) => body.size_hint(),
            RequestBody::Buffered(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
