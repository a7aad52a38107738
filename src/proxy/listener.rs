//! Client-facing listeners and the worker threads that serve them.
//!
//! The default runtime model is one current-thread tokio runtime per worker thread, each with
//! its own `SO_REUSEPORT` socket per listen address, so the kernel spreads connections and a
//! connection never leaves its thread (HAProxy's and nginx's model). `CANARYD_RUNTIME=multi-thread`
//! selects tokio's work-stealing runtime instead, kept for benchmarking the choice.
//!
//! `[proxy.tls].listen` sockets are bound the same way and served by the same workers: after
//! the TLS handshake (see `tls.rs`) a connection is served by `connection.rs` like a plain one.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::balance::{Balancer, HandedOver, Inbox};
use super::connection::Client;
use super::drain::{OpenConnection, OpenConnections};
use super::tls::TlsCerts;
use super::ProxyShared;
use crate::metrics::MetricsRegistry;

/// How worker threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeModel {
    /// One current-thread runtime and one `SO_REUSEPORT` socket per worker (the default).
    ThreadPerCore,
    /// One work-stealing runtime with `workers` threads sharing one socket per address.
    WorkStealing,
}

impl RuntimeModel {
    /// From `CANARYD_RUNTIME` (`multi-thread` selects work stealing).
    pub fn from_env() -> Self {
        match std::env::var("CANARYD_RUNTIME").as_deref() {
            Ok("multi-thread") => RuntimeModel::WorkStealing,
            _ => RuntimeModel::ThreadPerCore,
        }
    }
}

/// Bound listen sockets, grouped by the worker that will accept on them.
#[derive(Debug)]
pub struct BoundListeners {
    groups: Vec<Vec<BoundSocket>>,
    /// The addresses actually bound (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// The TLS addresses actually bound (port 0 resolved), empty without `[proxy.tls]`.
    pub tls_addrs: Vec<SocketAddr>,
}

/// One worker's socket for one listen address, and whether it speaks TLS.
#[derive(Debug)]
struct BoundSocket {
    socket: std::net::TcpListener,
    tls: bool,
}

impl BoundListeners {
    /// Bind the `[proxy.tls]` addresses, once per worker group like the plain ones.
    pub fn bind_tls(&mut self, addrs: &[SocketAddr]) -> io::Result<()> {
        let tls_addrs = bind_into(&mut self.groups, addrs, true)?;
        self.tls_addrs.extend(tls_addrs);
        Ok(())
    }
}

/// Bind every address once per worker (thread-per-core) or once (work-stealing).
pub fn bind_listeners(
    addrs: &[SocketAddr],
    workers: usize,
    model: RuntimeModel,
) -> io::Result<BoundListeners> {
    let groups_wanted = match model {
        RuntimeModel::ThreadPerCore => workers.max(1),
        RuntimeModel::WorkStealing => 1,
    };
    let mut groups: Vec<Vec<BoundSocket>> = (0..groups_wanted).map(|_| Vec::new()).collect();
    let local_addrs = bind_into(&mut groups, addrs, false)?;
    Ok(BoundListeners {
        groups,
        local_addrs,
        tls_addrs: Vec::new(),
    })
}

/// Bind every address once per group; returns the bound addresses.
fn bind_into(
    groups: &mut [Vec<BoundSocket>],
    addrs: &[SocketAddr],
    tls: bool,
) -> io::Result<Vec<SocketAddr>> {
    let mut local_addrs = Vec::new();
    for addr in addrs {
        refuse_a_taken_address(*addr)?;
        // The first bind resolves port 0; the other workers bind the port it got.
        let first = bind_one(*addr)?;
        let bound = first.local_addr()?;
        local_addrs.push(bound);
        let mut sockets = vec![first];
        for _ in 1..groups.len() {
            sockets.push(bind_one(bound)?);
        }
        for (group, socket) in groups.iter_mut().zip(sockets) {
            group.push(BoundSocket { socket, tls });
        }
    }
    Ok(local_addrs)
}

/// Fail with "address in use" if anything listens on `addr` already.
///
/// The workers' sockets set `SO_REUSEPORT`, and Linux lets any socket of the same user with
/// that option join a port: a second canaryd with the same `proxy.listen` would come up and
/// silently take half the connections. A probe bound *without* `SO_REUSEPORT` conflicts with
/// every socket already on the port, so it tells; it is closed before the real sockets bind.
/// (`SO_REUSEADDR` keeps connections in TIME_WAIT from a previous run from counting.) Another
/// process could still bind between the probe and the first real socket, a window of
/// microseconds at start.
fn refuse_a_taken_address(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| listen_error(addr, e))
}

/// One message for a bind that failed: the address, and what the OS said.
fn listen_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address in use (is another canaryd or server listening there?)".to_owned()
        }
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {why}"))
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| listen_error(addr, e))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The running worker threads.
#[derive(Debug)]
pub struct WorkerSet {
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl WorkerSet {
    /// Stop accepting, let in-flight requests finish within the drain timeout, and join.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Start the workers serving `bound`; `tls` is required if `bound` has TLS sockets.
pub fn spawn_workers(
    bound: BoundListeners,
    shared: Arc<ProxyShared>,
    tls: Option<Arc<TlsCerts>>,
    workers: usize,
    model: RuntimeModel,
    max_connections: usize,
) -> io::Result<WorkerSet> {
    let (shutdown, rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(
        max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut threads = Vec::new();
    let (balancer, ends) = Balancer::new(bound.groups.len());
    for ((index, group), (connections, inbox)) in bound.groups.into_iter().enumerate().zip(ends) {
        let runtime = match model {
            RuntimeModel::ThreadPerCore => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            RuntimeModel::WorkStealing => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers.max(1))
                .enable_all()
                .build()?,
        };
        let worker = Worker {
            index,
            shared: shared.clone(),
            tls: tls.clone(),
            limit: limit.clone(),
            shutdown: rx.clone(),
            balancer: balancer.clone(),
            connections,
        };
        let thread = std::thread::Builder::new()
            .name(format!("canaryd-worker-{index}"))
            .spawn(move || {
                crate::metrics::set_worker_shard(index);
                runtime.block_on(worker.serve(group, inbox))
            })?;
        threads.push(thread);
    }
    Ok(WorkerSet { threads, shutdown })
}

#[derive(Clone)]
struct Worker {
    index: usize,
    shared: Arc<ProxyShared>,
    tls: Option<Arc<TlsCerts>>,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// Where accepted connections go when another worker has fewer (`balance.rs`).
    balancer: Arc<Balancer>,
    /// This worker's open connections, including those handed over to it.
    connections: Arc<OpenConnections>,
}

impl Worker {
    async fn serve(self, sockets: Vec<BoundSocket>, inbox: Inbox) {
        let connections = self.connections.clone();
        let mut accepting = tokio::task::JoinSet::new();
        accepting.spawn(self.clone().receive_handed_over(inbox));
        for BoundSocket { socket, tls } in sockets {
            let tls = match (tls, &self.tls) {
                (false, _) => None,
                (true, Some(certs)) => Some(certs.clone()),
                (true, None) => {
                    // Server::start always passes the certificates along with TLS sockets.
                    tracing::error!("TLS listener without a certificate; not serving it");
                    continue;
                }
            };
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    accepting.spawn(self.clone().accept_loop(listener, tls));
                }
                Err(e) => tracing::error!(error = %e, "cannot register listener"),
            }
        }
        let mut shutdown = self.shutdown.clone();
        let _ = shutdown.wait_for(|stop| *stop).await;
        while accepting.join_next().await.is_some() {}
        let drain = self.shared.snapshot.load().config.proxy.drain_timeout;
        // Every connection saw the same shutdown signal and is closing gracefully.
        let open = connections.count();
        if tokio::time::timeout(drain, connections.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open,
                ?drain,
                "drain timeout reached; closing remaining connections"
            );
        }
    }

    async fn accept_loop(self, listener: TcpListener, tls: Option<Arc<TlsCerts>>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // A slot after the accept, not before: a slot taken first sits idle while its
                    // worker waits for a client the kernel may send to another worker's socket,
                    // and with fewer slots than workers a client could wait for good. Each
                    // worker holds at most one client beyond `max_connections`, unread, which
                    // to that client is the listen backlog (its handshake is done either way).
                    let permit = tokio::select! {
                        permit = self.limit.clone().acquire_owned() => permit,
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    };
                    let Ok(permit) = permit else { return };
                    // Load the certificate per accept, so a reload reaches new connections.
                    let acceptor = tls.as_ref().map(|certs| TlsAcceptor::from(certs.current()));
                    let (worker, open) = self.balancer.place(self.index);
                    if worker == self.index {
                        self.spawn_connection(stream, peer, acceptor, permit, open);
                    } else if let Err(e) = self
                        .balancer
                        .hand_over(worker, stream, peer, acceptor, permit, open)
                    {
                        // The connection is closed, as `hand_over` says.
                        tracing::debug!(%peer, error = %e, "could not hand a connection over");
                    }
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Serve the connections other workers accepted and handed over, until shutdown.
    async fn receive_handed_over(self, mut inbox: Inbox) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let handed = tokio::select! {
                handed = inbox.recv() => handed,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let Some(HandedOver {
                stream,
                peer,
                acceptor,
                permit,
                open,
            }) = handed
            else {
                return;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => self.spawn_connection(stream, peer, acceptor, permit, open),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot register a handed-over connection")
                }
            }
        }
    }

    /// Serve one connection on this worker; `permit` and `open` are held until it closes.
    fn spawn_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        acceptor: Option<TlsAcceptor>,
        permit: OwnedSemaphorePermit,
        open: OpenConnection,
    ) {
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot::taken(self.shared.registry.clone(), open, permit);
        Client::new(peer, self.shared.clone(), self.shutdown.clone(), slot).spawn(stream, acceptor);
    }
}

/// What a connection holds until it closes: its place under `max_connections`, its count in
/// the worker's open connections (the drain waits for it) and the active-connections gauge.
/// Held by the connection's `Client`, so the task's future needs no wrapper around it
/// (docs/performance.md#memory-per-idle-connection).
pub(super) struct ConnectionSlot {
    registry: Arc<MetricsRegistry>,
    _open: OpenConnection,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionSlot {
    fn taken(
        registry: Arc<MetricsRegistry>,
        open: OpenConnection,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        registry
            .process
            .active_connections
            .fetch_add(1, Ordering::Relaxed);
        ConnectionSlot {
            registry,
            _open: open,
            _permit: permit,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.registry
            .process
            .active_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}
