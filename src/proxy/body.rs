//! The response body sent to the client, and the outcome recorded when it ends: judged by the
//! route's `[route.failures]` (docs/rollouts.md#what-counts-as-a-failure) — the status, or for
//! a gRPC call the `grpc-status` of its trailers — when the upstream's body completes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::grpc::grpc_status;
use super::h2_idle::StreamGuard;
use crate::config::{EjectionConfig, Version};
use crate::metrics::{Answer, Outcome, UpstreamErrorKind};
use crate::routing::Route;
use crate::upstream::{Conn, ExchangeError, UpstreamBody};

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
    Upstream(UpstreamBody),
    Local(Option<Bytes>),
}

/// How a completed answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// By its status.
    Status,
    /// A gRPC call, by its `grpc-status`: from the headers of a trailers-only answer, else
    /// from the trailers; a 200 that ends without one is a failure.
    Grpc(Option<u8>),
    /// The upstream said itself (`outcome_header`): failed or not.
    Marked(bool),
    /// A path in `ignore_paths`: never counted.
    Ignored,
}

/// How the upstream's body ended.
#[derive(Debug, Clone, Copy)]
enum End {
    Complete,
    Reset,
    ClientGone,
}

/// What happens when an upstream response ends: its outcome is recorded once, and the upstream
/// connection goes back to the pool only if the response completed.
#[derive(Debug)]
pub struct Completion {
    /// The route that served the request: its counters and its `[route.failures]`.
    pub route: Arc<Route>,
    /// The version the outcome counts for.
    pub version: Version,
    /// The upstream's status.
    pub status: u16,
    /// When the request arrived.
    pub started: Instant,
    /// The upstream connection, reusable once the body is fully read.
    pub conn: Conn,
    /// How the answer is judged.
    pub judge: Judge,
    /// Passive ejection, for what only the end of a gRPC call tells.
    pub ejection: EjectionConfig,
    /// `false` when the response's framing makes its connection untrustworthy for another
    /// request (`Content-Length` with `Transfer-Encoding`): it is closed, never pooled.
    pub reusable: bool,
}

impl Completion {
    fn finish(self, end: End) {
        let outcome = match end {
            End::Complete => Outcome::Answer(self.answer()),
            End::Reset => Outcome::UpstreamError(UpstreamErrorKind::Reset),
            End::ClientGone => Outcome::ClientGone,
        };
        if self.judge != Judge::Ignored {
            self.route
                .metrics
                .record(self.version, outcome, self.started.elapsed());
        }
        if let (Judge::Grpc(_), End::Complete | End::Reset) = (self.judge, end) {
            // A gRPC call's health is known only now (its status was 200).
            let failed = outcome.class() == crate::metrics::OutcomeClass::Failure;
            self.conn.endpoint().record(!failed, &self.ejection);
        }
        if let (End::Complete, true) = (end, self.reusable) {
            self.conn.release();
        }
    }

    fn answer(&self) -> Answer {
        let failures = &self.route.failures;
        let status = self.status;
        match self.judge {
            Judge::Grpc(code) if status == 200 => match code {
                Some(code) => Answer {
                    status,
                    failed: failures.grpc_fails(u32::from(code)),
                    grpc_code: Some(code),
                },
                // Ended without saying how: counted as UNKNOWN, and always a failure.
                None => Answer {
                    status,
                    failed: true,
                    grpc_code: Some(2),
                },
            },
            Judge::Marked(failed) => Answer {
                status,
                failed,
                grpc_code: None,
            },
            Judge::Grpc(_) | Judge::Status | Judge::Ignored => Answer {
                status,
                failed: failures.status_fails(status),
                grpc_code: None,
            },
        }
    }
}

impl ResponseBody {
    /// The upstream's body; `completion` runs when it ends.
    pub fn upstream(body: UpstreamBody, completion: Completion) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body),
            completion: Some(completion),
            stream: None,
        }
    }

    /// An empty body made by the proxy (a gRPC trailers-only answer).
    pub fn empty() -> Self {
        ResponseBody {
            inner: Inner::Local(None),
            completion: None,
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

    fn complete(&mut self, end: End) {
        if let Some(completion) = self.completion.take() {
            completion.finish(end);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Upstream(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => this.complete(End::Complete),
                    Poll::Ready(Some(Err(_))) => {
                        // The upstream died mid-body: the client sees an aborted response.
                        this.complete(End::Reset);
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(trailers), Some(completion)) =
                            (frame.trailers_ref(), this.completion.as_mut())
                        {
                            if let Judge::Grpc(code) = &mut completion.judge {
                                *code = grpc_status(trailers).or(*code);
                            }
                        }
                    }
                    Poll::Pending => {}
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
        completion.finish(if ended {
            End::Complete
        } else {
            End::ClientGone
        });
    }
}
