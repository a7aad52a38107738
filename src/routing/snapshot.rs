//! The immutable routing snapshot every request loads once, and how it is built.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Backend, Phase, RolloutView, Route, RouteTable};
use crate::config::{
    Config, EndpointAddr, PoolConfig, RouteConfig, UpstreamTransport, VersionConfig,
};
use crate::metrics::MetricsRegistry;
use crate::upstream::{Endpoint, Transport};

/// Everything the data plane reads: the config it was built from and the resolved routes.
#[derive(Debug)]
pub struct RoutingSnapshot {
    /// The configuration this snapshot was built from.
    pub config: Arc<Config>,
    /// Routes indexed by host and path.
    pub table: RouteTable,
    /// Increases with every published snapshot.
    pub generation: u64,
}

/// The socket addresses each configured endpoint resolved to.
pub type Resolved = HashMap<EndpointAddr, Vec<SocketAddr>>;

/// What makes two endpoints the same: the address, the transport (protocol and TLS settings,
/// files' contents included) and, for TLS without `server_name`, the host name verified.
type EndpointKey = (SocketAddr, UpstreamTransport, Option<String>);

fn endpoint_key(addr: SocketAddr, transport: &UpstreamTransport, host: &str) -> EndpointKey {
    let verified_host = transport
        .tls
        .as_ref()
        .filter(|tls| tls.server_name.is_none())
        .map(|_| host.to_owned());
    (addr, transport.clone(), verified_host)
}

/// Endpoints by address and transport, kept between snapshots so their load and idle
/// connections survive.
#[derive(Debug, Default)]
pub struct BackendCache {
    endpoints: HashMap<EndpointKey, (Arc<Endpoint>, bool)>,
}

impl BackendCache {
    fn endpoints(
        &mut self,
        version: &VersionConfig,
        resolved: &Resolved,
        pool: PoolConfig,
    ) -> Vec<Arc<Endpoint>> {
        let transport = &version.transport;
        let mut endpoints = Vec::new();
        for written in &version.endpoints {
            for addr in resolved.get(written).map(Vec::as_slice).unwrap_or_default() {
                let key = endpoint_key(*addr, transport, &written.host);
                let (endpoint, used) = self.endpoints.entry(key).or_insert_with(|| {
                    let connects = Transport::new(transport, &written.host);
                    (Arc::new(Endpoint::with_transport(*addr, connects)), false)
                });
                *used = true;
                endpoint.set_pool(pool);
                endpoints.push(endpoint.clone());
            }
        }
        endpoints
    }

    fn backend(
        &mut self,
        version: &VersionConfig,
        resolved: &Resolved,
        pool: PoolConfig,
    ) -> Arc<Backend> {
        let endpoints = self.endpoints(version, resolved, pool);
        Arc::new(Backend::new(
            version.revision.as_str().into(),
            endpoints,
            version.load_balancing,
        ))
    }

    /// Forget endpoints the snapshot just built does not use.
    fn retain_used(&mut self) {
        self.endpoints.retain(|_, (_, used)| std::mem::take(used));
    }
}

/// The phase and weight a route starts with before any rollout decision.
pub fn initial_rollout(route: &RouteConfig) -> RolloutView {
    let idle = RolloutView {
        phase: Phase::Idle,
        weight: 0,
    };
    let Some(canary) = &route.canary else {
        return idle;
    };
    if canary.version.revision == route.primary.revision {
        return idle;
    }
    if route.analysis.is_some() {
        // Until the analysis decides, the canary gets nothing.
        return RolloutView {
            phase: Phase::Waiting,
            weight: 0,
        };
    }
    RolloutView {
        phase: Phase::Static,
        weight: canary.weight,
    }
}

impl RoutingSnapshot {
    /// Resolve every route of `config` into a snapshot. Routes missing from `rollouts` get
    /// their [`initial_rollout`].
    pub fn build(
        config: Arc<Config>,
        rollouts: &HashMap<String, RolloutView>,
        resolved: &Resolved,
        cache: &mut BackendCache,
        registry: &MetricsRegistry,
        generation: u64,
    ) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|rc| {
                let rollout = rollouts
                    .get(&rc.name)
                    .copied()
                    .unwrap_or_else(|| initial_rollout(rc));
                let route = Route {
                    name: rc.name.as_str().into(),
                    path_prefix: rc.path_prefix.as_str().into(),
                    primary: cache.backend(&rc.primary, resolved, config.proxy.pool),
                    canary: rc
                        .canary
                        .as_ref()
                        .map(|c| cache.backend(&c.version, resolved, config.proxy.pool)),
                    rollout,
                    matches: rc.matches.clone(),
                    sticky: rc.sticky.clone(),
                    mirror: rc.mirror.clone(),
                    metrics: registry.route(&rc.name),
                    failures: rc.failures.clone(),
                };
                // Only a route under analysis is judged, so only it pays for histograms.
                if route.canary.is_some() && rc.analysis.is_some() {
                    route.metrics.enable_windows();
                }
                (Arc::new(route), rc.hosts.clone())
            })
            .collect();
        let table = RouteTable::new(routes);
        cache.retain_used();
        RoutingSnapshot {
            config,
            table,
            generation,
        }
    }
}
