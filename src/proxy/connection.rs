//! One client connection from accept to close: the TLS handshake, the protocol (ALPN on TLS,
//! the HTTP/2 preface on plain TCP), and the serving loop of that protocol.
//!
//! Plain HTTP/1.1 is served in rounds (`http1_rounds.rs`), so an idle connection holds no
//! hyper buffers. HTTP/2 and TLS HTTP/1.1 keep one hyper connection for their life: an HTTP/2
//! connection multiplexes streams and has no idle boundary to stop at, and rustls holds
//! buffers of its own for a TLS connection's life anyway.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::conn_timer::{CountingIo, HeadTimer, ReadActivity};
use super::h2_idle::StreamActivity;
use super::http1_rounds::{put_back_bytes, PlainSocket, Rounds};
use super::informational::{Informational, InformationalIo};
use super::lingering_close::lingering_close;
use super::listener::ConnectionSlot;
use super::rewind::Rewind;
use super::service::{ClientService, ConnContext};
use super::tls::{negotiated_protocol, ClientProtocol, ClientTlsStream};
use super::{ClientConn, ProxyShared};
use crate::config::ProxyConfig;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a client connection's serving needs from the configuration, read once at accept.
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    idle_timeout: Duration,
    header_read_timeout: Duration,
    release_buffers_after: Duration,
    max_header_bytes: usize,
}

impl ConnLimits {
    fn new(proxy: &ProxyConfig) -> Self {
        ConnLimits {
            idle_timeout: proxy.idle_timeout,
            header_read_timeout: proxy.header_read_timeout,
            release_buffers_after: proxy.release_buffers_after,
            max_header_bytes: proxy.max_header_bytes,
        }
    }
}

/// An accepted client connection and what serving it needs.
pub(super) struct Client {
    peer: SocketAddr,
    shared: Arc<ProxyShared>,
    limits: ConnLimits,
    activity: Arc<ReadActivity>,
    streams: Arc<StreamActivity>,
    shutdown: watch::Receiver<bool>,
    /// Released when the connection closes (the client is dropped with its task's future).
    _slot: ConnectionSlot,
}

impl Client {
    /// A connection from `peer`, accepted now.
    pub fn new(
        peer: SocketAddr,
        shared: Arc<ProxyShared>,
        shutdown: watch::Receiver<bool>,
        slot: ConnectionSlot,
    ) -> Self {
        let limits = ConnLimits::new(&shared.snapshot.load().config.proxy);
        Client {
            peer,
            shared,
            limits,
            activity: Arc::new(ReadActivity::default()),
            streams: StreamActivity::new(),
            shutdown,
            _slot: slot,
        }
    }

    /// Serve the connection on a task of its own until it closes.
    ///
    /// The task is the protocol's future itself, with no wrapper around it, and every path but
    /// plain HTTP/1.1 gets a task of its own type: a task is allocated once, at the size of the
    /// largest state of its future, and an idle plain keep-alive connection, the common case,
    /// must carry neither room for hyper's HTTP/2 connection or a TLS handshake nor a second
    /// copy of what an outer future had already moved into an inner one
    /// (docs/performance.md#memory-per-idle-connection).
    pub fn spawn(self, stream: TcpStream, acceptor: Option<TlsAcceptor>) {
        match acceptor {
            None => {
                tokio::spawn(self.serve_plain(stream));
            }
            Some(acceptor) => {
                tokio::spawn(self.serve_tls_connection(acceptor, stream));
            }
        }
    }

    async fn serve_tls_connection(self, acceptor: TlsAcceptor, stream: TcpStream) {
        if let Some(tls) = self.handshake(acceptor, stream).await {
            self.serve_tls(tls).await;
        }
    }

    /// A client that stalls the handshake is cut like one that stalls its request head.
    async fn handshake(&self, acceptor: TlsAcceptor, stream: TcpStream) -> Option<ClientTlsStream> {
        let timeout = self.limits.header_read_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            // Scanners, plain HTTP on the TLS port, clients that dislike the certificate:
            // routine on an internet-facing port, so debug only.
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, ?timeout, "TLS handshake timed out");
                None
            }
        }
    }

    fn service(&self, tls: bool, informational: Option<Arc<Informational>>) -> ClientService {
        let context = ConnContext {
            shared: self.shared.clone(),
            client: ClientConn::new(self.peer, tls).with_informational(informational),
        };
        ClientService::new(context, self.streams.clone())
    }

    fn http1(&self) -> http1::Builder {
        let limits = self.limits;
        let mut http1 = http1::Builder::new();
        http1
            .timer(HeadTimer::new(
                self.activity.clone(),
                limits.idle_timeout,
                limits.header_read_timeout,
            ))
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true)
            // A client that shuts down its write side after its requests (`nc -N`, health
            // checks) still gets every answer (`docs/security.md#protocol-conformance`).
            .half_close(true);
        http1
    }

    fn http2(&self) -> http2::Builder<TokioExecutor> {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024));
        http2
    }

    /// Plain TCP: HTTP/2 if the connection starts with its preface (h2c), HTTP/1.1 otherwise.
    ///
    /// The future uses what it captured in place and moves the socket on by value: an `async
    /// fn` keeps its arguments for its whole life beside whatever it moves them into, and a
    /// local that was ever borrowed keeps its room after it is moved, so either would leave
    /// a second socket in every idle connection's task.
    #[allow(clippy::manual_async_fn)] // the `async fn` form is the one that costs the room
    fn serve_plain(mut self, stream: TcpStream) -> impl Future<Output = ()> + Send + 'static {
        // HTTP/2 cannot carry a forwarded 1xx (see `informational.rs`); plain connections are
        // almost always HTTP/1.1, so they get the queue.
        let informational = Some(Arc::new(Informational::default()));
        let service = self.service(false, informational.clone());
        async move {
            let socket: PlainSocket = InformationalIo::new(
                CountingIo::new(Rewind::new(stream), self.activity.clone()),
                informational,
            );
            let sniffing =
                tokio::time::timeout(self.limits.header_read_timeout, starts_with_preface(socket));
            let (socket, sniffed) = tokio::select! {
                biased;
                sniffed = sniffing => match sniffed {
                    Ok(sniffed) => sniffed,
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "closing a connection that sent no request in time");
                        return;
                    }
                },
                _ = self.shutdown.wait_for(|stop| *stop) => return,
            };
            match sniffed {
                Ok(Some(true)) => {
                    let mut connection =
                        Box::pin(self.http2().serve_connection(TokioIo::new(socket), service));
                    Box::pin(self.drive(connection.as_mut(), |c| c.graceful_shutdown())).await;
                }
                Ok(Some(false)) => {
                    // Made for each round, not held: an idle connection carries only the wait.
                    let http1 = || self.http1();
                    let rounds = Rounds {
                        http1: &http1,
                        service: &service,
                        idle_timeout: self.limits.idle_timeout,
                        release_after: self.limits.release_buffers_after,
                        shutdown: self.shutdown.clone(),
                        peer: &self.peer,
                    };
                    rounds.serve(socket).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "client connection failed")
                }
            }
        }
    }

    /// TLS: the protocol ALPN chose, so a connection is never served a protocol it did not
    /// negotiate (`docs/security.md#protocol-conformance`).
    async fn serve_tls(mut self, stream: ClientTlsStream) {
        let protocol = negotiated_protocol(&stream);
        let informational =
            (protocol != ClientProtocol::Http2).then(|| Arc::new(Informational::default()));
        let io = TokioIo::new(InformationalIo::new(
            CountingIo::new(stream, self.activity.clone()),
            informational.clone(),
        ));
        let service = self.service(true, informational);
        if protocol == ClientProtocol::Http2 {
            let connection = self.http2().serve_connection(io, service);
            tokio::pin!(connection);
            self.drive(connection.as_mut(), |c| c.graceful_shutdown())
                .await;
        } else {
            let mut connection = self.http1().serve_connection(io, service).with_upgrades();
            self.drive(Pin::new(&mut connection), |c| c.graceful_shutdown())
                .await;
            // `None` after a 101: the tunnel owns the socket. At shutdown hyper has closed
            // gracefully; lingering then would only hold the drain.
            if let Some(parts) = connection.into_parts() {
                if !*self.shutdown.borrow() {
                    lingering_close(parts.io.into_inner()).await;
                }
            }
        }
    }

    /// Run a connection that lives as long as the client's: graceful shutdown on the process's
    /// shutdown signal and on the HTTP/2 idle timeout, a hard close over the cancel budget.
    async fn drive<C, E>(&mut self, mut connection: Pin<&mut C>, graceful: fn(Pin<&mut C>))
    where
        C: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let peer = self.peer;
        let mut closing = false;
        let result = loop {
            tokio::select! {
                // The connection first and in order: no random draw per wake-up.
                biased;
                result = connection.as_mut() => break result,
                _ = self.shutdown.wait_for(|stop| *stop), if !closing => {
                    graceful(connection.as_mut());
                    closing = true;
                }
                () = self.streams.over_cancel_budget() => {
                    tracing::warn!(%peer, "closing a client connection that cancelled too many requests");
                    break Ok(());
                }
                () = self.streams.idle_for(self.limits.idle_timeout), if !closing => {
                    tracing::debug!(%peer, "closing idle HTTP/2 connection");
                    graceful(connection.as_mut());
                    closing = true;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    }
}

/// Read until the first bytes differ from the HTTP/2 preface or match all of it, and put them
/// back: `Some(true)` for HTTP/2, `Some(false)` for anything else, `None` if the client
/// closed first. Reads at most the preface's 24 bytes, so nothing of a request is consumed.
/// Takes the socket and gives it back, so the connection's future never borrows it (see
/// `Client::serve_plain`).
async fn starts_with_preface(
    mut socket: PlainSocket,
) -> (PlainSocket, std::io::Result<Option<bool>>) {
    let sniffed = read_preface(&mut socket).await;
    (socket, sniffed)
}

async fn read_preface(socket: &mut PlainSocket) -> std::io::Result<Option<bool>> {
    let mut read = [0u8; HTTP2_PREFACE.len()];
    let mut filled = 0;
    let http2 = loop {
        let n = socket.read(&mut read[filled..]).await?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        if read[..filled] != HTTP2_PREFACE[..filled] {
            break false;
        }
        if filled == HTTP2_PREFACE.len() {
            break true;
        }
    };
    put_back_bytes(socket).put_back(Bytes::copy_from_slice(&read[..filled]));
    Ok(Some(http2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task is allocated once, at the size of the largest state of its future,
    /// and holds that for the connection's whole life, idle or not. Inline, a TLS handshake,
    /// hyper's HTTP/2 connection, a round and the lingering close's buffer made it 4,096 bytes
    /// here (unoptimised); boxed, 1,680; with the idle wait polled by hand and hyper's
    /// settings made per round instead of held, 1,448; with no wrapper future around the plain
    /// path and no `async fn` holding its arguments beside what it moved them into, 824 (the
    /// optimised task's cell 1,024 bytes, from 1,792: docs/performance.md#memory-per-idle-connection).
    #[test]
    fn the_connection_task_stays_small() {
        let size = future_size(|(client, stream): (Client, TcpStream)| client.serve_plain(stream));
        println!("plain connection future: {size} bytes");
        assert!(
            size <= 896,
            "a connection's future is {size} bytes: box the states an idle plain connection \
             never is in"
        );
    }
}
