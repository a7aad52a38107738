//! A route task in fleet mode (`docs/fleet.md`): the same [`RouteTask`], with etcd between the
//! decision and everyone applying it.
//!
//! - Every replica drains its measurements into its runner every second and publishes them
//!   as evidence for the fleet's current window.
//! - The leader, on the [`RolloutRunner`]'s schedule (every `interval`, and the sequential
//!   judge's watch between), merges the evidence of every member ([`fleet_window`]), judges it
//!   on a copy of the runner ([`RolloutRunner::judging`]), and writes the new rollout in a fenced
//!   transaction; only a write that etcd accepted is adopted. It also consumes the operator
//!   commands queued in etcd.
//! - Every replica (the leader too) applies the state it watches: the rollout is replaced and
//!   published to the control task with the same message a local decision sends.
//! - A replica that started without a saved rollout serves the primary only until it applies
//!   the fleet state, or for `lease_ttl` at most, then its own rollout.
//! - Cut off from etcd, a replica keeps serving what it last applied; it judges its own traffic
//!   only to roll back (never to advance), and asks the fleet to abort once etcd is back.

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::analysis::judge::evidence::StepEvidence as JudgeEvidence;
use crate::analysis::runner::engine::EngineError;
use crate::analysis::runner::rollout_runner::{Due, Restart};
use crate::analysis::runner::route_task::{read_external, run_check, RouteMsg, RouteTask};
use crate::analysis::{
    Command, CommandError, Decision, Event, Params, Rollout, RolloutStatus, VersionWindow, Window,
};
use crate::config::MetricCheck;
use crate::control::ControlHandle;
use crate::fleet::{
    settings_hash, CommandResult, Counts, FleetCommand, FleetError, FleetHandle, MergedEvidence,
    Operation, RouteState, StepEvidence, WIRE_VERSION,
};
use crate::routing::Phase;

/// How often a replica publishes its evidence.
const EVIDENCE_EVERY: Duration = Duration::from_secs(1);
/// How long an operator waits for the leader to apply a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Command results kept in a route's state.
const KEPT_RESULTS: usize = 32;

/// What a route task knows about its fleet state.
struct Link {
    fleet: FleetHandle,
    /// `mod_revision` of the state applied last (0: none yet).
    applied_revision: i64,
    /// The fleet window evidence is counted for.
    window: u64,
    /// The judge's evidence period (its cumulative evidence restarts when this changes).
    evidence_epoch: u64,
    /// Command results of the applied state.
    results: Vec<CommandResult>,
    /// This replica's term while it leads.
    term: Option<i64>,
    /// Hash of the route's settings, published for drift detection.
    hash: String,
    /// Drift already reported (one event per episode).
    drift_reported: bool,
    /// While cut off from etcd: the local rollout judged on local traffic (rollback only).
    cut_off: Option<Rollout>,
    /// Rolled back locally while cut off: the revision, until the fleet has rolled it back.
    local_rollback: Option<String>,
}

/// The judge's input from the fleet's merged evidence: the one place that knows both shapes.
pub(in crate::analysis) fn fleet_window(merged: &MergedEvidence, duration: Duration) -> Window {
    let version = |counts: &Counts| VersionWindow {
        requests: counts.requests,
        failures: counts.failures,
        connect: counts.connect,
        latency: counts.latency.clone(),
    };
    Window {
        primary: version(&merged.primary),
        canary: version(&merged.canary),
        duration,
    }
}

fn counts_of(window: &VersionWindow) -> Counts {
    Counts {
        requests: window.requests,
        failures: window.failures,
        latency: window.latency.clone(),
        connect: window.connect,
    }
}

/// The judge's cumulative evidence as it travels in a replica's evidence key: the analysis's
/// own typed [`JudgeEvidence`] (docs/fleet.md#wire-format).
fn judge_to_json(evidence: &JudgeEvidence) -> Option<serde_json::Value> {
    serde_json::to_value(evidence).ok()
}

/// A peer's judge evidence, if it is of the same metrics (members agree on them: drift is
/// checked first, so another shape is a bug or a member of another version).
fn judge_from_json(metrics: &[MetricCheck], value: &serde_json::Value) -> Option<JudgeEvidence> {
    let evidence: JudgeEvidence = serde_json::from_value(value.clone()).ok()?;
    let ours = JudgeEvidence::new(metrics);
    let same_tests = evidence.slow.len() == ours.slow.len()
        && evidence
            .slow
            .iter()
            .zip(&ours.slow)
            .all(|(theirs, ours)| theirs.test == ours.test);
    same_tests.then_some(evidence)
}

/// An operator command as it travels between members.
fn to_wire(command: Command) -> Operation {
    match command {
        Command::Promote => Operation::Promote,
        Command::Abort => Operation::Abort,
        Command::Pause => Operation::Pause,
        Command::Resume => Operation::Resume,
        Command::Retry => Operation::Retry,
    }
}

/// The command a member asked for; `None` for a name this build does not know.
fn from_wire(operation: &Operation) -> Option<Command> {
    match operation {
        Operation::Promote => Some(Command::Promote),
        Operation::Abort => Some(Command::Abort),
        Operation::Pause => Some(Command::Pause),
        Operation::Resume => Some(Command::Resume),
        Operation::Retry => Some(Command::Retry),
        Operation::Unknown(_) => None,
    }
}

/// The drift hash: over the canonical serialisation of the settings, stable across builds.
fn hash_of(params: &Params) -> String {
    settings_hash(&params.canonical_settings())
}

impl RouteTask {
    /// The fleet-mode loop; ends when the supervisor drops the sender.
    pub(in crate::analysis) async fn run_fleet(
        mut self,
        fleet: FleetHandle,
        mut rx: mpsc::UnboundedReceiver<RouteMsg>,
        startup: Vec<Event>,
    ) {
        let mut link = Link {
            fleet: fleet.clone(),
            applied_revision: 0,
            window: 0,
            evidence_epoch: 0,
            results: Vec::new(),
            term: None,
            hash: hash_of(self.runner.params()),
            drift_reported: false,
            cut_off: None,
            local_rollback: None,
        };
        self.publish(startup).await;
        self.discard_measurements();
        let mut mirror = fleet.mirror();
        let mut session = fleet.session();
        let mut evidence = tokio::time::interval(EVIDENCE_EVERY);
        self.on_mirror(&mut link).await;
        let hold_until = Instant::now() + fleet.lease_ttl();
        loop {
            let wake = self.origin + self.runner.next_wake();
            tokio::select! {
                _ = tokio::time::sleep_until(hold_until), if self.held => {
                    tracing::warn!(
                        route = %self.runner.rollout().route(),
                        "no fleet state within lease_ttl; serving this replica's own rollout"
                    );
                    self.held = false;
                    self.publish(Vec::new()).await;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    match self.runner.due(now.at) {
                        Some(Due::Check) => {
                            self.fleet_check(&mut link).await;
                            self.runner.checked(self.now());
                        }
                        Some(Due::Watch) => {
                            self.fleet_watch(&mut link).await;
                            self.runner.watched(self.now());
                        }
                        None => {}
                    }
                }
                _ = evidence.tick() => self.publish_evidence(&mut link),
                changed = mirror.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.on_mirror(&mut link).await;
                }
                changed = session.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let term = session.borrow_and_update().term;
                    if term != link.term {
                        link.term = term;
                        if term.is_some() {
                            // A new leader continues where the state is, restarting only the
                            // interval timer.
                            self.runner.checked(self.now());
                            self.on_mirror(&mut link).await;
                        }
                    }
                }
                msg = rx.recv() => match msg {
                    None => return,
                    #[cfg(test)]
                    Some(RouteMsg::InjectPanic) => panic!("panic injected by a test"),
                    Some(RouteMsg::Config { params, hooks, metrics }) => {
                        self.hooks = hooks;
                        self.metrics = metrics;
                        // The leader starts a new revision at its next check, once every member
                        // has the same settings; followers wait for the state.
                        self.runner.set_params(*params, self.now());
                        link.hash = hash_of(self.runner.params());
                        let rollout = self.runner.rollout();
                        fleet.report(rollout.route(), rollout.weight(), &link.hash);
                    }
                    Some(RouteMsg::Command { command, reply }) => {
                        let fleet = fleet.clone();
                        let control = self.control.clone();
                        let route = self.runner.rollout().route().to_owned();
                        tokio::spawn(async move {
                            let answer = fleet_command(&fleet, &control, &route, command).await;
                            let _ = reply.send(answer);
                        });
                    }
                },
            }
        }
    }

    /// Drain local measurements into the window and publish them as this replica's evidence.
    fn publish_evidence(&mut self, link: &mut Link) {
        self.drain_measurements();
        let rollout = self.runner.rollout();
        let route = rollout.route().to_owned();
        link.fleet.report(&route, rollout.weight(), &link.hash);
        let judged = matches!(
            rollout.phase(),
            Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion
        );
        if !judged {
            return;
        }
        let window = self.runner.window();
        let evidence = StepEvidence {
            window: link.window,
            revision: rollout.revision().to_owned(),
            weight: rollout.weight(),
            primary: counts_of(&window.primary),
            canary: counts_of(&window.canary),
            judge: judge_to_json(self.runner.evidence()),
            judge_epoch: link.evidence_epoch,
            wire: WIRE_VERSION,
        };
        link.fleet.publish_evidence(&route, &evidence);
    }

    /// The mirror changed: apply a new state; as leader, create a missing state and consume
    /// queued commands.
    async fn on_mirror(&mut self, link: &mut Link) {
        let mirror = link.fleet.mirror().borrow().clone();
        let route = self.runner.rollout().route().to_owned();
        match mirror.state(&route) {
            Some((state, revision)) if revision != link.applied_revision => {
                self.apply_state(link, state, revision).await;
            }
            Some(_) => {}
            None => {
                if link.term.is_some() && link.applied_revision == 0 && link.fleet.fresh() {
                    // A new fleet: the leader's own rollout (from its state file) becomes the
                    // fleet's.
                    let first = self.runner.rollout().clone();
                    self.commit(link, first, Vec::new(), Restart::NONE, Vec::new(), &[])
                        .await;
                }
            }
        }
        if link.term.is_some() {
            let commands = mirror.commands(&route);
            if !commands.is_empty() {
                self.consume_commands(link, commands).await;
            }
        }
    }

    async fn apply_state(&mut self, link: &mut Link, state: RouteState, revision: i64) {
        let rollout: Rollout = match serde_json::from_value(state.rollout) {
            Ok(rollout) => rollout,
            Err(e) => {
                tracing::error!(route = %self.runner.rollout().route(), "fleet state has no valid rollout: {e}");
                return;
            }
        };
        if rollout.route() != self.runner.rollout().route() {
            return;
        }
        let told: Vec<Event> = state
            .events
            .iter()
            .filter_map(|event| serde_json::from_value(event.clone()).ok())
            .collect();
        link.applied_revision = revision;
        link.results = state.commands;
        link.cut_off = None;
        // Counts for an old window or evidence period no longer matter: start counting for
        // the new one.
        let restart = Restart {
            window: state.window != link.window,
            evidence: state.evidence != link.evidence_epoch,
        };
        link.window = state.window;
        link.evidence_epoch = state.evidence;
        let now = self.now();
        self.runner.restart(restart, now);
        if let Some(revision) = &link.local_rollback {
            let fleet_rolled_back = rollout.revision() != revision || rollout.weight() == 0;
            if !fleet_rolled_back {
                // Keep the canary out locally until the fleet has rolled it back too.
                return;
            }
            link.local_rollback = None;
        }
        if rollout != *self.runner.rollout() || self.held {
            // The fleet's state ends a start-up hold even when it is what this replica had.
            self.held = false;
            tracing::debug!(
                route = %rollout.route(),
                phase = %rollout.phase(),
                weight = rollout.weight(),
                revision,
                writer = %state.writer,
                "applying fleet state"
            );
            self.runner.adopt(rollout, Restart::NONE, now);
            self.publish(Vec::new()).await;
            // What the leader said about it, in this member's event log too (its webhooks
            // were the leader's to call).
            for event in told {
                self.show_event(event);
            }
        }
    }

    /// Every `interval`: the leader judges the fleet's evidence; a replica cut off from etcd
    /// judges its own, to roll back only.
    async fn fleet_check(&mut self, link: &mut Link) {
        let route = self.runner.rollout().route().to_owned();
        if !link.fleet.fresh() {
            self.cut_off_check(link).await;
            return;
        }
        if let Some(rolled_back) = link.local_rollback.clone() {
            // Back in touch after rolling back alone: ask the fleet to do the same.
            let command = FleetCommand {
                id: crate::fleet::new_command_id(link.fleet.replica()),
                command: to_wire(Command::Abort),
                from: link.fleet.replica().to_owned(),
            };
            if link.fleet.submit_command(&route, &command).await.is_ok() {
                tracing::warn!(route = %route, revision = %rolled_back, "asked the fleet to abort what this replica rolled back alone");
            }
        }
        let Some(_term) = link.term else {
            return;
        };
        let now = SystemTime::now();
        if let Some(differing) = link.fleet.drift(&route, &link.hash) {
            if !link.drift_reported {
                link.drift_reported = true;
                let event = Event::warning(
                    &route,
                    now,
                    format!(
                        "Fleet config drift on {route}: {} disagree about its settings; not judging until every member has the same config",
                        differing.join(", ")
                    ),
                );
                self.publish(vec![event]).await;
            }
            // Evidence gathered under mixed settings is not judged.
            return;
        }
        if link.drift_reported {
            link.drift_reported = false;
            let event = Event::info(
                &route,
                now,
                format!("Fleet members agree on {route}'s settings again"),
            );
            self.publish(vec![event]).await;
        }
        // A config that moved on (new revision) starts its rollout first.
        let mut next = self.runner.rollout().clone();
        let events = next.on_config(self.runner.params(), now);
        if !events.is_empty() {
            self.commit(link, next, events, Restart::BOTH, Vec::new(), &[])
                .await;
            return;
        }
        self.drain_measurements();
        // Read before merging: a count-form metric's events join this (the leader's) own
        // evidence, which the fleet's merged evidence includes.
        read_external(&mut self.runner).await;
        let Some((window, judged, replicas)) = self.merged(link) else {
            return;
        };
        let mut trial = self.runner.judging(window, judged);
        let (decision, events) = run_check(&self.hooks, &mut trial, self.origin).await;
        let next = trial.rollout().clone();
        if next == *self.runner.rollout() {
            return;
        }
        tracing::debug!(
            route = %route,
            canary_requests = trial.window().canary.requests,
            ?replicas,
            ?decision,
            "fleet check"
        );
        self.commit_decision(link, next, &decision, events).await;
    }

    /// The fleet's window (summed histograms) and the judge's evidence (summed counts) for the
    /// current window and evidence period, this replica's own included.
    fn merged(&self, link: &Link) -> Option<(Window, JudgeEvidence, Vec<String>)> {
        let rollout = self.runner.rollout();
        let route = rollout.route();
        let mirror = link.fleet.mirror().borrow().clone();
        let others = mirror.evidence(route, link.fleet.replica());
        let own = StepEvidence {
            window: link.window,
            revision: rollout.revision().to_owned(),
            weight: rollout.weight(),
            primary: counts_of(&self.runner.window().primary),
            canary: counts_of(&self.runner.window().canary),
            judge: None,
            judge_epoch: link.evidence_epoch,
            wire: WIRE_VERSION,
        };
        let entries = std::iter::once((link.fleet.replica(), &own))
            .chain(others.iter().map(|(replica, e)| (replica.as_str(), e)));
        let merged = match MergedEvidence::merge(link.window, rollout.revision(), entries) {
            Ok(merged) => merged,
            Err(e) => {
                tracing::error!(route, "cannot merge fleet evidence: {e}");
                return None;
            }
        };
        let mut judged = self.runner.evidence().clone();
        for (_, theirs) in &others {
            if theirs.judge_epoch != link.evidence_epoch
                || theirs.revision != rollout.revision()
                || theirs.wire != WIRE_VERSION
            {
                continue;
            }
            if let Some(value) = &theirs.judge {
                match judge_from_json(&self.runner.params().analysis.metrics, value) {
                    Some(evidence) => judged.merge(&evidence),
                    None => tracing::warn!(
                        route,
                        "ignoring a replica's judge evidence of another shape"
                    ),
                }
            }
        }
        let window = fleet_window(&merged, self.runner.window_age(self.now()));
        Some((window, judged, merged.replicas))
    }

    /// Between checks, on the leader: let the sequential judge roll a burning canary back on
    /// the fleet's evidence.
    async fn fleet_watch(&mut self, link: &mut Link) {
        if link.term.is_none() || !link.fleet.fresh() {
            return;
        }
        if link
            .fleet
            .drift(self.runner.rollout().route(), &link.hash)
            .is_some()
        {
            return;
        }
        self.drain_measurements();
        let Some((window, judged, _)) = self.merged(link) else {
            return;
        };
        let mut trial = self.runner.judging(window, judged);
        let Some((decision, events)) = trial.on_watch(self.now()) else {
            return;
        };
        let next = trial.rollout().clone();
        self.commit_decision(link, next, &decision, events).await;
    }

    /// Cut off from etcd: judge local traffic on a local copy of the rollout; apply it only if
    /// it rolls back.
    async fn cut_off_check(&mut self, link: &mut Link) {
        self.drain_measurements();
        let now = self.now();
        let mut trial = self.runner.clone();
        if let Some(local) = link.cut_off.take() {
            trial.adopt(local, Restart::NONE, now);
        }
        // Only the metrics decide here: no webhook is called on the leader's behalf.
        let (decision, mut events) = trial.check_unattended(now);
        let local = trial.rollout().clone();
        if let Decision::Rollback(_) = decision {
            events.insert(
                0,
                Event::warning(
                    local.route(),
                    SystemTime::now(),
                    format!(
                        "{} is cut off from etcd and its canary fails here: rolling back locally",
                        local.route()
                    ),
                ),
            );
            link.local_rollback = Some(local.revision().to_owned());
            let restart = Restart {
                window: true,
                evidence: false,
            };
            self.runner.adopt(local, restart, now);
            self.publish(events).await;
            return;
        }
        let restart = Restart {
            window: decision.concludes_window(),
            evidence: false,
        };
        self.runner.restart(restart, now);
        link.cut_off = Some(local);
    }

    /// Queued operator commands: apply them in order and write the result with the state.
    async fn consume_commands(&mut self, link: &mut Link, commands: Vec<(String, FleetCommand)>) {
        let now = SystemTime::now();
        let mut next = self.runner.rollout().clone();
        let mut events = Vec::new();
        let mut results = Vec::new();
        let mut keys = Vec::new();
        let mut restart = Restart::NONE;
        let mut finished = false;
        for (key, queued) in commands {
            keys.push(key);
            let Some(command) = from_wire(&queued.command) else {
                results.push(CommandResult {
                    id: queued.id,
                    refused: Some(format!("unknown command {:?}", queued.command.as_str())),
                    refused_in: None,
                });
                continue;
            };
            match next.apply(command, self.runner.params(), now) {
                Ok(more) => {
                    tracing::info!(route = %next.route(), command = command.as_str(), from = %queued.from, "fleet operator command");
                    events.extend(more);
                    let after = Restart::after_command(command);
                    restart.window |= after.window;
                    restart.evidence |= after.evidence;
                    finished |= command.finishes();
                    results.push(CommandResult {
                        id: queued.id,
                        refused: None,
                        refused_in: None,
                    });
                }
                Err(e) => results.push(CommandResult {
                    id: queued.id,
                    refused: Some(e.to_string()),
                    refused_in: Some(e.phase().as_str().to_owned()),
                }),
            }
        }
        let written = self
            .commit(link, next, events, restart, results, &keys)
            .await;
        if written && finished {
            self.notify_post_rollout();
        }
    }

    /// Write what a check or the watch decided, restarting the window and evidence as the
    /// decision says; a finished rollout that reached etcd tells the post-rollout hooks.
    async fn commit_decision(
        &mut self,
        link: &mut Link,
        next: Rollout,
        decision: &Decision,
        events: Vec<Event>,
    ) {
        let restart = Restart::after(decision, self.runner.params());
        let written = self
            .commit(link, next, events, restart, Vec::new(), &[])
            .await;
        if written && decision.finished() {
            self.notify_post_rollout();
        }
    }

    /// Write `next` as the route's fleet state (fenced); apply and publish it only if etcd
    /// accepted it. `restart` says what starts afresh with it.
    async fn commit(
        &mut self,
        link: &mut Link,
        next: Rollout,
        events: Vec<Event>,
        restart: Restart,
        results: Vec<CommandResult>,
        consumed: &[String],
    ) -> bool {
        let Some(term) = link.term else {
            return false;
        };
        let rollout = match serde_json::to_value(&next) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(route = %next.route(), "cannot encode the rollout: {e}");
                return false;
            }
        };
        let mut commands = link.results.clone();
        commands.extend(results);
        let excess = commands.len().saturating_sub(KEPT_RESULTS);
        commands.drain(..excess);
        let window = link.window + u64::from(restart.window);
        let evidence = link.evidence_epoch + u64::from(restart.evidence);
        let state = RouteState {
            rollout,
            term,
            writer: link.fleet.replica().to_owned(),
            window,
            evidence,
            weight: next.weight(),
            phase: next.phase().as_str().to_owned(),
            commands,
            events: events
                .iter()
                .filter_map(|event| serde_json::to_value(event).ok())
                .collect(),
        };
        let route = next.route().to_owned();
        match link
            .fleet
            .write_state(&route, &state, link.applied_revision, consumed)
            .await
        {
            Ok(revision) => {
                link.applied_revision = revision;
                link.results = state.commands;
                let restart = Restart {
                    window: window != link.window,
                    evidence: evidence != link.evidence_epoch,
                };
                link.window = window;
                link.evidence_epoch = evidence;
                let now = self.now();
                self.runner.adopt(next, restart, now);
                self.held = false;
                self.publish(events).await;
                true
            }
            Err(FleetError::Fenced) => {
                tracing::warn!(route = %route, term, "fleet state not written: leadership or state changed");
                false
            }
            Err(e) => {
                tracing::warn!(route = %route, "fleet state not written: {e}");
                false
            }
        }
    }
}

/// Why the leader refused `command`, as it said: the phase that refused it, not the phase
/// the route is in by the time the asker reads the answer.
fn refusal(command: Command, result: &CommandResult) -> EngineError {
    let phase = result
        .refused_in
        .as_deref()
        .and_then(|name| Phase::ALL.into_iter().find(|p| p.as_str() == name));
    match phase {
        Some(phase) => EngineError::NotAllowed(CommandError::NotAllowed { command, phase }),
        None => EngineError::Fleet(result.refused.clone().unwrap_or_default()),
    }
}

/// An operator command on this replica: queue it in etcd and answer once the fleet state
/// records what the leader did with it (and this replica's data plane routes by it).
async fn fleet_command(
    fleet: &FleetHandle,
    control: &ControlHandle,
    route: &str,
    command: Command,
) -> Result<RolloutStatus, EngineError> {
    let id = crate::fleet::new_command_id(fleet.replica());
    let mut mirror = fleet.mirror();
    let queued = FleetCommand {
        id: id.clone(),
        command: to_wire(command),
        from: fleet.replica().to_owned(),
    };
    fleet
        .submit_command(route, &queued)
        .await
        .map_err(|e| EngineError::Fleet(format!("cannot queue {command}: {e}")))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let answered = {
            let current = mirror.borrow_and_update();
            current.state(route).and_then(|(state, _)| {
                let result = state.commands.iter().find(|r| r.id == id)?.clone();
                let rollout: Rollout = serde_json::from_value(state.rollout).ok()?;
                Some((result, rollout))
            })
        };
        if let Some((result, rollout)) = answered {
            return match result.refused {
                None => {
                    control.apply_rollout(rollout.route(), rollout.view()).await;
                    Ok(rollout.status())
                }
                Some(_) => Err(refusal(command, &result)),
            };
        }
        match tokio::time::timeout_at(deadline, mirror.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(EngineError::Stopped),
            Err(_) => {
                return Err(EngineError::Fleet(format!(
                    "no fleet leader applied {command} within {}s; it stays queued",
                    COMMAND_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::tuned;
    use crate::config::{JudgeKind, MetricCheck};

    #[test]
    fn every_command_travels_as_the_name_the_cli_uses_and_comes_back_as_itself() {
        for command in Command::ALL {
            let wire = to_wire(command);
            assert_eq!(wire.as_str(), command.as_str());
            assert_eq!(from_wire(&wire), Some(command));
        }
        assert_eq!(from_wire(&Operation::Unknown("rewind".to_owned())), None);
    }

    #[test]
    fn a_refusal_carries_the_phase_that_refused_it() {
        // Resume refused while Progressing; by the time the asker reads it, the route may be
        // Paused (another command) — the answer still names the real reason.
        let result = CommandResult {
            id: "a-1".to_owned(),
            refused: Some("cannot resume: route is Progressing".to_owned()),
            refused_in: Some("Progressing".to_owned()),
        };
        let error = refusal(Command::Resume, &result);
        assert_eq!(error.to_string(), "cannot resume: route is Progressing");
        assert!(matches!(error, EngineError::NotAllowed(_)));
        // A refusal that is not about the phase is passed on as said.
        let unknown = CommandResult {
            id: "a-2".to_owned(),
            refused: Some("unknown command \"frobnicate\"".to_owned()),
            refused_in: None,
        };
        assert_eq!(
            refusal(Command::Promote, &unknown).to_string(),
            "fleet: unknown command \"frobnicate\""
        );
    }

    #[test]
    fn judge_evidence_travels_typed_and_only_to_a_member_of_the_same_metrics() {
        let params = tuned(|a| {
            a.judge = JudgeKind::Sequential;
            a.metrics.push(MetricCheck::Duration {
                threshold: Duration::from_millis(300),
                quantile: 0.9,
                max_ratio: Some(1.5),
            });
        });
        let mut evidence = JudgeEvidence::new(&params.analysis.metrics);
        evidence.primary.requests = 900;
        evidence.canary.requests = 100;
        evidence.canary.failures = 3;
        evidence.slow[0].canary_slow = 7;
        let value = judge_to_json(&evidence).unwrap_or_default();
        let back = judge_from_json(&params.analysis.metrics, &value)
            .unwrap_or_else(|| panic!("not read back: {value}"));
        assert_eq!(back.canary, evidence.canary);
        assert_eq!(back.slow, evidence.slow);
        // Another set of metrics (a drifted member) is not merged.
        let fewer = &params.analysis.metrics[..1];
        assert!(judge_from_json(fewer, &value).is_none());
    }
}
