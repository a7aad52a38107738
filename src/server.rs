//! Assembling a running canaryd: the control runtime (control task, reload triggers, admin),
//! the proxy listeners and their worker threads, and the orderly shutdown. The control task,
//! the state writer and the analysis supervisor are vital tasks (`crate::vitals`): if one
//! ends, readiness fails and [`Server::wait_for_stop`] returns, as for a stop signal.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::admin::{self, AdminContext};
use crate::analysis::{self, AnalysisHandle};
use crate::config::Config;
use crate::control::{spawn_reload_triggers, spawn_resolver, Control, ControlHandle, Reloader};
use crate::fleet::FleetBoard;
use crate::metrics::MetricsRegistry;
use crate::proxy::{
    bind_listeners, load_server_config, spawn_workers, ProxyShared, RuntimeModel, TlsCerts,
    TlsError, WorkerSet,
};
use crate::vitals::Vitals;

/// Why [`Server::wait_for_stop`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: an orderly stop.
    Signal,
    /// A vital task ended (what ended): drain and exit non-zero.
    Failed(String),
}

/// Why canaryd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The control runtime or a worker thread could not be created.
    #[error("cannot start runtime")]
    Runtime(#[source] std::io::Error),
    /// A proxy listen address could not be bound (the error names the address).
    #[error(transparent)]
    Listen(std::io::Error),
    /// The admin listen address could not be bound.
    #[error("cannot listen on admin address {addr}")]
    Admin {
        /// The admin address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The `[proxy.tls]` certificate and key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// `[fleet]` is configured but this binary was built without fleet support.
    #[error("the configuration has [fleet], but this canaryd was built without fleet support; build it with `cargo build --release --features fleet` (needs protoc), or use the container image (docs/fleet.md)")]
    FleetNotBuilt,
    /// The etcd client could not be set up (bad TLS or password file).
    #[cfg(feature = "fleet")]
    #[error("cannot join the fleet")]
    Fleet(#[from] crate::fleet::FleetError),
}

/// A running canaryd.
pub struct Server {
    runtime: Runtime,
    workers: WorkerSet,
    proxy_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    admin_addr: SocketAddr,
    control: ControlHandle,
    analysis: AnalysisHandle,
    reloader: Reloader,
    registry: Arc<MetricsRegistry>,
    admin: Arc<AdminContext>,
    vitals: Vitals,
    stop_signals: (Signal, Signal),
    /// Fleet mode: this replica's membership, left at shutdown.
    #[cfg(feature = "fleet")]
    fleet: Option<crate::fleet::FleetHandle>,
}

impl Server {
    /// Bind every listener and start serving `config`.
    pub fn start(config: Config) -> Result<Server, StartError> {
        Self::start_with_certificates(config, None)
    }

    /// [`Server::start`], with the TLS configuration already built from `config.proxy.tls`
    /// (`control::load_with_certificate` builds it for `run`, which need not read the pairs
    /// twice); `None` builds it here.
    pub fn start_with_certificates(
        config: Config,
        certificates: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("canaryd-control")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        crate::control::warn_unverified_upstreams(&config);
        let registry = Arc::new(MetricsRegistry::default());
        let model = RuntimeModel::from_env();
        let workers = config.proxy.workers;
        let listen = config.proxy.listen.clone();
        let admin_listen = config.admin.listen;
        let max_connections = config.proxy.max_connections;
        let source = config.source.clone();

        // Load the certificate before binding, so a bad pair fails the start before any
        // port is taken.
        let tls = match (&config.proxy.tls, certificates) {
            (Some(tls), Some(built)) => Some((tls.listen.clone(), Arc::new(TlsCerts::new(built)))),
            (Some(tls), None) => Some((
                tls.listen.clone(),
                Arc::new(TlsCerts::new(load_server_config(tls)?)),
            )),
            (None, _) => None,
        };

        // Bind before anything serves, so a taken port fails the start cleanly.
        let mut bound = bind_listeners(&listen, workers, model).map_err(StartError::Listen)?;
        if let Some((tls_listen, _)) = &tls {
            bound.bind_tls(tls_listen).map_err(StartError::Listen)?;
        }
        let tls_certs = tls.map(|(_, certs)| certs);
        let admin_listener =
            runtime
                .block_on(TcpListener::bind(admin_listen))
                .map_err(|source| StartError::Admin {
                    addr: admin_listen,
                    source,
                })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Admin {
                addr: admin_listen,
                source,
            })?;

        // Resume rollouts from the state file before anything is routed. In a fleet the file
        // is the cache of the fleet state, corrected by etcd as soon as it answers.
        let prepared = analysis::Prepared::load(&config);
        let fleet_board = config.fleet.as_ref().map(|_| FleetBoard::default());
        #[cfg(feature = "fleet")]
        let mut fleet_member = None;
        let prepared = match (&config.fleet, &fleet_board) {
            #[cfg(feature = "fleet")]
            (Some(fleet), Some(board)) => {
                let _entered = runtime.enter();
                let member = runtime.block_on(crate::fleet::start(fleet, board.clone()))?;
                fleet_member = Some(member.clone());
                prepared.with_fleet(member)
            }
            #[cfg(not(feature = "fleet"))]
            (Some(_), _) => return Err(StartError::FleetNotBuilt),
            _ => prepared,
        };
        let (control, handle) =
            runtime.block_on(Control::start(config, registry.clone(), prepared.views()));
        let config = handle.snapshot().config.clone();
        let vitals = Vitals::default();
        {
            let _entered = runtime.enter();
            vitals.spawn("control task", control.run());
        }
        {
            let _entered = runtime.enter();
            spawn_resolver(handle.clone());
        }
        let analysis = {
            let _entered = runtime.enter();
            analysis::start(prepared, config, handle.clone(), registry.clone(), &vitals)
        };
        let reloader = Reloader::new(source, handle.clone(), registry.clone())
            .with_tls_certs(tls_certs.clone());
        let stop_signals = runtime
            .block_on(async {
                spawn_reload_triggers(reloader.clone())?;
                Ok::<_, std::io::Error>((
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                ))
            })
            .map_err(StartError::Signals)?;

        let admin = Arc::new(AdminContext {
            ready: false.into(),
            draining: false.into(),
            control: handle.clone(),
            analysis: analysis.clone(),
            registry: registry.clone(),
            reloader: reloader.clone(),
            fleet: fleet_board,
            vitals: vitals.clone(),
        });
        runtime.spawn(admin::serve(admin_listener, admin.clone()));

        let proxy_addrs = bound.local_addrs.clone();
        let tls_addrs = bound.tls_addrs.clone();
        let shared = Arc::new(ProxyShared {
            snapshot: handle.snapshot_cell(),
            registry: registry.clone(),
        });
        let workers = spawn_workers(bound, shared, tls_certs, workers, model, max_connections)
            .map_err(StartError::Runtime)?;
        admin.ready.store(true, Ordering::Relaxed);
        tracing::info!(listen = ?proxy_addrs, tls = ?tls_addrs, admin = %admin_addr, ?model, "canaryd serving");
        Ok(Server {
            runtime,
            workers,
            proxy_addrs,
            tls_addrs,
            admin_addr,
            control: handle,
            analysis,
            reloader,
            registry,
            admin,
            vitals,
            stop_signals,
            #[cfg(feature = "fleet")]
            fleet: fleet_member,
        })
    }

    /// The bound proxy addresses, in config order.
    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    /// The bound `[proxy.tls]` addresses, in config order (empty without TLS).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The control task's handle (snapshot, rollout decisions, reloads).
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// The running analysis: statuses, events, operator commands.
    pub fn analysis(&self) -> &AnalysisHandle {
        &self.analysis
    }

    /// Re-reads the config file on demand.
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// Request counters.
    pub fn registry(&self) -> &Arc<MetricsRegistry> {
        &self.registry
    }

    /// Block until SIGTERM or SIGINT, or until a vital task ends.
    pub fn wait_for_stop(&mut self) -> Stopped {
        let (terminate, interrupt) = &mut self.stop_signals;
        let vitals = self.vitals.clone();
        self.runtime.block_on(async {
            tokio::select! {
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM: draining");
                    Stopped::Signal
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT: draining");
                    Stopped::Signal
                }
                why = vitals.failed() => {
                    tracing::error!("{why}: draining, then exiting with status 1");
                    Stopped::Failed(why)
                }
            }
        })
    }

    /// Whether every vital task still runs: the first that ended, if one did.
    pub fn failure(&self) -> Option<String> {
        self.vitals.failure()
    }

    /// Stop accepting, finish in-flight requests within `drain_timeout`, and stop.
    pub fn shutdown(self) {
        self.admin.draining.store(true, Ordering::Relaxed);
        // Hand leadership over now rather than after the lease lapses; drain with the last
        // weights.
        #[cfg(feature = "fleet")]
        if let Some(fleet) = &self.fleet {
            self.runtime.block_on(fleet.leave());
        }
        self.workers.shutdown();
        // Every transition is already saved as it happens; wait for the last write to land.
        // (Called from outside any runtime: the CLI's main thread, or a test's helper thread.)
        let analysis = self.analysis.clone();
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), analysis.flush()).await;
        });
        self.runtime.shutdown_background();
        tracing::info!("canaryd stopped");
    }
}
