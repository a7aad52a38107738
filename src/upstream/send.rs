//! Taking a connection to an endpoint and sending one request over it.

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use super::connect::{connect, ConnectError, Connected};
use super::failure::ConnectFailure;
use super::pool::{self, StreamSlot};
use super::{Endpoint, InFlight, RequestBody};
use crate::config::UpstreamProtocol;

/// A connection to an endpoint, with the request it carries counted in flight.
#[derive(Debug)]
pub struct Conn {
    sender: Sender,
    in_flight: InFlight,
    reused: bool,
}

#[derive(Debug)]
enum Sender {
    /// An HTTP/1.1 connection, this request's alone until it is released.
    Http1(http1::SendRequest<RequestBody>),
    /// A stream on a shared HTTP/2 connection.
    Http2(http2::SendRequest<RequestBody>, StreamSlot),
}

/// Why no usable connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// A new connection could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A new connection closed before the request could be written.
    #[error("connection to {addr} closed before the request was sent")]
    Closed {
        /// Endpoint address.
        addr: std::net::SocketAddr,
    },
}

impl AcquireError {
    /// A fresh connection that closed at once.
    pub fn closed(addr: std::net::SocketAddr) -> Self {
        AcquireError::Closed { addr }
    }

    /// The kind of failure, as the analysis names it.
    pub fn failure(&self) -> ConnectFailure {
        match self {
            AcquireError::Connect(error) => error.failure(),
            AcquireError::Closed { .. } => ConnectFailure::Other,
        }
    }
}

/// Why a request failed on a connection.
#[derive(Debug)]
pub enum SendError {
    /// The request was not processed by the upstream: the connection closed before it was
    /// written (a stale keep-alive connection), or an HTTP/2 peer refused the stream or left
    /// it out of its GOAWAY (RFC 9113 §8.7). It is handed back for another try.
    NotSent(Box<Request<RequestBody>>),
    /// The exchange failed after the request was (possibly) processed.
    Failed(hyper::Error),
}

/// A pooled connection to the endpoint (an idle HTTP/1.1 one, or a stream on a shared HTTP/2
/// one), or a new one.
pub async fn acquire(
    endpoint: &Arc<Endpoint>,
    connect_timeout: Duration,
) -> Result<Conn, AcquireError> {
    let in_flight = endpoint.begin_request();
    let protocol = endpoint.transport().protocol();
    if protocol != UpstreamProtocol::Http1 {
        if let Some((sender, slot)) = pool::take_stream(endpoint) {
            return Ok(Conn {
                sender: Sender::Http2(sender, slot),
                in_flight,
                reused: true,
            });
        }
    }
    if protocol != UpstreamProtocol::Http2 {
        while let Some(mut sender) = pool::take(endpoint) {
            // A returned connection may still be finishing its last exchange; this resolves at
            // once in the common case and fails if the upstream closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Ok(Conn {
                    sender: Sender::Http1(sender),
                    in_flight,
                    reused: true,
                });
            }
        }
    }
    fresh(in_flight, connect_timeout).await
}

async fn fresh(in_flight: InFlight, connect_timeout: Duration) -> Result<Conn, AcquireError> {
    let endpoint = in_flight.endpoint();
    let sender = match connect(endpoint, connect_timeout).await? {
        Connected::Http1(sender) => Sender::Http1(sender),
        Connected::Http2 {
            sender,
            max_streams,
        } => {
            let slot = pool::add_connection(endpoint, sender.clone(), max_streams);
            Sender::Http2(sender, slot)
        }
    };
    Ok(Conn {
        sender,
        in_flight,
        reused: false,
    })
}

impl Conn {
    /// The endpoint this connection goes to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        self.in_flight.endpoint()
    }

    /// Whether this connection came from the pool.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Send the request and wait for the response head.
    pub async fn send(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        match &mut self.sender {
            Sender::Http1(sender) => match sender.try_send_request(request).await {
                Ok(response) => Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(request) => Err(SendError::NotSent(Box::new(request))),
                    None => Err(SendError::Failed(e.into_error())),
                },
            },
            Sender::Http2(sender, slot) => {
                let tls = self.in_flight.endpoint().transport().is_tls();
                let addr = self.in_flight.endpoint().addr();
                let request = absolute_form(request, tls, addr);
                // Without a body, a request the peer did not process can be sent again; one
                // whose body was streamed away cannot.
                let again = request.body().is_end_stream().then(|| head_copy(&request));
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        slot.connection().settle();
                        Ok(response)
                    }
                    Err(mut e) => {
                        if let Some(request) = e.take_message() {
                            return Err(SendError::NotSent(Box::new(request)));
                        }
                        let error = e.into_error();
                        if not_processed(&error) {
                            slot.connection().retire();
                            if let Some(request) = again {
                                return Err(SendError::NotSent(Box::new(request)));
                            }
                        }
                        Err(SendError::Failed(error))
                    }
                }
            }
        }
    }

    /// Replace a stale pooled connection (or a closing HTTP/2 one) with another to the same
    /// endpoint: a stream on another shared connection, or a new connection.
    pub async fn reconnect(self, connect_timeout: Duration) -> Result<Conn, AcquireError> {
        let Conn {
            sender, in_flight, ..
        } = self;
        if let Sender::Http2(..) = sender {
            drop(sender);
            if let Some((sender, slot)) = pool::take_stream(in_flight.endpoint()) {
                return Ok(Conn {
                    sender: Sender::Http2(sender, slot),
                    in_flight,
                    reused: true,
                });
            }
        }
        fresh(in_flight, connect_timeout).await
    }

    /// The response completed: an HTTP/1.1 connection is kept for the next request on this
    /// worker; an HTTP/2 stream gives its place back.
    pub fn release(self) {
        if let Sender::Http1(sender) = self.sender {
            pool::put(self.in_flight.endpoint(), sender);
        }
    }
}

/// HTTP/2 carries the target as `:scheme` and `:authority` (RFC 9113 §8.3.1): the `Host` the
/// request was routed with becomes the authority.
fn absolute_form(
    request: Request<RequestBody>,
    tls: bool,
    addr: std::net::SocketAddr,
) -> Request<RequestBody> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .headers
        .remove(HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .or_else(|| Authority::try_from(addr.to_string()).ok());
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    uri.authority = authority;
    if let Ok(absolute) = Uri::from_parts(uri) {
        parts.uri = absolute;
    }
    parts.version = http::Version::HTTP_2;
    Request::from_parts(parts, body)
}

/// A bodiless request's head, to send it again (the informational hook is HTTP/1's alone).
fn head_copy(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::Buffered(None));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The peer never processed the stream: it was refused (`REFUSED_STREAM`) or above the last
/// stream id of the peer's GOAWAY (RFC 9113 §8.7), so it can go to another connection.
fn not_processed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            // A GOAWAY with an error code also fails streams it did process: only the graceful
            // one (NO_ERROR) fails nothing but the streams it left out.
            let graceful_go_away =
                h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
            return graceful_go_away || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = e.source();
    }
    false
}
