//! The response body sent to the client, and the outcome recorded when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::h2_idle::StreamGuard;
use crate::config::Version;
use crate::metrics::{Outcome, RouteMetrics, UpstreamErrorKind};
use crate::upstream::Conn;

/// A response body: the upstream's, streamed, or a small one the proxy made.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    completion: Option<Completion>,
    /// Keeps the HTTP/2 stream counted as open until the body is done (see `h2_idle.rs`).
    stream: Option<StreamGuard>,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

/// What happens when an upstream response ends: its outcome is recorded once, and the upstream
/// connection goes back to the pool only if the response completed.
#[derive(Debug)]
pub struct Completion {
    /// Counters of the route that served the request.
    pub metrics: Arc<RouteMetrics>,
    /// The version the outcome counts for.
    pub version: Version,
    /// The upstream's status.
    pub status: u16,
    /// When the request arrived.
    pub started: Instant,
    /// The upstream connection, reusable once the body is fully read.
    pub conn: Conn,
    /// `false` when the response's framing makes its connection untrustworthy for another
    /// request (`Content-Length` with `Transfer-Encoding`): it is closed, never pooled.
    pub reusable: bool,
}

impl Completion {
    fn finish(self, outcome: Outcome) {
        self.metrics
            .record(self.version, outcome, self.started.elapsed());
        if let (Outcome::Status(_), true) = (outcome, self.reusable) {
            self.conn.release();
        }
    }
}

impl ResponseBody {
    /// The upstream's body; `completion` runs when it ends.
    pub fn upstream(body: Incoming, completion: Completion) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body),
            completion: Some(completion),
            stream: None,
        }
    }

    /// A body made by the proxy.
    pub fn local(text: &'static str) -> Self {
        ResponseBody {
            inner: Inner::Local(Some(Bytes::from_static(text.as_bytes()))),
            completion: None,
            stream: None,
        }
    }

    /// A body made by the proxy from bytes it built for this request.
    pub fn local_bytes(bytes: Bytes) -> Self {
        ResponseBody {
            inner: Inner::Local(Some(bytes)),
            completion: None,
            stream: None,
        }
    }

    /// Count the HTTP/2 stream this body answers as open until the body is dropped.
    pub(super) fn hold_stream(&mut self, stream: StreamGuard) {
        self.stream = Some(stream);
    }

    fn complete(&mut self, outcome: Outcome) {
        if let Some(completion) = self.completion.take() {
            completion.finish(outcome);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Upstream(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        let status = this.completion.as_ref().map_or(0, |c| c.status);
                        this.complete(Outcome::Status(status));
                    }
                    Poll::Ready(Some(Err(_))) => {
                        // The upstream died mid-body: the client sees an aborted response.
                        this.complete(Outcome::UpstreamError(UpstreamErrorKind::Reset));
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let Some(completion) = self.completion.take() else {
            return;
        };
        // hyper stops polling once a length-delimited body is complete, and never polls the body
        // of a HEAD/204/304 response, so "ended" is judged from the body's own state.
        let ended = match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(_) => true,
        };
        let outcome = if ended {
            Outcome::Status(completion.status)
        } else {
            Outcome::ClientGone
        };
        completion.finish(outcome);
    }
}
