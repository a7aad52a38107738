//! The analysis supervisor: starts one task per analysed route, follows config reloads, and
//! routes operator commands. The read-mostly view the admin API reads is `shared.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::analysis::judge::evidence::StepEvidence;
use crate::analysis::runner::history::HistoryPoint;
use crate::analysis::runner::persist::{load_rollouts, Persist};
use crate::analysis::runner::route_task::{RouteMsg, RouteTask};
use crate::analysis::runner::shared::EngineShared;
use crate::analysis::runner::state_file::StateFile;
use crate::analysis::{Command, CommandError, Event, Params, Rollout, RolloutStatus, Window};
use crate::config::{Config, RouteConfig};
use crate::control::ControlHandle;
use crate::metrics::MetricsRegistry;
use crate::routing::RolloutView;

/// Why an operator command was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No route of that name has an analysis (admin API: 404).
    #[error("route '{0}' not found")]
    NoSuchRoute(String),
    /// Not allowed in the route's phase (admin API: 409).
    #[error(transparent)]
    NotAllowed(#[from] CommandError),
    /// The analysis is shutting down.
    #[error("the analysis engine is not running")]
    Stopped,
    /// Fleet mode: the command could not go through etcd, or no leader applied it in time
    /// (admin API: 503).
    #[error("fleet: {0}")]
    Fleet(String),
}

/// The rollouts at start-up, resumed from the state file, before anything serves.
pub struct Prepared {
    state_file: StateFile,
    rollouts: BTreeMap<String, (Rollout, Vec<Event>)>,
    #[cfg(feature = "fleet")]
    fleet: Option<crate::fleet::FleetHandle>,
}

impl Prepared {
    /// Read the state file and resume every analysed route of `config` where it was.
    pub fn load(config: &Config) -> Prepared {
        let state_file = StateFile::new(config.state.path.clone());
        let mut saved = load_rollouts(&state_file);
        let now = SystemTime::now();
        let rollouts = analysed(config)
            .map(|(route, params)| {
                let resumed = Rollout::start_or_resume(&params, saved.remove(&route.name), now);
                (route.name.clone(), resumed)
            })
            .collect();
        Prepared {
            state_file,
            rollouts,
            #[cfg(feature = "fleet")]
            fleet: None,
        }
    }

    /// Run every analysed route as part of a fleet (`docs/fleet.md`).
    #[cfg(feature = "fleet")]
    pub fn with_fleet(mut self, fleet: crate::fleet::FleetHandle) -> Prepared {
        self.fleet = Some(fleet);
        self
    }

    /// The phase and weight each analysed route starts serving with.
    pub fn views(&self) -> HashMap<String, RolloutView> {
        self.rollouts
            .iter()
            .map(|(name, (rollout, _))| (name.clone(), rollout.view()))
            .collect()
    }
}

/// Talks to the running analysis.
#[derive(Debug, Clone)]
pub struct AnalysisHandle {
    shared: Arc<EngineShared>,
    tx: mpsc::UnboundedSender<EngineMsg>,
    persist: Persist,
}

#[derive(Debug)]
enum EngineMsg {
    Command {
        route: String,
        command: Command,
        reply: oneshot::Sender<Result<RolloutStatus, EngineError>>,
    },
}

impl AnalysisHandle {
    /// Run an operator command on a route; its new status.
    pub async fn command(
        &self,
        route: &str,
        command: Command,
    ) -> Result<RolloutStatus, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(EngineMsg::Command {
                route: route.to_owned(),
                command,
                reply,
            })
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The status of every analysed route, by name.
    pub fn statuses(&self) -> BTreeMap<String, RolloutStatus> {
        self.shared.statuses()
    }

    /// One analysed route's status.
    pub fn status(&self, route: &str) -> Option<RolloutStatus> {
        self.statuses().remove(route)
    }

    /// The recent check history of an analysed route, oldest first.
    pub fn history(&self, route: &str) -> Option<Vec<HistoryPoint>> {
        self.shared.history(route)
    }

    /// The last events (at most 1000), newest last, optionally of one route.
    pub fn events(&self, route: Option<&str>) -> Vec<Event> {
        self.shared.events(route)
    }

    /// Wait until every transition so far is in the state file.
    pub async fn flush(&self) {
        self.persist.flush().await;
    }
}

/// Start the analysis on the current runtime.
pub fn start(
    prepared: Prepared,
    config: Arc<Config>,
    control: ControlHandle,
    registry: Arc<MetricsRegistry>,
) -> AnalysisHandle {
    let shared = Arc::new(EngineShared::default());
    let initial = prepared
        .rollouts
        .iter()
        .map(|(name, (rollout, _))| (name.clone(), rollout.clone()))
        .collect();
    let persist = Persist::spawn(prepared.state_file, initial);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        tasks: HashMap::new(),
        control: control.clone(),
        persist: persist.clone(),
        shared: shared.clone(),
        registry,
        #[cfg(feature = "fleet")]
        fleet: prepared.fleet.clone(),
    };
    for (name, (rollout, events)) in prepared.rollouts {
        if let Some((route, params)) = analysed(&config).find(|(r, _)| r.name == name) {
            supervisor.spawn_route(route, params, rollout, events);
        }
    }
    tokio::spawn(supervisor.run(rx, control.config_updates()));
    AnalysisHandle {
        shared,
        tx,
        persist,
    }
}

fn analysed(config: &Config) -> impl Iterator<Item = (&RouteConfig, Params)> {
    config
        .routes
        .iter()
        .filter_map(|r| Params::from_route(r).map(|p| (r, p)))
}

struct Supervisor {
    tasks: HashMap<String, mpsc::UnboundedSender<RouteMsg>>,
    control: ControlHandle,
    persist: Persist,
    shared: Arc<EngineShared>,
    registry: Arc<MetricsRegistry>,
    #[cfg(feature = "fleet")]
    fleet: Option<crate::fleet::FleetHandle>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<EngineMsg>,
        mut configs: watch::Receiver<Arc<Config>>,
    ) {
        loop {
            tokio::select! {
                changed = configs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let config = configs.borrow_and_update().clone();
                    self.apply_config(&config);
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(EngineMsg::Command { route, command, reply }) => {
                        self.command(route, command, reply);
                    }
                },
            }
        }
    }

    fn command(
        &self,
        route: String,
        command: Command,
        reply: oneshot::Sender<Result<RolloutStatus, EngineError>>,
    ) {
        let Some(task) = self.tasks.get(&route) else {
            let _ = reply.send(Err(EngineError::NoSuchRoute(route)));
            return;
        };
        let (task_reply, task_rx) = oneshot::channel();
        if task
            .send(RouteMsg::Command {
                command,
                reply: task_reply,
            })
            .is_err()
        {
            let _ = reply.send(Err(EngineError::Stopped));
            return;
        }
        // The route task answers after its current check, if one is running: don't block the
        // supervisor (and every other route's commands) on it.
        tokio::spawn(async move {
            let answer = match task_rx.await {
                Ok(result) => result,
                Err(_) => Err(EngineError::Stopped),
            };
            let _ = reply.send(answer);
        });
    }

    fn apply_config(&mut self, config: &Config) {
        let mut wanted: HashMap<String, (&RouteConfig, Params)> = analysed(config)
            .map(|(r, p)| (r.name.clone(), (r, p)))
            .collect();
        self.tasks.retain(|name, task| match wanted.remove(name) {
            Some((route, params)) => task
                .send(RouteMsg::Config {
                    params: Box::new(params),
                    hooks: route.webhooks.clone(),
                    metrics: self.registry.route(name),
                })
                .is_ok(),
            None => {
                // No analysis any more: the route task ends when its sender is dropped.
                self.persist.forget(name);
                self.shared.remove_status(name);
                #[cfg(feature = "fleet")]
                if let Some(fleet) = &self.fleet {
                    fleet.forget(name);
                }
                false
            }
        });
        for (_, (route, params)) in wanted {
            let (rollout, events) = Rollout::start_or_resume(&params, None, SystemTime::now());
            self.spawn_route(route, params, rollout, events);
        }
    }

    fn spawn_route(
        &mut self,
        route: &RouteConfig,
        params: Params,
        rollout: Rollout,
        events: Vec<Event>,
    ) {
        let window = match Window::new() {
            Ok(window) => window,
            Err(e) => {
                tracing::error!(route = %route.name, "cannot start analysis: {e}");
                return;
            }
        };
        let params_metrics = params.analysis.metrics.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = RouteTask {
            params,
            hooks: route.webhooks.clone(),
            rollout,
            metrics: self.registry.route(&route.name),
            control: self.control.clone(),
            persist: self.persist.clone(),
            shared: self.shared.clone(),
            window,
            window_started: Instant::now(),
            evidence: StepEvidence::new(&params_metrics),
            #[cfg(feature = "fleet")]
            fleet: self.fleet.clone(),
        };
        // Known to the admin API from the moment the engine (or the reload adding the route)
        // returns, not only once the task first runs.
        self.shared.set_status(task.rollout.status());
        tokio::spawn(task.run(rx, events));
        self.tasks.insert(route.name.clone(), tx);
    }
}
