//! An upstream response as the proxy sees it, whichever client brought it: its body
//! ([`UpstreamBody`]), how that body fails ([`ExchangeError`]), the socket a `101` leaves
//! ([`UpstreamUpgrade`]), and where the 1xx heads before it go ([`InformationalHook`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::h2_stream::H2Body;
use super::http1::{self, OwnBody};

/// A response body from an upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From hyper's HTTP/1.1 client (TLS, or `proxy.http1_engine = "hyper"`).
    Hyper(Incoming),
    /// A stream of an HTTP/2 connection (`h2_stream.rs`).
    H2(H2Body),
    /// From canaryd's own HTTP/1.1 engine.
    Own(OwnBody),
}

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// hyper's client reported it.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// canaryd's engine reported it.
    #[error(transparent)]
    Own(#[from] http1::Error),
    /// An HTTP/2 stream or its connection failed.
    #[error(transparent)]
    H2(#[from] h2::Error),
}

impl ExchangeError {
    /// The client's request body broke (bad chunk, early close), not the upstream.
    pub fn is_user(&self) -> bool {
        match self {
            ExchangeError::Hyper(e) => e.is_user(),
            ExchangeError::Own(e) => e.is_user(),
            // Only the proxy itself resets a stream as its user: when the client's request
            // body broke on its way (`h2_stream.rs`).
            ExchangeError::H2(e) => e.is_reset() && !e.is_remote() && !e.is_library(),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(ExchangeError::Hyper))),
            UpstreamBody::Own(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(ExchangeError::Own))),
            UpstreamBody::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(ExchangeError::H2))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(body) => body.is_end_stream(),
            UpstreamBody::Own(body) => body.is_end_stream(),
            UpstreamBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(body) => body.size_hint(),
            UpstreamBody::Own(body) => body.size_hint(),
            UpstreamBody::H2(body) => body.size_hint(),
        }
    }
}

/// The upstream's side of a `101`, once it is had.
pub enum UpstreamUpgrade {
    /// hyper resolves it after the response.
    Hyper(OnUpgrade),
    /// canaryd's engine had the socket at once.
    Own(Option<http1::Upgraded>),
}

/// A switched upstream connection, for a tunnel.
pub trait UpgradedIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedIo for T {}

impl UpstreamUpgrade {
    /// Take the upstream's side of the `101` in `response`.
    pub fn on(response: &mut Response<UpstreamBody>) -> Self {
        if let UpstreamBody::Own(body) = response.body_mut() {
            return UpstreamUpgrade::Own(body.upgrade());
        }
        UpstreamUpgrade::Hyper(hyper::upgrade::on(response))
    }

    /// The switched connection.
    pub async fn io(self) -> Result<Box<dyn UpgradedIo>, String> {
        match self {
            UpstreamUpgrade::Hyper(on) => match on.await {
                Ok(upgraded) => Ok(Box::new(TokioIo::new(upgraded))),
                Err(e) => Err(e.to_string()),
            },
            UpstreamUpgrade::Own(Some(upgraded)) => Ok(Box::new(upgraded)),
            UpstreamUpgrade::Own(None) => {
                Err("the upstream's switched connection is gone".to_owned())
            }
        }
    }
}

/// Where an upstream's 1xx heads before its final one go: put on the request by the proxy,
/// called by either client (hyper's through `hyper::ext::on_informational`).
#[derive(Clone)]
pub struct InformationalHook(Arc<dyn ForwardInformational>);

/// What an [`InformationalHook`] calls.
trait ForwardInformational: Fn(StatusCode, &HeaderMap) + Send + Sync {}
impl<F: Fn(StatusCode, &HeaderMap) + Send + Sync> ForwardInformational for F {}

impl InformationalHook {
    /// A hook calling `forward` with each 1xx's status and fields.
    pub fn new(forward: impl Fn(StatusCode, &HeaderMap) + Send + Sync + 'static) -> Self {
        InformationalHook(Arc::new(forward))
    }

    /// Pass one 1xx on.
    pub fn call(&self, status: StatusCode, headers: &HeaderMap) {
        (self.0)(status, headers);
    }
}

impl std::fmt::Debug for InformationalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationalHook")
    }
}
