//! One analysed route's task: every `interval` it drains the route's measurements into the
//! window, asks the gate webhooks, lets the [`Rollout`] decide, and publishes the outcome to the
//! control task, the state file, the event log and the webhooks; in between, once a second, it
//! lets the sequential judge roll a burning canary back. Operator commands for the
//! route arrive on the same task, so they never race a check.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::analysis::judge::evidence::StepEvidence;
use crate::analysis::runner::engine::EngineError;
use crate::analysis::runner::persist::Persist;
use crate::analysis::runner::shared::EngineShared;
use crate::analysis::runner::webhook::{WebhookPayload, Webhooks};
use crate::analysis::{
    Command, CommandError, Decision, Event, GateAnswers, Params, Rollout, RolloutStatus, Severity,
    VersionWindow, Window,
};
use crate::config::{JudgeKind, Version, WebhookConfig, WebhookKind};
use crate::control::ControlHandle;
use crate::metrics::{RouteMetrics, VersionSample};

/// What the supervisor tells a route task.
#[derive(Debug)]
pub(in crate::analysis) enum RouteMsg {
    /// The config was reloaded: new settings apply from the next check.
    Config {
        params: Box<Params>,
        hooks: Vec<WebhookConfig>,
        metrics: Arc<RouteMetrics>,
    },
    /// An operator command; the reply is the route's new status.
    Command {
        command: Command,
        reply: oneshot::Sender<Result<RolloutStatus, EngineError>>,
    },
}

/// The state of one route's analysis.
pub(in crate::analysis) struct RouteTask {
    pub(in crate::analysis) params: Params,
    pub(in crate::analysis) hooks: Vec<WebhookConfig>,
    pub(in crate::analysis) rollout: Rollout,
    pub(in crate::analysis) metrics: Arc<RouteMetrics>,
    pub(in crate::analysis) control: ControlHandle,
    pub(in crate::analysis) persist: Persist,
    pub(in crate::analysis) shared: Arc<EngineShared>,
    pub(in crate::analysis) window: Window,
    pub(in crate::analysis) window_started: Instant,
    /// The sequential judge's evidence since the step (or rollout) began.
    pub(in crate::analysis) evidence: StepEvidence,
    /// Fleet mode: the rollout is shared with other replicas through etcd (`fleet_route.rs`).
    #[cfg(feature = "fleet")]
    pub(in crate::analysis) fleet: Option<crate::fleet::FleetHandle>,
}

/// How often the rollback side of the sequential judge is looked at between checks
/// (`docs/rollouts.md#fast-rollback`): at least every second, and 4 times a second so that the
/// wait for the next look (not the evidence) is a small part of the time to roll back. A look
/// is one drain of the shards and a few logarithms.
pub(in crate::analysis) const WATCH_EVERY: Duration = Duration::from_millis(250);

impl RouteTask {
    /// Run until the supervisor drops the sender. `startup` are the events of resuming.
    pub(in crate::analysis) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<RouteMsg>,
        startup: Vec<Event>,
    ) {
        #[cfg(feature = "fleet")]
        if let Some(fleet) = self.fleet.take() {
            return self.run_fleet(fleet, rx, startup).await;
        }
        self.publish(startup);
        // Measurements from before this task (or before a restart) are not this window's.
        self.discard_measurements();
        let mut next_check = Instant::now() + self.params.interval();
        let mut next_watch = Instant::now() + WATCH_EVERY;
        loop {
            let watching = self.params.analysis.judge == JudgeKind::Sequential;
            tokio::select! {
                _ = tokio::time::sleep_until(next_check) => {
                    self.check().await;
                    next_check = Instant::now() + self.params.interval();
                    next_watch = Instant::now() + WATCH_EVERY;
                }
                _ = tokio::time::sleep_until(next_watch), if watching => {
                    self.watch();
                    next_watch = Instant::now() + WATCH_EVERY;
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(RouteMsg::Config { params, hooks, metrics }) => {
                        if params.analysis.metrics != self.params.analysis.metrics {
                            // Other tests: the evidence counted for the old ones is not theirs.
                            self.evidence = StepEvidence::new(&params.analysis.metrics);
                        }
                        self.params = *params;
                        self.hooks = hooks;
                        self.metrics = metrics;
                        let events = self.rollout.on_config(&self.params, SystemTime::now());
                        if !events.is_empty() {
                            // A new revision starts from a clean window and no evidence.
                            self.start_afresh();
                        }
                        self.publish(events);
                        next_check = next_check.min(Instant::now() + self.params.interval());
                    }
                    Some(RouteMsg::Command { command, reply }) => {
                        let result = self.command(command).map_err(EngineError::from);
                        if result.is_ok() {
                            // An operator who gets the answer expects traffic to follow it
                            // already: wait until the data plane routes by the new view.
                            self.control
                                .apply_rollout(self.rollout.route(), self.rollout.view())
                                .await;
                        }
                        let _ = reply.send(result);
                    }
                },
            }
        }
    }

    /// One analysis interval (see `check.rs` for the protocol with the rollout).
    async fn check(&mut self) {
        self.drain_measurements();
        self.window.duration = self.window_started.elapsed();
        let window = self.window.clone();
        let evidence = self.evidence.clone();
        let (decision, events) = self.decide(&window, &evidence).await;
        self.conclude(&decision, events);
    }

    /// Ask the gates, judge `window` and `evidence` and ask the confirm webhooks: the
    /// rollout's next state. Publishes nothing (a fleet leader writes the state to etcd first).
    pub(in crate::analysis) async fn decide(
        &mut self,
        window: &Window,
        evidence: &StepEvidence,
    ) -> (Decision, Vec<Event>) {
        let mut answers = GateAnswers::default();
        for kind in self.rollout.gates(&self.params) {
            let yes = self.ask(kind).await;
            answers.set(kind, yes);
            if kind == WebhookKind::ConfirmRollout && !yes {
                break;
            }
        }
        let (mut decision, mut events) =
            self.rollout
                .check(&self.params, window, evidence, &answers, SystemTime::now());
        while let Decision::Confirm(confirm) = &decision {
            let yes = self.ask(confirm.webhook()).await;
            match self.rollout.confirm(yes, SystemTime::now()) {
                Ok((next, more)) => {
                    decision = next;
                    events.extend(more);
                }
                Err(_) => break,
            }
        }
        (decision, events)
    }

    /// Publish a decided check: new window and evidence as it says, then the outcome.
    pub(in crate::analysis) fn conclude(&mut self, decision: &Decision, events: Vec<Event>) {
        self.after(decision);
        self.publish(events);
        if decision.finished() {
            self.notify_post_rollout();
        }
    }

    /// Between checks: drain, and roll back at once if a sequential test accepted "bad".
    fn watch(&mut self) {
        self.drain_measurements();
        self.window.duration = self.window_started.elapsed();
        let Some((decision, events)) = self.rollout.watch(
            &self.params,
            &self.window,
            &self.evidence,
            SystemTime::now(),
        ) else {
            return;
        };
        self.after(&decision);
        self.publish(events);
        if decision.finished() {
            self.notify_post_rollout();
        }
    }

    /// Start a new window and new evidence as the decision says.
    pub(in crate::analysis) fn after(&mut self, decision: &Decision) {
        if decision.concludes_window() {
            self.start_window();
        }
        if decision.restarts_evidence(self.params.analysis.sequential.evidence) {
            self.evidence.clear();
        }
    }

    fn command(&mut self, command: Command) -> Result<RolloutStatus, CommandError> {
        let now = SystemTime::now();
        let events = match command {
            Command::Promote => self.rollout.promote(now)?,
            Command::Abort => self.rollout.abort(now)?,
            Command::Pause => self.rollout.pause(now)?,
            Command::Resume => self.rollout.resume(now)?,
            Command::Retry => self.rollout.retry(&self.params, now)?,
        };
        if command == Command::Retry {
            self.start_afresh();
        }
        self.publish(events);
        if matches!(command, Command::Promote | Command::Abort) {
            self.notify_post_rollout();
        }
        Ok(self.rollout.status())
    }

    /// Tell everyone what the rollout is now: the data plane (weight, phase), the state file,
    /// the admin API's status, the log, the event ring and the `event` webhooks.
    pub(in crate::analysis) fn publish(&self, events: Vec<Event>) {
        self.control
            .set_rollout(self.rollout.route(), self.rollout.view());
        self.persist.save(&self.rollout);
        self.shared.set_status(self.rollout.status());
        for event in events {
            match event.severity {
                Severity::Info => tracing::info!(route = %event.route, "{}", event.message),
                Severity::Warning => tracing::warn!(route = %event.route, "{}", event.message),
            }
            Webhooks::notify(
                &self.hooks,
                WebhookKind::Event,
                &self.payload(Some(event.message.clone())),
            );
            self.shared.push_event(event);
        }
    }

    pub(in crate::analysis) fn notify_post_rollout(&self) {
        let message = format!(
            "{} {} {}",
            self.rollout.route(),
            self.rollout.revision(),
            self.rollout.phase()
        );
        Webhooks::notify(
            &self.hooks,
            WebhookKind::PostRollout,
            &self.payload(Some(message)),
        );
    }

    async fn ask(&self, kind: WebhookKind) -> bool {
        Webhooks::ask(&self.hooks, kind, &self.payload(None))
            .await
            .is_yes()
    }

    fn payload(&self, message: Option<String>) -> WebhookPayload {
        WebhookPayload {
            route: self.rollout.route().to_owned(),
            phase: self.rollout.phase(),
            revision: self.rollout.revision().to_owned(),
            primary_revision: self.rollout.primary_revision().to_owned(),
            weight: self.rollout.weight(),
            failed_checks: self.rollout.failed_checks(),
            message,
        }
    }

    pub(in crate::analysis) fn start_window(&mut self) {
        self.window.clear();
        self.window_started = Instant::now();
    }

    /// A new revision or a retry: nothing measured so far is about this rollout.
    pub(in crate::analysis) fn start_afresh(&mut self) {
        self.start_window();
        self.evidence.clear();
    }

    pub(in crate::analysis) fn drain_measurements(&mut self) {
        let mut primary = VersionSample::default();
        let mut canary = VersionSample::default();
        self.metrics.drain_window(Version::Primary, &mut primary);
        self.metrics.drain_window(Version::Canary, &mut canary);
        add_sample(&mut self.window.primary, &primary);
        add_sample(&mut self.window.canary, &canary);
        self.evidence.add(&mut primary, &mut canary);
    }

    pub(in crate::analysis) fn discard_measurements(&mut self) {
        self.drain_measurements();
        self.start_afresh();
    }
}

/// Add what the data plane measured to an analysis window.
fn add_sample(window: &mut VersionWindow, sample: &VersionSample) {
    window.requests += sample.requests;
    window.failures += sample.failures;
    for bucket in sample.latency.iter_recorded() {
        window.latency.saturating_record_n(
            bucket.value_iterated_to(),
            u64::from(bucket.count_at_value()),
        );
    }
}
