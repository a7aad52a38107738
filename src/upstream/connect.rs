//! Opening a new connection to an endpoint: TCP, then TLS when the endpoint's transport asks
//! for it (docs/security.md#upstream-tls), then the HTTP/1.1 or HTTP/2 handshake — HTTP/2 by
//! prior knowledge over cleartext (RFC 9113 §3.3), by ALPN over TLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::client::conn::http1;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::failure::{ConnectFailure, TlsFailure};
use super::h2_stream::H2Sender;
use super::keep_alive::KeepAlive;
use super::transport::TlsTarget;
use super::{Endpoint, RequestBody};
use crate::config::UpstreamProtocol;

/// How often an idle HTTP/2 upstream connection is PINGed, and how long the answer may take.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control windows and buffers of an upstream connection.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
pub(super) const INITIAL_MAX_STREAMS: usize = 100;

/// Why a new connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect and TLS handshake did not finish within `connect_timeout`.
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
    /// The TLS handshake failed: the certificate was refused (unknown issuer, name mismatch,
    /// expired), the peer refused ours, or the TLS settings could not be loaded.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// Endpoint address.
        addr: SocketAddr,
        /// The kind of failure, as counted and named in rollback reasons.
        kind: TlsFailure,
        /// rustls's reason, as logged.
        reason: String,
    },
    /// The HTTP handshake failed.
    #[error("HTTP handshake with {addr} failed")]
    Handshake {
        /// Endpoint address.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The HTTP/2 handshake (preface and SETTINGS) failed.
    #[error("HTTP/2 handshake with {addr} failed")]
    Http2Handshake {
        /// Endpoint address.
        addr: SocketAddr,
        /// h2's error.
        #[source]
        source: h2::Error,
    },
}

impl ConnectError {
    /// The kind of failure, as the analysis names it.
    pub fn failure(&self) -> ConnectFailure {
        match self {
            ConnectError::Timeout { .. } => ConnectFailure::Timeout,
            ConnectError::Io { source, .. } => ConnectFailure::of_io(source),
            ConnectError::Tls { kind, .. } => ConnectFailure::Tls(*kind),
            ConnectError::Handshake { .. } | ConnectError::Http2Handshake { .. } => {
                ConnectFailure::Other
            }
        }
    }
}

/// A new connection, ready for its first request.
pub(super) enum Connected {
    Http1(http1::SendRequest<RequestBody>),
    Http2 {
        sender: H2Sender,
        /// The peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, kept current by the connection task
        /// (0 once the connection ended).
        max_streams: Arc<AtomicUsize>,
    },
}

/// Connect (TCP and TLS within `timeout`), and start the connection's task on the current
/// runtime.
pub(super) async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    let addr = endpoint.addr();
    let transport = endpoint.transport();
    let opened = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| ConnectError::Io { addr, source })?;
        match transport.tls() {
            None => Ok(Opened::Plain(stream)),
            Some(TlsTarget::Broken(reason)) => Err(ConnectError::Tls {
                addr,
                kind: TlsFailure::Settings,
                reason: reason.to_string(),
            }),
            Some(TlsTarget::Ready {
                connector,
                server_name,
            }) => connector
                .connect(server_name.clone(), stream)
                .await
                .map(|tls| Opened::Tls(Box::new(tls)))
                .map_err(|e| ConnectError::Tls {
                    addr,
                    kind: TlsFailure::of_handshake(&e),
                    reason: e.to_string(),
                }),
        }
    })
    .await;
    let opened = match opened {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(error)) => {
            if let ConnectError::Tls { reason, .. } = &error {
                // An operator needs to see why: a certificate problem does not fix itself.
                tracing::warn!(endpoint = %addr, %reason, "upstream TLS handshake failed");
            }
            return Err(error);
        }
        Ok(Ok(opened)) => opened,
    };
    match opened {
        Opened::Plain(stream) => {
            if transport.protocol() == UpstreamProtocol::Http2 {
                return handshake_h2(stream, addr).await;
            }
            handshake(TokioIo::new(stream), addr).await
        }
        Opened::Tls(stream) => {
            let h2 = match transport.protocol() {
                UpstreamProtocol::Http1 => false,
                UpstreamProtocol::Http2 => true,
                UpstreamProtocol::Auto => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
            };
            if h2 {
                return handshake_h2(*stream, addr).await;
            }
            handshake(TokioIo::new(*stream), addr).await
        }
    }
}

enum Opened {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The HTTP/2 connection preface and SETTINGS, then the connection's task: it reads and writes
/// the frames of every stream (`h2_stream.rs`), keeps the peer's stream limit current, and
/// PINGs the peer (`keep_alive.rs`).
async fn handshake_h2<I>(io: I, addr: SocketAddr) -> Result<Connected, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        // hyper's client defaults, which this replaced: larger windows than RFC 9113's 64 KiB
        // default, so a response is not held up by WINDOW_UPDATE round trips.
        .initial_window_size(STREAM_WINDOW)
        // The stream limit until the peer's SETTINGS arrive, which the pool starts from (h2's
        // own default is unlimited): the least RFC 9113 §6.5.2 recommends a peer allow.
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|source| ConnectError::Http2Handshake { addr, source })?;
    let max_streams = Arc::new(AtomicUsize::new(sender.current_max_send_streams()));
    let limit = max_streams.clone();
    let mut keep_alive =
        KeepAlive::new(connection.ping_pong(), H2_KEEP_ALIVE, H2_KEEP_ALIVE_TIMEOUT);
    tokio::spawn(async move {
        // Polled by hand so the peer's stream limit is read after every frame it sends
        // (SETTINGS may lower or raise it at any time).
        let ended = std::future::poll_fn(|cx| {
            if keep_alive.poll_timed_out(cx).is_ready() {
                return Poll::Ready(Err(None));
            }
            let polled = Pin::new(&mut connection).poll(cx).map_err(Some);
            limit.store(connection.max_concurrent_send_streams(), Ordering::Relaxed);
            polled
        })
        .await;
        limit.store(0, Ordering::Relaxed);
        match ended {
            Ok(()) => {}
            Err(None) => {
                tracing::debug!(%addr, "upstream HTTP/2 connection did not answer a PING in time")
            }
            Err(Some(e)) => {
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended with an error")
            }
        }
    });
    Ok(Connected::Http2 {
        sender,
        max_streams,
    })
}

async fn handshake<I>(io: I, addr: SocketAddr) -> Result<Connected, ConnectError>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // With upgrades, a 101 hands the socket over to the tunnel instead of closing it.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Connected::Http1(sender))
}
