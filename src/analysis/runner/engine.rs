//! The analysis supervisor: starts one task per analysed route and owns it in a `JoinSet`,
//! follows config reloads, and routes operator commands. A route task that ends while its
//! route is still analysed (a panic) is logged, evented ("analysis of shop restarted after a
//! panic") and started again from what it last sent to the state file
//! (docs/architecture.md#who-supervises-what). The read-mostly view the admin API reads is
//! `shared.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use crate::analysis::runner::history::HistoryPoint;
use crate::analysis::runner::persist::{load_rollouts, Persist, SavedRoute};
use crate::analysis::runner::rollout_runner::{Now, RolloutRunner};
use crate::analysis::runner::route_task::{RouteMsg, RouteTask};
use crate::analysis::runner::shared::EngineShared;
use crate::analysis::runner::state_file::StateFile;
use crate::analysis::{
    Command, CommandError, Event, Params, Rollout, RolloutStatus, StepEvidence, Window,
};
use crate::config::{Config, RouteConfig};
use crate::control::ControlHandle;
use crate::metrics::MetricsRegistry;
use crate::routing::RolloutView;
use crate::vitals::Vitals;

/// How long a route task that ended unexpectedly waits before it runs again, so that one that
/// fails at once does not spin.
const RESTART_AFTER: Duration = Duration::from_secs(1);

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
    rollouts: BTreeMap<String, Resumed>,
    #[cfg(feature = "fleet")]
    fleet: Option<crate::fleet::FleetHandle>,
}

/// One route's rollout as resumed, with the judge's evidence it had and the events of resuming.
struct Resumed {
    rollout: Rollout,
    /// Nothing was saved for the route: a fleet member serves the primary only until the fleet
    /// state arrives (docs/fleet.md#failures).
    #[cfg(feature = "fleet")]
    unsaved: bool,
    evidence: Option<StepEvidence>,
    events: Vec<Event>,
}

impl Resumed {
    /// `saved` (from the state file or the last save) under the current `params`.
    fn from(params: &Params, saved: Option<SavedRoute>) -> Resumed {
        #[cfg(feature = "fleet")]
        let unsaved = saved.is_none();
        let (previous, evidence) = match saved {
            Some(saved) => (Some(saved.rollout), saved.evidence),
            None => (None, None),
        };
        let (rollout, events) = Rollout::start_or_resume(params, previous, SystemTime::now());
        // A new revision starts its evidence afresh.
        let evidence = evidence.filter(|_| events.is_empty());
        Resumed {
            rollout,
            #[cfg(feature = "fleet")]
            unsaved,
            evidence,
            events,
        }
    }
}

impl Prepared {
    /// Read the state file and resume every analysed route of `config` where it was.
    pub fn load(config: &Config) -> Prepared {
        let state_file = StateFile::new(config.state.path.clone());
        let mut saved = load_rollouts(&state_file);
        let rollouts = analysed(config)
            .map(|(route, params)| {
                let resumed = Resumed::from(&params, saved.remove(&route.name));
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
            .map(|(name, resumed)| {
                #[cfg_attr(not(feature = "fleet"), allow(unused_mut))]
                let mut view = resumed.rollout.view();
                #[cfg(feature = "fleet")]
                if self.fleet.is_some() && resumed.unsaved {
                    // Primary only until the fleet state (or `lease_ttl`) says otherwise.
                    view.weight = 0;
                }
                (name.clone(), view)
            })
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
    /// Test-only: make a route task panic, to see the supervisor restart it.
    #[cfg(test)]
    InjectPanic { route: String },
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

    /// Test-only: make `route`'s task panic at its next message.
    #[cfg(test)]
    pub(in crate::analysis) fn inject_panic(&self, route: &str) {
        let _ = self.tx.send(EngineMsg::InjectPanic {
            route: route.to_owned(),
        });
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

/// Start the analysis on the current runtime: the state writer and the supervisor are vital
/// tasks of `vitals`; the supervisor owns the route tasks.
pub fn start(
    prepared: Prepared,
    config: Arc<Config>,
    control: ControlHandle,
    registry: Arc<MetricsRegistry>,
    vitals: &Vitals,
) -> AnalysisHandle {
    let shared = Arc::new(EngineShared::default());
    let initial = prepared
        .rollouts
        .iter()
        .map(|(name, resumed)| {
            let saved = SavedRoute {
                rollout: resumed.rollout.clone(),
                evidence: resumed.evidence.clone(),
            };
            (name.clone(), saved)
        })
        .collect();
    let persist = Persist::spawn(prepared.state_file, initial, vitals);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        tasks: HashMap::new(),
        running: JoinSet::new(),
        task_routes: HashMap::new(),
        config: config.clone(),
        control: control.clone(),
        persist: persist.clone(),
        shared: shared.clone(),
        registry,
        #[cfg(feature = "fleet")]
        fleet: prepared.fleet.clone(),
    };
    for (name, resumed) in prepared.rollouts {
        if let Some((route, params)) = analysed(&config).find(|(r, _)| r.name == name) {
            supervisor.spawn_route(route, params, resumed, Duration::ZERO);
        }
    }
    vitals.spawn(
        "analysis supervisor",
        supervisor.run(rx, control.config_updates()),
    );
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
    /// The running route tasks' inboxes and task ids, by route.
    tasks: HashMap<String, (mpsc::UnboundedSender<RouteMsg>, Id)>,
    /// The route tasks themselves: every one is owned here, so an end is always seen.
    running: JoinSet<()>,
    /// Which route each running task analyses.
    task_routes: HashMap<Id, String>,
    /// The config the route tasks run with (to restart one).
    config: Arc<Config>,
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
                    self.apply_config(config);
                }
                Some(ended) = self.running.join_next_with_id() => self.ended(ended),
                msg = rx.recv() => match msg {
                    None => return,
                    Some(EngineMsg::Command { route, command, reply }) => {
                        self.command(route, command, reply);
                    }
                    #[cfg(test)]
                    Some(EngineMsg::InjectPanic { route }) => {
                        if let Some((task, _)) = self.tasks.get(&route) {
                            let _ = task.send(RouteMsg::InjectPanic);
                        }
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
        let Some((task, _)) = self.tasks.get(&route) else {
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

    /// A route task ended. Dropped on purpose (its route lost its analysis) it is gone;
    /// otherwise it is started again from its last save.
    fn ended(&mut self, ended: Result<(Id, ()), JoinError>) {
        let (id, how) = match &ended {
            Ok((id, ())) => (*id, "after it stopped"),
            Err(e) if e.is_panic() => (e.id(), "after a panic"),
            Err(e) => (e.id(), "after it was cancelled"),
        };
        let Some(route) = self.task_routes.remove(&id) else {
            return;
        };
        // A route whose analysis was removed (and perhaps added again since) is not this
        // task's any more.
        match self.tasks.get(&route) {
            Some((_, current)) if *current == id => {
                self.tasks.remove(&route);
            }
            _ => return,
        }
        let Some((route_config, params)) = analysed(&self.config).find(|(r, _)| r.name == route)
        else {
            return;
        };
        let message = format!("analysis of {route} restarted {how}");
        tracing::error!(route = %route, "{message}");
        self.shared
            .push_event(Event::warning(&route, SystemTime::now(), message));
        let resumed = Resumed::from(&params, self.persist.last(&route));
        let route_config = route_config.clone();
        self.spawn_route(&route_config, params, resumed, RESTART_AFTER);
    }

    fn apply_config(&mut self, config: Arc<Config>) {
        let mut wanted: HashMap<String, (&RouteConfig, Params)> = analysed(&config)
            .map(|(r, p)| (r.name.clone(), (r, p)))
            .collect();
        self.tasks
            .retain(|name, (task, _)| match wanted.remove(name) {
                Some((route, params)) => {
                    // A task that just ended cannot take it; `ended` restarts it with this
                    // config.
                    let _ = task.send(RouteMsg::Config {
                        params: Box::new(params),
                        hooks: route.webhooks.clone(),
                        metrics: self.registry.route(name),
                    });
                    true
                }
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
        let added: Vec<(RouteConfig, Params)> = wanted
            .into_values()
            .map(|(route, params)| (route.clone(), params))
            .collect();
        self.config = config.clone();
        for (route, params) in added {
            let resumed = Resumed::from(&params, None);
            self.spawn_route(&route, params, resumed, Duration::ZERO);
        }
    }

    /// Start `route`'s task, after `delay`.
    fn spawn_route(
        &mut self,
        route: &RouteConfig,
        params: Params,
        resumed: Resumed,
        delay: Duration,
    ) {
        let window = match Window::new() {
            Ok(window) => window,
            Err(e) => {
                tracing::error!(route = %route.name, "cannot start analysis: {e}");
                return;
            }
        };
        let origin = Instant::now();
        let now = Now {
            at: Duration::ZERO,
            wall: SystemTime::now(),
        };
        let mut runner = RolloutRunner::new(params, resumed.rollout, window, now);
        if let Some(evidence) = resumed.evidence {
            runner = runner.with_evidence(evidence);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = RouteTask {
            runner,
            hooks: route.webhooks.clone(),
            metrics: self.registry.route(&route.name),
            control: self.control.clone(),
            persist: self.persist.clone(),
            shared: self.shared.clone(),
            origin,
            #[cfg(feature = "fleet")]
            fleet: self.fleet.clone(),
            #[cfg(feature = "fleet")]
            held: self.fleet.is_some() && resumed.unsaved,
        };
        // Known to the admin API from the moment the engine (or the reload adding the route)
        // returns, not only once the task first runs.
        self.shared.set_status(task.runner.rollout().status());
        let events = resumed.events;
        let handle = self.running.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            task.run(rx, events).await;
        });
        self.task_routes.insert(handle.id(), route.name.clone());
        self.tasks.insert(route.name.clone(), (tx, handle.id()));
    }
}
