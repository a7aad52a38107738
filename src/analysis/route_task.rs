//! One analysed route's task: every `interval` it drains the route's measurements into the
//! window, asks the gate webhooks, lets the [`Rollout`] decide, and publishes the outcome to the
//! control task, the state file, the event log and the webhooks. Operator commands for the
//! route arrive on the same task, so they never race a check.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::engine::{EngineError, EngineShared};
use super::persist::Persist;
use super::webhook::{WebhookPayload, Webhooks};
use super::{
    Command, CommandError, Decision, Event, GateAnswers, Params, Rollout, RolloutStatus, Severity,
    VersionWindow, Window,
};
use crate::config::{Version, WebhookConfig, WebhookKind};
use crate::control::ControlHandle;
use crate::metrics::{RouteMetrics, VersionSample};

/// What the supervisor tells a route task.
#[derive(Debug)]
pub(super) enum RouteMsg {
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
pub(super) struct RouteTask {
    pub(super) params: Params,
    pub(super) hooks: Vec<WebhookConfig>,
    pub(super) rollout: Rollout,
    pub(super) metrics: Arc<RouteMetrics>,
    pub(super) control: ControlHandle,
    pub(super) persist: Persist,
    pub(super) shared: Arc<EngineShared>,
    pub(super) window: Window,
    pub(super) window_started: Instant,
    /// Fleet mode: the rollout is shared with other replicas through etcd (`fleet_route.rs`).
    #[cfg(feature = "fleet")]
    pub(super) fleet: Option<crate::fleet::FleetHandle>,
}

impl RouteTask {
    /// Run until the supervisor drops the sender. `startup` are the events of resuming.
    pub(super) async fn run(
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
        let mut next_check = Instant::now() + self.params.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_check) => {
                    self.check().await;
                    next_check = Instant::now() + self.params.interval;
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(RouteMsg::Config { params, hooks, metrics }) => {
                        self.params = *params;
                        self.hooks = hooks;
                        self.metrics = metrics;
                        let events = self.rollout.on_config(&self.params, SystemTime::now());
                        if !events.is_empty() {
                            // A new revision starts from a clean window.
                            self.start_window();
                        }
                        self.publish(events);
                        next_check = next_check.min(Instant::now() + self.params.interval);
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
        let (decision, events) = self.decide(&window).await;
        self.conclude(&decision, events);
    }

    /// Ask the gates, judge `window` and ask the confirm webhooks: the rollout's next state.
    /// Publishes nothing (a fleet leader writes the state to etcd first).
    pub(super) async fn decide(&mut self, window: &Window) -> (Decision, Vec<Event>) {
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
                .check(&self.params, window, &answers, SystemTime::now());
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

    /// Publish a decided check: new window if it concluded, then the outcome.
    pub(super) fn conclude(&mut self, decision: &Decision, events: Vec<Event>) {
        if decision.concludes_window() {
            self.start_window();
        }
        self.publish(events);
        if decision.finished() {
            self.notify_post_rollout();
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
            self.start_window();
        }
        self.publish(events);
        if matches!(command, Command::Promote | Command::Abort) {
            self.notify_post_rollout();
        }
        Ok(self.rollout.status())
    }

    /// Tell everyone what the rollout is now: the data plane (weight, phase), the state file,
    /// the admin API's status, the log, the event ring and the `event` webhooks.
    pub(super) fn publish(&self, events: Vec<Event>) {
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

    pub(super) fn notify_post_rollout(&self) {
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

    pub(super) fn start_window(&mut self) {
        self.window.clear();
        self.window_started = Instant::now();
    }

    pub(super) fn drain_measurements(&mut self) {
        for (version, into) in [
            (Version::Primary, &mut self.window.primary),
            (Version::Canary, &mut self.window.canary),
        ] {
            let mut sample = VersionSample::default();
            self.metrics.drain_window(version, &mut sample);
            add_sample(into, &sample);
        }
    }

    pub(super) fn discard_measurements(&mut self) {
        self.drain_measurements();
        self.start_window();
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
