//! Errors the proxy answers for itself, mapped to a status and an outcome in this one place.

use http::StatusCode;

use crate::metrics::{Outcome, UpstreamErrorKind};
use crate::upstream::{AcquireError, ConnectFailure, ExchangeError};

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
    /// A request target canaryd cannot forward: `CONNECT` with anything but an authority
    /// (RFC 9112 §3.2.3), or an absolute-form target whose scheme is not `http` or `https`.
    #[error("bad request target")]
    BadTarget,
    /// A request `Transfer-Encoding` with a coding other than `chunked` (RFC 9112 §6.1: 501).
    #[error("request transfer coding not implemented")]
    UnsupportedTransferCoding,
    /// The client stopped sending its request body until `request_timeout` ran out.
    #[error("the client did not send its request body in time")]
    ClientBodyTimeout,
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
    Upstream(#[source] ExchangeError),
    /// The upstream answered `101` to a request that did not ask for that protocol (or for
    /// none, or over HTTP/2, which has no 101).
    #[error("upstream switched protocols unasked")]
    UnsolicitedSwitch,
    /// The upstream's response has a transfer coding other than `chunked` and the client
    /// (HTTP/1.0 or HTTP/2) cannot receive one.
    #[error("upstream transfer coding cannot reach this client")]
    UndeliverableTransferCoding,
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequestBody
            | ProxyError::AmbiguousFraming
            | ProxyError::BadHost
            | ProxyError::MalformedHeader
            | ProxyError::BadTarget => StatusCode::BAD_REQUEST,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoEndpoint
            | ProxyError::Connect(_)
            | ProxyError::Upstream(_)
            | ProxyError::UnsolicitedSwitch
            | ProxyError::UndeliverableTransferCoding => StatusCode::BAD_GATEWAY,
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
            ProxyError::BadTarget => "bad request target\n",
            ProxyError::UnsupportedTransferCoding => "transfer coding not implemented\n",
            ProxyError::ClientBodyTimeout => "request body timeout\n",
            ProxyError::NoEndpoint | ProxyError::Connect(_) => "upstream connect failed\n",
            ProxyError::Upstream(_)
            | ProxyError::UnsolicitedSwitch
            | ProxyError::UndeliverableTransferCoding => "upstream error\n",
            ProxyError::Timeout => "upstream timeout\n",
        }
    }

    /// The `grpc-status` a gRPC client gets instead of [`Self::status`]
    /// (docs/routing.md#grpc): the proxy's own errors reach a gRPC client as gRPC.
    pub fn grpc_code(&self) -> u8 {
        match self {
            // UNIMPLEMENTED: nothing serves this method here.
            ProxyError::NoRoute => 12,
            // UNIMPLEMENTED: a transfer coding canaryd does not decode, as 501 says to HTTP.
            ProxyError::UnsupportedTransferCoding => 12,
            // INTERNAL: what gRPC answers a request it cannot read (and what it maps 400 to).
            ProxyError::BadRequestBody
            | ProxyError::AmbiguousFraming
            | ProxyError::BadHost
            | ProxyError::MalformedHeader
            | ProxyError::BadTarget => 13,
            // UNAVAILABLE: the one code a client may retry on its own; gRPC maps 502 to it, and
            // an upstream's broken answer (a 101 nobody asked for, a coding the client cannot
            // receive) is a 502.
            ProxyError::NoEndpoint
            | ProxyError::Connect(_)
            | ProxyError::Upstream(_)
            | ProxyError::UnsolicitedSwitch
            | ProxyError::UndeliverableTransferCoding => 14,
            // DEADLINE_EXCEEDED: time ran out, the upstream's answer or the client's own body
            // (`ClientBodyTimeout`, 408: the call did not finish in time; CANCELLED would say the
            // client gave up, and it did not).
            ProxyError::Timeout | ProxyError::ClientBodyTimeout => 4,
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
            | ProxyError::MalformedHeader
            | ProxyError::BadTarget
            | ProxyError::UnsupportedTransferCoding
            | ProxyError::ClientBodyTimeout => None,
            // No address: every endpoint name of the version failed to resolve.
            ProxyError::NoEndpoint => Some(Outcome::UpstreamError(UpstreamErrorKind::Connect(
                ConnectFailure::Dns,
            ))),
            ProxyError::Connect(error) => Some(Outcome::UpstreamError(UpstreamErrorKind::Connect(
                error.failure(),
            ))),
            ProxyError::Timeout => Some(Outcome::UpstreamError(UpstreamErrorKind::Timeout)),
            // A protocol violation by the upstream is a broken exchange, as invalid framing is.
            ProxyError::Upstream(_)
            | ProxyError::UnsolicitedSwitch
            | ProxyError::UndeliverableTransferCoding => {
                Some(Outcome::UpstreamError(UpstreamErrorKind::Reset))
            }
        }
    }

    /// Whether the client's request was broken in a way that leaves the rest of its
    /// connection's bytes untrusted to start another request: its framing, body or head (a
    /// body canaryd did not read to its end included).
    pub fn distrusts_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequestBody
                | ProxyError::AmbiguousFraming
                | ProxyError::BadHost
                | ProxyError::MalformedHeader
                | ProxyError::BadTarget
                | ProxyError::UnsupportedTransferCoding
                | ProxyError::ClientBodyTimeout
        )
    }
}
