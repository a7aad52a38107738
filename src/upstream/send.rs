//! Taking a connection to an endpoint and sending one request over it.

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::client::conn::http1;
use tokio::sync::watch;

use super::connect::{connect, ConnectError, Connected};
use super::failure::ConnectFailure;
use super::h2_stream::{self, H2Sender, StreamError};
use super::http1::{self as engine, SendFailure, Socket, SocketState};
use super::pool::{self, OpenOutcome, StreamOrWait, StreamSlot};
use super::{Endpoint, ExchangeError, InFlight, InformationalHook, RequestBody, UpstreamBody};
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
    Http2(H2Sender, StreamSlot),
    /// A connection of canaryd's own HTTP/1.1 engine; its response body takes it.
    Own(Option<Socket>),
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
    /// The HTTP/2 connection this request waited for, opened by another request, failed.
    #[error("connect to {addr} failed ({failure}) for the requests sharing it")]
    Shared {
        /// Endpoint address.
        addr: std::net::SocketAddr,
        /// How it failed.
        failure: ConnectFailure,
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
            AcquireError::Shared { failure, .. } => *failure,
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
    Failed(ExchangeError),
}

/// Why a head given as bytes got no response ([`Conn::send_head`]).
#[derive(Debug)]
pub enum HeadSendError {
    /// Not processed by the upstream (as [`SendError::NotSent`]): it can go to another
    /// connection.
    NotSent,
    /// The exchange failed after the head was (possibly) processed.
    Failed(ExchangeError),
}

/// A request sent by [`Conn::send`] never fails as a head given as bytes; should it, the
/// exchange is broken.
fn head_only() -> SendError {
    SendError::Failed(engine::Error::Closed.into())
}

/// A pooled connection to the endpoint (an idle HTTP/1.1 one, or a stream on a shared HTTP/2
/// one), or a new one.
pub async fn acquire(
    endpoint: &Arc<Endpoint>,
    connect_timeout: Duration,
) -> Result<Conn, AcquireError> {
    let in_flight = endpoint.begin_request();
    if endpoint.drives_own_http1() {
        if let Some(socket) = engine::take(endpoint) {
            return Ok(Conn {
                sender: Sender::Own(Some(socket)),
                in_flight,
                reused: true,
            });
        }
        return fresh(in_flight, connect_timeout).await;
    }
    let protocol = endpoint.transport().protocol();
    let mut opening = None;
    // With "auto", ALPN may yet pick HTTP/1.1, whose connections are not shared: requests wait
    // for a connection being opened only once this worker has seen the endpoint choose h2.
    let shares_connections = protocol == UpstreamProtocol::Http2
        || (protocol == UpstreamProtocol::Auto && pool::has_spoken_h2(endpoint));
    if shares_connections {
        loop {
            match pool::take_stream_or_wait(endpoint) {
                StreamOrWait::Stream(sender, slot) => {
                    return Ok(Conn {
                        sender: Sender::Http2(sender, slot),
                        in_flight,
                        reused: true,
                    })
                }
                StreamOrWait::Wait(outcome) => {
                    if !wait_for_opening(outcome, endpoint.addr(), connect_timeout).await? {
                        break;
                    }
                }
                StreamOrWait::Open(guard) => {
                    opening = Some(guard);
                    break;
                }
            }
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
    let conn = fresh(in_flight, connect_timeout).await;
    if let Some(opening) = opening {
        opening.finish(match &conn {
            Ok(conn) if conn.is_http2() => OpenOutcome::Opened,
            Ok(_) => OpenOutcome::Http1,
            Err(e) => OpenOutcome::Failed(e.failure()),
        });
    }
    conn
}

/// Wait for a connection another request is opening: `Ok(true)` means look again (it is open,
/// or its opener gave up), `Ok(false)` open a connection of its own (ALPN chose HTTP/1.1), an
/// error is the opening's own failure.
async fn wait_for_opening(
    mut outcome: watch::Receiver<OpenOutcome>,
    addr: std::net::SocketAddr,
    connect_timeout: Duration,
) -> Result<bool, AcquireError> {
    let ended = outcome.wait_for(|o| *o != OpenOutcome::Pending);
    match tokio::time::timeout(connect_timeout, ended).await {
        Ok(Ok(ended)) => match *ended {
            OpenOutcome::Failed(failure) => Err(AcquireError::Shared { addr, failure }),
            OpenOutcome::Http1 => Ok(false),
            OpenOutcome::Pending | OpenOutcome::Opened => Ok(true),
        },
        // The opener was cancelled with its request.
        Ok(Err(_)) => Ok(true),
        Err(_) => Err(AcquireError::Shared {
            addr,
            failure: ConnectFailure::Timeout,
        }),
    }
}

async fn fresh(in_flight: InFlight, connect_timeout: Duration) -> Result<Conn, AcquireError> {
    let endpoint = in_flight.endpoint();
    if endpoint.drives_own_http1() {
        // Boxed for the reason `connect` is below.
        let socket = Box::pin(SocketState::connect(endpoint.addr(), connect_timeout)).await?;
        return Ok(Conn {
            sender: Sender::Own(Some(socket)),
            in_flight,
            reused: false,
        });
    }
    // Boxed: the connect future (TCP, TLS, the HTTP/1.1 or HTTP/2 handshake) is kilobytes, and
    // unboxed it would be part of every request's future, copied on each move even when the
    // request takes a pooled connection (docs/performance.md#small-request-futures).
    let sender = match Box::pin(connect(endpoint, connect_timeout)).await? {
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

    /// Whether this is a stream on an HTTP/2 connection.
    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::Http2(..))
    }

    /// Send the request and wait for the response head.
    ///
    /// The request comes boxed, and leaves its box only for hyper: each async function it
    /// passes through by value keeps a slot of its size in its future
    /// (docs/performance.md#small-request-futures).
    pub async fn send(
        &mut self,
        mut request: Box<Request<RequestBody>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match &mut self.sender {
            Sender::Own(socket) => {
                let Some(socket) = socket.take() else {
                    return Err(SendError::NotSent(request));
                };
                // Started without waiting, so the request itself is not held across the wait.
                let endpoint = self.in_flight.endpoint();
                let exchange = match engine::send(socket, request, endpoint, self.reused) {
                    Ok(exchange) => exchange,
                    Err(SendFailure::NotSent(request)) => return Err(SendError::NotSent(request)),
                    Err(SendFailure::Failed(e)) => return Err(SendError::Failed(e.into())),
                    Err(SendFailure::HeadNotSent) => return Err(head_only()),
                };
                match exchange.await {
                    Ok(response) => Ok(response.map(UpstreamBody::Own)),
                    Err(SendFailure::NotSent(request)) => Err(SendError::NotSent(request)),
                    Err(SendFailure::Failed(e)) => Err(SendError::Failed(e.into())),
                    Err(SendFailure::HeadNotSent) => Err(head_only()),
                }
            }
            Sender::Http1(sender) => {
                if let Some(hook) = request.extensions_mut().remove::<InformationalHook>() {
                    hyper::ext::on_informational(&mut *request, move |response| {
                        hook.call(response.status(), response.headers());
                    });
                }
                match sender.try_send_request(*request).await {
                    Ok(response) => Ok(response.map(UpstreamBody::Hyper)),
                    Err(mut e) => match e.take_message() {
                        Some(request) => Err(SendError::NotSent(Box::new(request))),
                        None => Err(SendError::Failed(e.into_error().into())),
                    },
                }
            }
            Sender::Http2(sender, slot) => {
                let tls = self.in_flight.endpoint().transport().is_tls();
                let addr = self.in_flight.endpoint().addr();
                absolute_form(&mut request, tls, addr);
                // Without a body, a request the peer did not process can be sent again; one
                // whose body was streamed away cannot.
                let again = request.body().is_end_stream().then(|| head_copy(&request));
                match h2_stream::exchange(sender, request).await {
                    Ok(response) => {
                        slot.connection().settle();
                        Ok(response.map(UpstreamBody::H2))
                    }
                    Err(StreamError::NotOpened(request)) => {
                        slot.connection().retire();
                        Err(SendError::NotSent(request))
                    }
                    Err(StreamError::Failed(error)) => {
                        if not_processed(&error) {
                            slot.connection().retire();
                            if let Some(request) = again {
                                return Err(SendError::NotSent(request));
                            }
                        }
                        Err(SendError::Failed(error.into()))
                    }
                }
            }
        }
    }

    /// Send a bodiless request whose head is already written — the fast path's
    /// (docs/performance.md#the-client-side-fast-path) — on a connection of canaryd's own
    /// engine, and wait for the response head (its 1xx heads to `hook`). [`HeadSendError::NotSent`] as
    /// [`SendError::NotSent`]: the caller still has the head to send on another connection.
    pub async fn send_head(
        &mut self,
        head: &[u8],
        method: &http::Method,
        hook: Option<&InformationalHook>,
    ) -> Result<Response<UpstreamBody>, HeadSendError> {
        let Sender::Own(socket) = &mut self.sender else {
            // The fast path takes only requests whose endpoints all use the engine.
            return Err(HeadSendError::Failed(engine::Error::Closed.into()));
        };
        let Some(socket) = socket.take() else {
            return Err(HeadSendError::NotSent);
        };
        let endpoint = self.in_flight.endpoint();
        let sent = engine::send_head(socket, head, method, hook.cloned(), endpoint, self.reused);
        let answer = match sent {
            Ok(exchange) => exchange.await,
            Err(failure) => Err(failure),
        };
        match answer {
            Ok(response) => Ok(response.map(UpstreamBody::Own)),
            Err(SendFailure::HeadNotSent | SendFailure::NotSent(_)) => Err(HeadSendError::NotSent),
            Err(SendFailure::Failed(e)) => Err(HeadSendError::Failed(e.into())),
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
    /// worker; an HTTP/2 stream gives its place back. (A connection of canaryd's engine went
    /// back to the pool when its body ended, or was closed.)
    pub fn release(self) {
        if let Sender::Http1(sender) = self.sender {
            pool::put(self.in_flight.endpoint(), sender);
        }
    }
}

/// HTTP/2 carries the target as `:scheme` and `:authority` (RFC 9113 §8.3.1): the `Host` the
/// request was routed with becomes the authority.
fn absolute_form(request: &mut Request<RequestBody>, tls: bool, addr: std::net::SocketAddr) {
    let authority = request
        .headers_mut()
        .remove(HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .or_else(|| Authority::try_from(addr.to_string()).ok());
    let mut uri = std::mem::take(request.uri_mut()).into_parts();
    uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    uri.authority = authority;
    if let Ok(absolute) = Uri::from_parts(uri) {
        *request.uri_mut() = absolute;
    }
    *request.version_mut() = http::Version::HTTP_2;
}

/// A bodiless request's head, to send it again (the informational hook is HTTP/1's alone).
fn head_copy(request: &Request<RequestBody>) -> Box<Request<RequestBody>> {
    let mut copy = Box::new(Request::new(RequestBody::Buffered(None)));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The peer never processed the stream: it was refused (`REFUSED_STREAM`) or above the last
/// stream id of the peer's GOAWAY (RFC 9113 §8.7), so it can go to another connection.
fn not_processed(error: &h2::Error) -> bool {
    // A GOAWAY with an error code also fails streams it did process: only the graceful one
    // (NO_ERROR) fails nothing but the streams it left out.
    let graceful_go_away =
        error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR);
    graceful_go_away || error.reason() == Some(h2::Reason::REFUSED_STREAM)
}
