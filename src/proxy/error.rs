//! Errors the proxy answers for itself, mapped to a status and an outcome in this one place.

use http::StatusCode;

use crate::metrics::{Outcome, UpstreamErrorKind};
use crate::upstream::AcquireError;

/// A request the proxy could not forward.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the request's host and path.
    #[error("no route for this host and path")]
    NoRoute,
    /// The client's body broke off or was malformed (bad chunk size, early close).
    #[error("request body could not be read")]
    BadRequestBody,
    /// The request's framing is ambiguous (`Transfer-Encoding: chunked, chunked`).
    #[error("ambiguous request framing")]
    AmbiguousFraming,
    /// `Host` missing (HTTP/1.1), repeated, or not a valid `host[:port]`; or an authority
    /// with a userinfo part.
    #[error("missing, repeated or invalid host")]
    BadHost,
    /// An HTTP/2 field value with leading or trailing whitespace.
    #[error("malformed header field")]
    MalformedHeader,
    /// The version's endpoints resolved to no address.
    #[error("no endpoint available")]
    NoEndpoint,
    /// Every attempt to connect failed.
    #[error("cannot connect to upstream")]
    Connect(#[source] AcquireError),
    /// The upstream's response head did not arrive within `request_timeout`.
    #[error("upstream response timed out")]
    Timeout,
    /// The upstream broke the exchange before a response head arrived.
    #[error("upstream exchange failed")]
    Upstream(#[source] hyper::Error),
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequestBody
            | ProxyError::AmbiguousFraming
            | ProxyError::BadHost
            | ProxyError::MalformedHeader => StatusCode::BAD_REQUEST,
            ProxyError::NoEndpoint | ProxyError::Connect(_) | ProxyError::Upstream(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The small text body the client gets.
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route\n",
            ProxyError::BadRequestBody => "bad request body\n",
            ProxyError::AmbiguousFraming => "bad request framing\n",
            ProxyError::BadHost => "bad host\n",
            ProxyError::MalformedHeader => "malformed header field\n",
            ProxyError::NoEndpoint | ProxyError::Connect(_) => "upstream connect failed\n",
            ProxyError::Upstream(_) => "upstream error\n",
            ProxyError::Timeout => "upstream timeout\n",
        }
    }

    /// The `grpc-status` a gRPC client gets instead of [`Self::status`]
    /// (docs/routing.md#grpc): the proxy's own errors reach a gRPC client as gRPC.
    pub fn grpc_code(&self) -> u8 {
        match self {
            // UNIMPLEMENTED: nothing serves this method here.
            ProxyError::NoRoute => 12,
            // INTERNAL: what gRPC answers a request it cannot read.
            ProxyError::BadRequestBody
            | ProxyError::AmbiguousFraming
            | ProxyError::BadHost
            | ProxyError::MalformedHeader => 13,
            // UNAVAILABLE: the one code a client may retry on its own.
            ProxyError::NoEndpoint | ProxyError::Connect(_) | ProxyError::Upstream(_) => 14,
            // DEADLINE_EXCEEDED.
            ProxyError::Timeout => 4,
        }
    }

    /// How the error counts against the version the request was meant for; `None` when no
    /// version was chosen.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            // The client's fault, not the version's.
            ProxyError::NoRoute
            | ProxyError::BadRequestBody
            | ProxyError::AmbiguousFraming
            | ProxyError::BadHost
            | ProxyError::MalformedHeader => None,
            ProxyError::NoEndpoint | ProxyError::Connect(_) => {
                Some(Outcome::UpstreamError(UpstreamErrorKind::Connect))
            }
            ProxyError::Timeout => Some(Outcome::UpstreamError(UpstreamErrorKind::Timeout)),
            ProxyError::Upstream(_) => Some(Outcome::UpstreamError(UpstreamErrorKind::Reset)),
        }
    }

    /// Whether the client's request was broken in a way that leaves the rest of its
    /// connection's bytes untrusted to start another request: its framing, body or head.
    pub fn distrusts_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequestBody
                | ProxyError::AmbiguousFraming
                | ProxyError::BadHost
                | ProxyError::MalformedHeader
        )
    }
}
