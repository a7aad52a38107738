//! One upstream address, its load (requests in flight) and its passive health.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::failure::ConnectFailure;
use super::health::{Health, HealthChange};
use super::transport::Transport;
use crate::config::{EjectionConfig, Http1Engine, PoolConfig, UpstreamProtocol};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One resolved upstream address. Shared by every snapshot and route that uses the address, so
/// its load and its pooled connections survive reloads.
#[derive(Debug)]
pub struct Endpoint {
    id: u64,
    addr: SocketAddr,
    in_flight: AtomicUsize,
    health: Health,
    /// `PoolConfig::max_idle_per_endpoint` of the latest snapshot.
    pool_max_idle: AtomicUsize,
    /// `PoolConfig::idle_timeout` of the latest snapshot, in milliseconds.
    pool_idle_timeout_ms: AtomicU64,
    /// canaryd's own HTTP/1.1 engine drives this endpoint's exchanges (`http1/`): the
    /// snapshot's `http1_engine` says so and the transport is cleartext HTTP/1.1.
    own_http1: AtomicBool,
    /// Protocol and TLS: an address reached with different TLS settings is another endpoint,
    /// with its own connections.
    transport: Transport,
}

impl Endpoint {
    /// A new cleartext HTTP/1.1 endpoint with a process-unique id and the default pool bounds.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_transport(addr, Transport::default())
    }

    /// A new endpoint reached through `transport`.
    pub fn with_transport(addr: SocketAddr, transport: Transport) -> Self {
        let endpoint = Endpoint {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            addr,
            in_flight: AtomicUsize::new(0),
            health: Health::default(),
            pool_max_idle: AtomicUsize::new(0),
            pool_idle_timeout_ms: AtomicU64::new(0),
            own_http1: AtomicBool::new(false),
            transport,
        };
        endpoint.set_pool(PoolConfig::default());
        endpoint
    }

    /// Bound this endpoint's idle connections (every snapshot sets its config's bounds, so a
    /// reload reaches endpoints that stay).
    pub fn set_pool(&self, pool: PoolConfig) {
        let ms = u64::try_from(pool.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        self.pool_max_idle
            .store(pool.max_idle_per_endpoint, Ordering::Relaxed);
        self.pool_idle_timeout_ms.store(ms, Ordering::Relaxed);
        let eligible =
            !self.transport.is_tls() && self.transport.protocol() != UpstreamProtocol::Http2;
        self.own_http1.store(
            eligible && pool.http1_engine == Http1Engine::Canaryd,
            Ordering::Relaxed,
        );
    }

    /// Whether canaryd's own HTTP/1.1 engine serves this endpoint
    /// (docs/architecture.md#the-upstream-http11-engine); hyper's client otherwise.
    pub fn drives_own_http1(&self) -> bool {
        self.own_http1.load(Ordering::Relaxed)
    }

    /// The bounds of this endpoint's idle connections on each worker.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_idle_per_endpoint: self.pool_max_idle.load(Ordering::Relaxed),
            idle_timeout: Duration::from_millis(self.pool_idle_timeout_ms.load(Ordering::Relaxed)),
            http1_engine: if self.drives_own_http1() {
                Http1Engine::Canaryd
            } else {
                Http1Engine::Hyper
            },
        }
    }

    /// The socket address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How connections to this endpoint are made.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Process-unique id, the key of this endpoint's idle connections.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Passive health: ejection after consecutive failures.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Record how a request to this endpoint went (for ejection by `policy`), logging changes.
    pub fn record(&self, ok: bool, policy: &EjectionConfig) {
        let change = if ok {
            self.health.record_success()
        } else {
            self.health.record_failure(policy)
        };
        self.log(change, None);
    }

    /// Record a failed connect to this endpoint (for ejection by `policy`); an ejection it
    /// causes is logged with the kind of failure.
    pub fn record_connect_failure(&self, failure: ConnectFailure, policy: &EjectionConfig) {
        let change = self.health.record_failure(policy);
        self.log(change, Some(failure));
    }

    fn log(&self, change: HealthChange, connect: Option<ConnectFailure>) {
        match change {
            HealthChange::None => {}
            HealthChange::Ejected(backoff) => match connect {
                Some(failure) => tracing::warn!(
                    endpoint = %self.addr,
                    ?backoff,
                    cause = %failure,
                    "endpoint ejected after consecutive failures, the last a failed connect: {failure}"
                ),
                None => tracing::warn!(
                    endpoint = %self.addr,
                    ?backoff,
                    "endpoint ejected after consecutive failures"
                ),
            },
            HealthChange::Readmitted => {
                tracing::info!(endpoint = %self.addr, "endpoint re-admitted")
            }
        }
    }

    /// Requests currently in flight to this endpoint (all workers).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count one request in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight to an endpoint; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl InFlight {
    /// The endpoint the request goes to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
