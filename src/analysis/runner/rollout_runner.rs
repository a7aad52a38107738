//! The one rollout runner (docs/architecture.md#the-one-runner): the protocol every way a
//! rollout runs follows — the local route task, the fleet route task and `canaryd simulate` —
//! around the pure [`Rollout`].
//!
//! Pure as the machine is: no IO, no timers, no clock reads. The caller owns time and the
//! webhooks. It sleeps (or moves a virtual clock) until [`RolloutRunner::next_wake`], drains
//! what was measured into [`RolloutRunner::on_drain`], and acts on [`RolloutRunner::due`]:
//!
//! - [`Due::Check`]: [`RolloutRunner::on_check`], then [`RolloutRunner::on_answer`] with each
//!   webhook answer the returned [`Step::Ask`] asks for, until [`Step::Done`];
//! - [`Due::Watch`]: [`RolloutRunner::on_watch`], the sequential judge's fast rollback look
//!   every [`WATCH_EVERY`] between checks.
//!
//! Operator commands go through [`RolloutRunner::on_command`], reloads through
//! [`RolloutRunner::on_config`]. Every one of them restarts the window and the evidence as the
//! decision says and reschedules the next check and watch, so neither the timing nor the
//! resets can differ between the three drivers.
//!
//! Adding a phase or a check that asks something outside (an external metric, a bake time)
//! is one more [`Step::Ask`]-like request the drivers answer: the runner keeps the check's
//! progress in [`CheckProgress`], the drivers only loop until [`Step::Done`].

use std::time::{Duration, SystemTime};

use crate::analysis::judge::external::{ExternalReading, Reading};
use crate::analysis::{
    Command, CommandError, Decision, Drained, Event, GateAnswers, Params, Rollout, StepEvidence,
    Window,
};
use crate::config::{JudgeKind, WebhookKind};
use crate::routing::Phase;

/// How often the rollback side of the sequential judge is looked at between checks
/// (`docs/rollouts.md#fast-rollback`): 4 times a second, so that the wait for the next look
/// (not the evidence) is a small part of the time to roll back. A look is one drain of the
/// shards and a few logarithms.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The caller's clock, read once per call: `at` is monotonic time since the caller's origin
/// (what the schedule is kept in), `wall` the time events and the state file carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since the driver's origin.
    pub at: Duration,
    /// Wall-clock time.
    pub wall: SystemTime,
}

/// What is due at a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A full check (every `interval`).
    Check,
    /// The fast rollback look between checks (sequential judge only).
    Watch,
}

/// The next step of a check: ask a webhook, or the check is decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask this webhook, then call [`RolloutRunner::on_answer`] with its answer.
    Ask(WebhookKind),
    /// The check decided; window, evidence and schedule already follow the decision.
    Done(Decision, Vec<Event>),
}

/// How far the check in progress is.
#[derive(Debug, Clone, Default)]
enum CheckProgress {
    /// No check in progress.
    #[default]
    None,
    /// Asking the gates `remaining` lists, in order; `asking` is out.
    Gates {
        asking: WebhookKind,
        remaining: Vec<WebhookKind>,
        answers: GateAnswers,
    },
    /// The check passed and a confirm webhook is out; `events` so far.
    Confirm { events: Vec<Event> },
}

/// One route's rollout with the measurements it is judged on and its schedule.
#[derive(Debug, Clone)]
pub struct RolloutRunner {
    params: Params,
    rollout: Rollout,
    window: Window,
    /// When the window began (the caller's monotonic time).
    window_started: Duration,
    /// The sequential judge's evidence since the step (or rollout) began.
    evidence: StepEvidence,
    next_check: Duration,
    next_watch: Duration,
    check: CheckProgress,
    /// The external metrics read for the next check ([`RolloutRunner::on_readings`]);
    /// `None` until they are read.
    readings: Option<Vec<ExternalReading>>,
}

impl RolloutRunner {
    /// A runner for `rollout`, with an empty `window` and evidence, its first check one
    /// interval from `now`.
    pub fn new(params: Params, rollout: Rollout, window: Window, now: Now) -> RolloutRunner {
        let evidence = StepEvidence::new(&params.analysis.metrics);
        RolloutRunner {
            next_check: now.at + params.interval(),
            next_watch: now.at + WATCH_EVERY,
            params,
            rollout,
            window,
            window_started: now.at,
            evidence,
            check: CheckProgress::None,
            readings: None,
        }
    }

    /// Continue with `evidence` saved before a restart; dropped when it is not of the current
    /// metrics (docs/rollouts.md#state-file).
    pub fn with_evidence(mut self, evidence: StepEvidence) -> RolloutRunner {
        if evidence.slow.len() == self.evidence.slow.len()
            && evidence
                .slow
                .iter()
                .zip(&self.evidence.slow)
                .all(|(saved, fresh)| saved.test == fresh.test)
        {
            self.evidence = evidence;
        }
        self
    }

    /// The rollout.
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// The route's current analysis settings.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current check window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The sequential judge's evidence.
    pub fn evidence(&self) -> &StepEvidence {
        &self.evidence
    }

    /// How long the current window has been gathering at `now`.
    pub fn window_age(&self, now: Now) -> Duration {
        now.at.saturating_sub(self.window_started)
    }

    /// Whether the sequential judge's fast rollback path runs between checks.
    pub fn watching(&self) -> bool {
        self.params.analysis.judge == JudgeKind::Sequential
    }

    /// When the next check or watch is due (the caller's monotonic time).
    pub fn next_wake(&self) -> Duration {
        if self.watching() {
            self.next_check.min(self.next_watch)
        } else {
            self.next_check
        }
    }

    /// What is due at `at`, if anything; a check wins over a watch.
    pub fn due(&self, at: Duration) -> Option<Due> {
        if at >= self.next_check {
            Some(Due::Check)
        } else if self.watching() && at >= self.next_watch {
            Some(Due::Watch)
        } else {
            None
        }
    }

    /// Add one drain of both versions' measurements to the window and the evidence.
    pub fn on_drain(&mut self, primary: &mut impl Drained, canary: &mut impl Drained) {
        primary.add_to_window(&mut self.window.primary);
        canary.add_to_window(&mut self.window.canary);
        self.evidence.add(primary, canary);
    }

    /// Whether the next check judges external metrics that were not read for it yet, so the
    /// caller should read them first and hand them to [`RolloutRunner::on_readings`].
    pub fn wants_readings(&self) -> bool {
        self.readings.is_none()
            && !self.params.analysis.external.is_empty()
            && matches!(
                self.rollout.phase(),
                Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion | Phase::Baking
            )
    }

    /// The external metrics' readings for the next check (read off the request path by the
    /// route task; `canaryd simulate` assumes them passing). A count-form reading of a
    /// canary that has traffic adds its events to the evidence: the sequential judge tests
    /// them like the canary's own requests (docs/rollouts.md#external-metrics).
    pub fn on_readings(&mut self, readings: Vec<ExternalReading>) {
        let judged = match self.rollout.phase() {
            Phase::Progressing | Phase::WaitingPromotion => self.rollout.started(),
            Phase::Baking => true,
            Phase::Idle
            | Phase::Static
            | Phase::Waiting
            | Phase::Paused
            | Phase::Succeeded
            | Phase::Failed => false,
        };
        if judged {
            for reading in &readings {
                if let Ok(Reading::Count { failures, total }) = reading.result {
                    self.evidence.add_external(&reading.name, failures, total);
                }
            }
        }
        self.readings = Some(readings);
    }

    /// Begin a check: the first webhook to ask, or the decision when no gate applies.
    pub fn on_check(&mut self, now: Now) -> Step {
        self.window.duration = self.window_age(now);
        let mut remaining = self.rollout.gates(&self.params);
        remaining.reverse();
        match remaining.pop() {
            Some(asking) => {
                self.check = CheckProgress::Gates {
                    asking,
                    remaining,
                    answers: GateAnswers::default(),
                };
                Step::Ask(asking)
            }
            None => self.judge(&GateAnswers::default(), now),
        }
    }

    /// The answer to the webhook the last [`Step::Ask`] asked for.
    pub fn on_answer(&mut self, yes: bool, now: Now) -> Step {
        match std::mem::take(&mut self.check) {
            CheckProgress::None => self.finish(Decision::Skip, Vec::new(), now),
            CheckProgress::Gates {
                asking,
                mut remaining,
                mut answers,
            } => {
                answers.set(asking, yes);
                // Without the rollout's approval nothing else is worth asking.
                let refused = asking == WebhookKind::ConfirmRollout && !yes;
                match remaining.pop() {
                    Some(next) if !refused => {
                        self.check = CheckProgress::Gates {
                            asking: next,
                            remaining,
                            answers,
                        };
                        Step::Ask(next)
                    }
                    _ => self.judge(&answers, now),
                }
            }
            CheckProgress::Confirm { mut events } => {
                match self.rollout.confirm(yes, now.wall) {
                    Ok((decision, more)) => {
                        events.extend(more);
                        self.decided(decision, events, now)
                    }
                    // Nothing was pending after all: the check holds.
                    Err(_) => self.finish(Decision::Skip, events, now),
                }
            }
        }
    }

    /// Run a whole check with every gate and confirm webhook saying the harmless thing (yes;
    /// `rollback` no): `canaryd simulate`, and a fleet replica cut off from etcd, which asks
    /// no webhook on the leader's behalf.
    pub fn check_unattended(&mut self, now: Now) -> (Decision, Vec<Event>) {
        let mut step = self.on_check(now);
        loop {
            match step {
                Step::Ask(kind) => step = self.on_answer(kind != WebhookKind::Rollback, now),
                Step::Done(decision, events) => return (decision, events),
            }
        }
    }

    /// Between checks: roll back at once if a sequential test accepted "bad".
    pub fn on_watch(&mut self, now: Now) -> Option<(Decision, Vec<Event>)> {
        self.watched(now);
        self.window.duration = self.window_age(now);
        let (decision, events) =
            self.rollout
                .watch(&self.params, &self.window, &self.evidence, now.wall)?;
        self.restart_as(&decision, now);
        Some((decision, events))
    }

    /// An operator command; its events (the caller publishes them, and calls post-rollout
    /// when [`Command::finishes`] says so).
    pub fn on_command(&mut self, command: Command, now: Now) -> Result<Vec<Event>, CommandError> {
        let events = self.rollout.apply(command, &self.params, now.wall)?;
        self.check = CheckProgress::None;
        self.restart(Restart::after_command(command), now);
        Ok(events)
    }

    /// A reloaded config: new settings from the next check; a new revision starts from a
    /// clean window and no evidence.
    pub fn on_config(&mut self, params: Params, now: Now) -> Vec<Event> {
        self.set_params(params, now);
        let events = self.rollout.on_config(&self.params, now.wall);
        if !events.is_empty() {
            self.start_afresh(now);
        }
        events
    }

    /// New settings without applying them to the rollout (a fleet member: the leader starts
    /// a new revision once every member has the settings). A shorter interval applies now.
    pub fn set_params(&mut self, params: Params, now: Now) {
        if params.analysis.metrics != self.params.analysis.metrics {
            // Other tests: the evidence counted for the old ones is not theirs.
            self.evidence = StepEvidence::new(&params.analysis.metrics);
        }
        self.params = params;
        self.next_check = self.next_check.min(now.at + self.params.interval());
    }

    /// A check ran (here or on a copy): the next one is an interval away, the next watch a
    /// watch period.
    pub fn checked(&mut self, now: Now) {
        self.next_check = now.at + self.params.interval();
        self.next_watch = now.at + WATCH_EVERY;
    }

    /// A watch ran (here or on a copy): the next one is a watch period away.
    pub fn watched(&mut self, now: Now) {
        self.next_watch = now.at + WATCH_EVERY;
    }

    /// Replace the rollout with one decided elsewhere (a fleet's state), restarting what
    /// `restart` says.
    pub fn adopt(&mut self, rollout: Rollout, restart: Restart, now: Now) {
        self.rollout = rollout;
        self.check = CheckProgress::None;
        self.restart(restart, now);
    }

    /// Start the window and the evidence afresh as `restart` says.
    pub fn restart(&mut self, restart: Restart, now: Now) {
        if restart.window {
            self.start_window(now);
        }
        if restart.evidence {
            self.evidence.clear();
        }
    }

    /// Judge other measurements than this runner's own (a fleet leader's merged evidence) on
    /// a copy: the copy decides, and this runner adopts its rollout only once the decision
    /// is stored. The external readings go with the copy (their counts are already in this
    /// runner's evidence, and so in the merged evidence).
    pub fn judging(&mut self, window: Window, evidence: StepEvidence) -> RolloutRunner {
        let mut copy = self.clone();
        copy.window = window;
        copy.evidence = evidence;
        copy.readings = self.readings.take();
        copy
    }

    /// A new revision or a retry: nothing measured so far is about this rollout.
    pub fn start_afresh(&mut self, now: Now) {
        self.start_window(now);
        self.evidence.clear();
    }

    fn start_window(&mut self, now: Now) {
        self.window.clear();
        self.window_started = now.at;
    }

    /// Gates answered: judge the window and evidence.
    fn judge(&mut self, answers: &GateAnswers, now: Now) -> Step {
        let readings = self.readings.take().unwrap_or_default();
        let (decision, events) = self.rollout.check_with(
            &self.params,
            &self.window,
            &self.evidence,
            answers,
            &readings,
            now.wall,
        );
        self.decided(decision, events, now)
    }

    fn decided(&mut self, decision: Decision, events: Vec<Event>, now: Now) -> Step {
        if let Decision::Confirm(confirm) = &decision {
            let ask = confirm.webhook();
            self.check = CheckProgress::Confirm { events };
            return Step::Ask(ask);
        }
        self.finish(decision, events, now)
    }

    fn finish(&mut self, decision: Decision, events: Vec<Event>, now: Now) -> Step {
        self.check = CheckProgress::None;
        // Readings are for one check: the next one reads afresh.
        self.readings = None;
        self.restart_as(&decision, now);
        self.checked(now);
        Step::Done(decision, events)
    }

    fn restart_as(&mut self, decision: &Decision, now: Now) {
        let restart = Restart::after(decision, &self.params);
        self.restart(restart, now);
    }
}

/// What starts afresh after a decision: the check window, the judge's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// A new check window.
    pub window: bool,
    /// New evidence for the sequential judge.
    pub evidence: bool,
}

impl Restart {
    /// Nothing starts afresh.
    pub const NONE: Restart = Restart {
        window: false,
        evidence: false,
    };
    /// Both start afresh.
    pub const BOTH: Restart = Restart {
        window: true,
        evidence: true,
    };

    /// What `decision` starts afresh.
    pub fn after(decision: &Decision, params: &Params) -> Restart {
        Restart {
            window: decision.concludes_window(),
            evidence: decision.restarts_evidence(params.analysis.sequential.evidence),
        }
    }

    /// What `command` starts afresh.
    pub fn after_command(command: Command) -> Restart {
        Restart {
            window: command == Command::Retry,
            evidence: command == Command::Retry || command.finishes(),
        }
    }
}
