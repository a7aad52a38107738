//! Taking a connection to an endpoint and sending one request over it.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::connect::{connect, ConnectError};
use super::{pool, Endpoint, InFlight, RequestBody};

/// A connection to an endpoint, with the request it carries counted in flight.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<RequestBody>,
    in_flight: InFlight,
    reused: bool,
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
}

/// Why a request failed on a connection.
#[derive(Debug)]
pub enum SendError {
    /// The connection closed before the request was written (a stale keep-alive connection):
    /// nothing reached the upstream and the request is handed back for another try.
    NotSent(Box<Request<RequestBody>>),
    /// The exchange failed after the request was (possibly) written.
    Failed(hyper::Error),
}

/// An idle pooled connection to the endpoint, or a new one.
pub async fn acquire(
    endpoint: &Arc<Endpoint>,
    connect_timeout: Duration,
) -> Result<Conn, AcquireError> {
    let in_flight = endpoint.begin_request();
    while let Some(mut sender) = pool::take(endpoint) {
        // A returned connection may still be finishing its last exchange; this resolves at once
        // in the common case and fails if the upstream closed it meanwhile.
        if sender.ready().await.is_ok() {
            return Ok(Conn {
                sender,
                in_flight,
                reused: true,
            });
        }
    }
    fresh(in_flight, connect_timeout).await
}

async fn fresh(in_flight: InFlight, connect_timeout: Duration) -> Result<Conn, AcquireError> {
    let sender = connect(in_flight.endpoint().addr(), connect_timeout).await?;
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

    /// Whether this connection came from the idle pool.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Send the request and wait for the response head.
    pub async fn send(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        match self.sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::NotSent(Box::new(request))),
                None => Err(SendError::Failed(e.into_error())),
            },
        }
    }

    /// Replace a stale pooled connection with a new one to the same endpoint.
    pub async fn reconnect(self, connect_timeout: Duration) -> Result<Conn, AcquireError> {
        fresh(self.in_flight, connect_timeout).await
    }

    /// The response completed: keep the connection for the next request on this worker.
    pub fn release(self) {
        pool::put(self.in_flight.endpoint(), self.sender);
    }
}
