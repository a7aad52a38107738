//! Opening a new HTTP/1.1 connection to an endpoint.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::RequestBody;

/// Why a new connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect did not finish within `connect_timeout`.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// Endpoint address.
        addr: SocketAddr,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The TCP connect failed (refused, unreachable, …).
    #[error("connect to {addr} failed")]
    Io {
        /// Endpoint address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("HTTP handshake with {addr} failed")]
    Handshake {
        /// Endpoint address.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// Connect, disable Nagle, and start the connection's task on the current runtime.
pub(super) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<SendRequest<RequestBody>, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(stream)) => stream,
    };
    stream
        .set_nodelay(true)
        .map_err(|source| ConnectError::Io { addr, source })?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // With upgrades, a 101 hands the socket over to the tunnel instead of closing it.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
