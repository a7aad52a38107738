//! The control task: the only writer of the routing snapshot.
//!
//! Config reloads and rollout decisions both arrive here as [`ControlMsg`]s on one channel, and
//! each produces one new immutable [`RoutingSnapshot`], so a reload never overwrites a weight the
//! analysis just set, nor the reverse.

mod certificate;
mod reload;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, EndpointAddr};
use crate::metrics::MetricsRegistry;
pub use crate::routing::Resolved;
use crate::routing::{BackendCache, RolloutView, RoutingSnapshot};

pub use certificate::load_with_certificate;
pub use reload::{
    spawn_reload_triggers, warn_unverified_upstreams, ReloadError, ReloadTrigger, Reloader,
};

/// A change to what the data plane reads.
#[derive(Debug)]
pub enum ControlMsg {
    /// A new, already validated configuration.
    Reload {
        /// The new config.
        config: Box<Config>,
        /// Told once the new snapshot is published.
        done: Option<oneshot::Sender<u64>>,
    },
    /// Fresh DNS answers for the endpoint names of the current config.
    Resolved(Resolved),
    /// A rollout decision: a route's new phase and weight.
    SetRollout {
        /// Route name.
        route: String,
        /// New phase and weight.
        view: RolloutView,
        /// Told once the snapshot carrying it is published.
        done: Option<oneshot::Sender<u64>>,
    },
}

/// The control task is no longer running: nothing can change what the data plane reads (the
/// process is stopping, or the task failed and `crate::vitals` stops it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the control task has stopped")]
pub struct ControlStopped;

/// Sends changes to the control task and reads what it published.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::UnboundedSender<ControlMsg>,
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    configs: watch::Receiver<Arc<Config>>,
}

impl ControlHandle {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<RoutingSnapshot> {
        self.snapshot.load_full()
    }

    /// The shared cell the data plane loads snapshots from.
    pub fn snapshot_cell(&self) -> Arc<ArcSwap<RoutingSnapshot>> {
        self.snapshot.clone()
    }

    /// Every config the control task publishes, starting with the current one.
    pub fn config_updates(&self) -> watch::Receiver<Arc<Config>> {
        self.configs.clone()
    }

    /// Publish a validated config; resolves to the new snapshot's generation.
    pub async fn reload(&self, config: Config) -> Option<u64> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(ControlMsg::Reload {
                config: Box::new(config),
                done: Some(done),
            })
            .ok()?;
        rx.await.ok()
    }

    /// Hand fresh DNS answers to the control task (it republishes only if they changed).
    pub fn resolved(&self, resolved: Resolved) {
        let _ = self.tx.send(ControlMsg::Resolved(resolved));
    }

    /// Publish a route's new phase and weight; the receiver is told the generation of the
    /// snapshot that carries it, once requests are routed by it.
    pub fn set_rollout(
        &self,
        route: &str,
        view: RolloutView,
    ) -> Result<oneshot::Receiver<u64>, ControlStopped> {
        let (done, published) = oneshot::channel();
        self.tx
            .send(ControlMsg::SetRollout {
                route: route.to_owned(),
                view,
                done: Some(done),
            })
            .map_err(|_| ControlStopped)?;
        Ok(published)
    }

    /// Publish a route's new phase and weight and wait until requests are routed by it.
    pub async fn apply_rollout(&self, route: &str, view: RolloutView) {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.send(ControlMsg::SetRollout {
            route: route.to_owned(),
            view,
            done: Some(done),
        });
        if sent.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The state behind the published snapshot.
pub struct Control {
    config: Arc<Config>,
    rollouts: HashMap<String, RolloutView>,
    resolved: Resolved,
    cache: BackendCache,
    registry: Arc<MetricsRegistry>,
    snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    generation: u64,
    rx: mpsc::UnboundedReceiver<ControlMsg>,
    configs: watch::Sender<Arc<Config>>,
}

impl Control {
    /// Resolve endpoints and publish the first snapshot, with the rollouts' phases and weights
    /// as the analysis resumed them (`rollouts`), so the first request is already routed right.
    pub async fn start(
        config: Config,
        registry: Arc<MetricsRegistry>,
        rollouts: HashMap<String, RolloutView>,
    ) -> (Control, ControlHandle) {
        let config = Arc::new(config);
        let resolved = resolve_all(&config).await;
        let mut cache = BackendCache::default();
        let snapshot = RoutingSnapshot::build(
            config.clone(),
            &rollouts,
            &resolved,
            &mut cache,
            &registry,
            1,
        );
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let (tx, rx) = mpsc::unbounded_channel();
        let (configs, configs_rx) = watch::channel(config.clone());
        let control = Control {
            config,
            rollouts,
            resolved,
            cache,
            registry,
            snapshot: snapshot.clone(),
            generation: 1,
            rx,
            configs,
        };
        (
            control,
            ControlHandle {
                tx,
                snapshot,
                configs: configs_rx,
            },
        )
    }

    /// Apply changes until every handle is dropped.
    pub async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            match msg {
                ControlMsg::Reload { config, done } => {
                    self.apply_config(*config).await;
                    self.registry.process.reload_result(true);
                    if let Some(done) = done {
                        let _ = done.send(self.generation);
                    }
                }
                ControlMsg::Resolved(resolved) => {
                    // Answers for names the config no longer has are ignored; names it has keep
                    // their last answer when this lookup found nothing (a DNS hiccup must not
                    // empty a backend).
                    let mut changed = false;
                    for (endpoint, addrs) in resolved {
                        let Some(current) = self.resolved.get_mut(&endpoint) else {
                            continue;
                        };
                        if !addrs.is_empty() && *current != addrs {
                            tracing::info!(%endpoint, ?addrs, "endpoint resolves to new addresses");
                            *current = addrs;
                            changed = true;
                        }
                    }
                    if changed {
                        self.publish();
                    }
                }
                ControlMsg::SetRollout { route, view, done } => {
                    if self.config.routes.iter().any(|r| r.name == route) {
                        self.rollouts.insert(route, view);
                        self.publish();
                    }
                    if let Some(done) = done {
                        let _ = done.send(self.generation);
                    }
                }
            }
        }
    }

    async fn apply_config(&mut self, config: Config) {
        let config = Arc::new(config);
        // Rollout decisions only survive for routes that still have an analysis.
        {
            let analysed: HashSet<&str> = config
                .routes
                .iter()
                .filter(|r| r.analysis.is_some())
                .map(|r| r.name.as_str())
                .collect();
            self.rollouts
                .retain(|name, _| analysed.contains(name.as_str()));
        }
        self.resolved = resolve_all(&config).await;
        self.config = config.clone();
        self.publish();
        // The analysis follows reloads through this; it answers with SetRollout messages.
        self.configs.send_replace(config);
    }

    fn publish(&mut self) {
        self.generation += 1;
        let snapshot = RoutingSnapshot::build(
            self.config.clone(),
            &self.rollouts,
            &self.resolved,
            &mut self.cache,
            &self.registry,
            self.generation,
        );
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// How often endpoint names are looked up again.
pub const RESOLVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-resolve the current config's endpoint names every [`RESOLVE_INTERVAL`] and hand the
/// answers to the control task. Lookups run here, not in the control task, so a slow DNS server
/// never delays a reload or a rollout decision.
pub fn spawn_resolver(control: ControlHandle) {
    tokio::spawn(async move {
        let mut configs = control.config_updates();
        let mut ticker = tokio::time::interval(RESOLVE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let config = configs.borrow_and_update().clone();
            let has_names = config.routes.iter().any(|r| {
                std::iter::once(&r.primary)
                    .chain(r.canary.as_ref().map(|c| &c.version))
                    .flat_map(|v| &v.endpoints)
                    .any(|e| e.host.parse::<std::net::IpAddr>().is_err())
            });
            if has_names {
                control.resolved(resolve_all(&config).await);
            }
            if control.tx.is_closed() {
                return;
            }
        }
    });
}

/// Resolve every endpoint of every route; a name that does not resolve gets no address (its
/// requests get 502) and a warning naming the route, the version and the config line.
async fn resolve_all(config: &Config) -> Resolved {
    let mut resolved = Resolved::new();
    for route in &config.routes {
        let versions = std::iter::once(("primary", &route.primary))
            .chain(route.canary.as_ref().map(|c| ("canary", &c.version)));
        for (version, endpoints) in versions {
            for endpoint in &endpoints.endpoints {
                if resolved.contains_key(endpoint) {
                    continue;
                }
                let addrs = match resolve(endpoint).await {
                    Ok(addrs) => addrs,
                    Err(e) => {
                        tracing::warn!(
                            route = %route.name,
                            version,
                            endpoint = %endpoint,
                            config = %format!("{}:{}", config.source.display(), endpoints.endpoints_line),
                            error = %e,
                            "endpoint name does not resolve; its requests get 502 until it does"
                        );
                        Vec::new()
                    }
                };
                resolved.insert(endpoint.clone(), addrs);
            }
        }
    }
    resolved
}

async fn resolve(endpoint: &EndpointAddr) -> std::io::Result<Vec<std::net::SocketAddr>> {
    if let Ok(ip) = endpoint.host.parse::<std::net::IpAddr>() {
        return Ok(vec![(ip, endpoint.port).into()]);
    }
    let mut addrs: Vec<_> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await?
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}
