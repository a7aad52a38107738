//! One analysed route's task: drives the route's [`RolloutRunner`] on tokio's clock. It sleeps
//! until the runner's next wake-up, drains the route's measurements into it, runs what is due
//! (a check every `interval`, asking the webhooks the runner asks for; with the sequential
//! judge a fast rollback look every [`super::rollout_runner::WATCH_EVERY`] between checks), and
//! publishes the outcome to the control task, the state file, the event log and the webhooks.
//! Operator commands for the route arrive on the same task, so they never race a check.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::analysis::runner::engine::EngineError;
use crate::analysis::runner::external::{read_all, Placeholders};
use crate::analysis::runner::persist::Persist;
use crate::analysis::runner::rollout_runner::{Due, Now, Restart, RolloutRunner, Step};
use crate::analysis::runner::shared::EngineShared;
use crate::analysis::runner::webhook::{redacted, OnUndelivered, WebhookPayload, Webhooks};
use crate::analysis::{Command, Decision, Event, Params, Rollout, RolloutStatus, Severity};
use crate::config::{Version, WebhookConfig, WebhookKind};
use crate::control::ControlHandle;
use crate::metrics::{RouteMetrics, VersionSample};

/// How long a decision waits for the control task to route by it before the status shows it
/// anyway: the control task answers at once unless a reload is resolving endpoint names.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Test-only: panic, as a bug would, to see the supervisor restart the task.
    #[cfg(test)]
    InjectPanic,
}

/// The state of one route's analysis.
pub(in crate::analysis) struct RouteTask {
    /// The rollout, its window and evidence, and its schedule.
    pub(in crate::analysis) runner: RolloutRunner,
    pub(in crate::analysis) hooks: Vec<WebhookConfig>,
    pub(in crate::analysis) metrics: Arc<RouteMetrics>,
    pub(in crate::analysis) control: ControlHandle,
    pub(in crate::analysis) persist: Persist,
    pub(in crate::analysis) shared: Arc<EngineShared>,
    /// The runner's monotonic origin: its schedule is kept as time since this instant.
    pub(in crate::analysis) origin: Instant,
    /// Fleet mode: the rollout is shared with other replicas through etcd (`fleet_route.rs`).
    #[cfg(feature = "fleet")]
    pub(in crate::analysis) fleet: Option<crate::fleet::FleetHandle>,
    /// Fleet mode, started without a saved rollout: the canary gets no traffic until the fleet
    /// state is applied or `lease_ttl` has passed (`fleet_route.rs`).
    #[cfg(feature = "fleet")]
    pub(in crate::analysis) held: bool,
}

/// The runner's clock on tokio's (paused in tests) timer.
pub(in crate::analysis) fn now_since(origin: Instant) -> Now {
    Now {
        at: origin.elapsed(),
        wall: SystemTime::now(),
    }
}

/// Read the external metrics for `runner`'s next check, unless it has them already.
pub(in crate::analysis) async fn read_external(runner: &mut RolloutRunner) {
    if runner.wants_readings() {
        let values = Placeholders::of(runner.rollout(), runner.params().interval());
        let readings = read_all(&runner.params().analysis.external, &values).await;
        runner.on_readings(readings);
    }
}

/// Run one check of `runner` (reading its external metrics first, unless they were), asking
/// `hooks` each webhook it asks for.
pub(in crate::analysis) async fn run_check(
    hooks: &[WebhookConfig],
    runner: &mut RolloutRunner,
    origin: Instant,
) -> (Decision, Vec<Event>) {
    read_external(runner).await;
    let mut step = runner.on_check(now_since(origin));
    loop {
        match step {
            Step::Ask(kind) => {
                let yes = ask(hooks, runner.rollout(), kind).await;
                step = runner.on_answer(yes, now_since(origin));
            }
            Step::Done(decision, events) => return (decision, events),
        }
    }
}

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
        self.publish(startup).await;
        // Measurements from before this task (or before a restart) are not this window's.
        self.discard_measurements();
        loop {
            let wake = self.origin + self.runner.next_wake();
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    self.drain_measurements();
                    let now = self.now();
                    match self.runner.due(now.at) {
                        Some(Due::Check) => self.check().await,
                        Some(Due::Watch) => self.watch(now).await,
                        None => {}
                    }
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(RouteMsg::Config { params, hooks, metrics }) => {
                        self.hooks = hooks;
                        self.metrics = metrics;
                        let events = self.runner.on_config(*params, self.now());
                        self.publish(events).await;
                    }
                    Some(RouteMsg::Command { command, reply }) => {
                        // An operator who gets the answer expects traffic to follow it
                        // already: `publish` waits until the data plane routes by it.
                        let result = self.command(command).await;
                        let _ = reply.send(result);
                    }
                    #[cfg(test)]
                    Some(RouteMsg::InjectPanic) => panic!("panic injected by a test"),
                },
            }
        }
    }

    /// The runner's clock now.
    pub(in crate::analysis) fn now(&self) -> Now {
        now_since(self.origin)
    }

    /// One analysis interval: gates, judgement, confirm webhooks, then the outcome.
    async fn check(&mut self) {
        let (decision, events) = run_check(&self.hooks, &mut self.runner, self.origin).await;
        self.conclude(&decision, events).await;
    }

    /// Publish a decided check or watch; a finished rollout tells the post-rollout hooks.
    pub(in crate::analysis) async fn conclude(&mut self, decision: &Decision, events: Vec<Event>) {
        self.publish(events).await;
        if decision.finished() {
            self.notify_post_rollout();
        }
    }

    /// Between checks: roll back at once if a sequential test accepted "bad".
    async fn watch(&mut self, now: Now) {
        if let Some((decision, events)) = self.runner.on_watch(now) {
            self.conclude(&decision, events).await;
        }
    }

    async fn command(&mut self, command: Command) -> Result<RolloutStatus, EngineError> {
        let events = self.runner.on_command(command, self.now())?;
        self.publish(events).await;
        if command.finishes() {
            self.notify_post_rollout();
        }
        Ok(self.runner.rollout().status())
    }

    /// Tell everyone what the rollout is now: the data plane (weight, phase), the state file,
    /// the admin API's status, the log, the event ring and the `event` webhooks.
    ///
    /// The status changes only once the data plane routes by the new view (or after
    /// [`PUBLISH_WAIT`]), so nobody reading the admin API sees a phase the traffic does not
    /// follow yet (`docs/operations.md#admin-api`).
    pub(in crate::analysis) async fn publish(&self, events: Vec<Event>) {
        let rollout = self.runner.rollout();
        #[cfg_attr(not(feature = "fleet"), allow(unused_mut))]
        let mut view = rollout.view();
        #[cfg(feature = "fleet")]
        if self.held {
            view.weight = 0;
        }
        let routed = self.control.set_rollout(rollout.route(), view);
        if let Err(e) = &routed {
            // The process is going down (the supervisor sees the control task end); the
            // state file still gets the decision below.
            tracing::error!(route = %rollout.route(), "cannot publish the rollout: {e}");
        }
        let evidence = self.runner.watching().then(|| self.runner.evidence());
        self.persist.save(rollout, evidence);
        if let Ok(routed) = routed {
            let _ = tokio::time::timeout(PUBLISH_WAIT, routed).await;
        }
        self.shared.set_status(rollout.status());
        let undelivered = self.undelivered();
        for event in events {
            let mut payload = payload(rollout, Some(event.message.clone()));
            payload.severity = event.severity;
            Webhooks::notify(&self.hooks, WebhookKind::Event, &payload, &undelivered);
            self.show_event(event);
        }
    }

    /// Log an event and keep it in the event ring the admin API reads.
    pub(in crate::analysis) fn show_event(&self, event: Event) {
        match event.severity {
            Severity::Info => tracing::info!(route = %event.route, "{}", event.message),
            Severity::Warning => tracing::warn!(route = %event.route, "{}", event.message),
        }
        self.shared.push_event(event);
    }

    /// What a notice that finally failed becomes: a warning event (logged and kept, but not
    /// sent to the `event` hooks, which may be the ones failing) and a count in
    /// `canaryd_webhook_failures_total`.
    pub(in crate::analysis) fn undelivered(&self) -> OnUndelivered {
        let route = self.runner.rollout().route().to_owned();
        let metrics = Arc::clone(&self.metrics);
        let shared = Arc::clone(&self.shared);
        Arc::new(move |hook: &WebhookConfig, reason: &str| {
            metrics.count_undelivered(hook.kind);
            let event = Event::warning(
                &route,
                SystemTime::now(),
                format!(
                    "Webhook {} {} not delivered after {} attempts: {reason}",
                    hook.kind.as_str(),
                    redacted(&hook.url),
                    hook.retries + 1
                ),
            );
            tracing::warn!(route = %event.route, "{}", event.message);
            shared.push_event(event);
        })
    }

    pub(in crate::analysis) fn notify_post_rollout(&self) {
        let rollout = self.runner.rollout();
        let message = format!(
            "{} {} {}",
            rollout.route(),
            rollout.revision(),
            rollout.phase()
        );
        let mut payload = payload(rollout, Some(message));
        payload.reason = rollout.reason().map(str::to_owned);
        Webhooks::notify(
            &self.hooks,
            WebhookKind::PostRollout,
            &payload,
            &self.undelivered(),
        );
    }

    /// Drain every worker's shard of the route's check window into the runner.
    pub(in crate::analysis) fn drain_measurements(&mut self) {
        let mut primary = VersionSample::default();
        let mut canary = VersionSample::default();
        self.metrics.drain_window(Version::Primary, &mut primary);
        self.metrics.drain_window(Version::Canary, &mut canary);
        self.runner.on_drain(&mut primary, &mut canary);
    }

    /// Drop what the data plane measured before this task ran (before a restart): it is
    /// not this window's. Evidence resumed from the state file is kept.
    pub(in crate::analysis) fn discard_measurements(&mut self) {
        let mut discarded = VersionSample::default();
        self.metrics.drain_window(Version::Primary, &mut discarded);
        self.metrics.drain_window(Version::Canary, &mut discarded);
        let window_only = Restart {
            window: true,
            evidence: false,
        };
        self.runner.restart(window_only, self.now());
    }
}

async fn ask(hooks: &[WebhookConfig], rollout: &Rollout, kind: WebhookKind) -> bool {
    Webhooks::ask(hooks, kind, &payload(rollout, None))
        .await
        .is_yes()
}

fn payload(rollout: &Rollout, message: Option<String>) -> WebhookPayload {
    WebhookPayload {
        route: rollout.route().to_owned(),
        phase: rollout.phase(),
        revision: rollout.revision().to_owned(),
        primary_revision: rollout.primary_revision().to_owned(),
        weight: rollout.weight(),
        failed_checks: rollout.failed_checks(),
        message,
        reason: None,
        severity: Severity::Info,
    }
}
