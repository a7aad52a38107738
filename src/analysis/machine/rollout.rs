//! The rollout of one route: its persisted state, how a config starts or resumes it (docs/rollouts.md#start), and the transitions every other file shares.
//!
//! Pure: no IO and no clock reads. Every call takes the route's current [`Params`] and `now`,
//! and returns the [`Event`]s it produced; the runner publishes [`Rollout::view`] and persists
//! the rollout after each call that changed it.
//!
//! ```text
//!            new revision                      check passes at last step
//!   Idle ───────────────► Waiting ──confirm──► Progressing ──────────────► WaitingPromotion
//!                            │                  │      ▲                          │ confirm
//!                            │ (no confirm-     │ pass: next step                 ▼
//!                            │  rollout hook)   └──────┘                       Succeeded
//!                            └──────────────────►│
//!                                                │ threshold failed / inconclusive limit /
//!                                                ▼ rollback webhook / abort
//!                                              Failed ──retry──► Waiting or Progressing
//! ```
//! Paused freezes Waiting, Progressing or WaitingPromotion and resumes to the same phase.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::analysis::machine::decision::{Confirm, Decision, RollbackReason};
use crate::analysis::machine::events::{unix_seconds, Event};
use crate::analysis::machine::params::Params;
use crate::analysis::machine::report::CheckReport;
use crate::config::WebhookKind;
use crate::routing::{Phase, RolloutView};

/// How a finished rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishOutcome {
    /// Promoted.
    Succeeded,
    /// Rolled back.
    Failed,
}

/// The last finished rollout of a route: which revision, and how it ended. A revision that
/// appears here is not rolled out again on its own (docs/rollouts.md#start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// The canary revision that finished.
    pub revision: String,
    /// Promoted or rolled back.
    pub outcome: FinishOutcome,
}

/// The phase a paused rollout returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResumeTo {
    /// Back to waiting for confirm-rollout.
    Waiting,
    /// Back to the checks.
    Progressing,
    /// Back to waiting for confirm-promotion.
    WaitingPromotion,
}

impl ResumeTo {
    pub(in crate::analysis) fn phase(self) -> Phase {
        match self {
            ResumeTo::Waiting => Phase::Waiting,
            ResumeTo::Progressing => Phase::Progressing,
            ResumeTo::WaitingPromotion => Phase::WaitingPromotion,
        }
    }
}

/// The rollout state of one route, as stored in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Route name.
    pub(in crate::analysis) route: String,
    /// The canary revision this state is about.
    pub(in crate::analysis) revision: String,
    /// The primary revision at the last config.
    pub(in crate::analysis) primary_revision: String,
    /// Current phase.
    #[serde(with = "crate::analysis::machine::phase_serde")]
    pub(in crate::analysis) phase: Phase,
    /// Canary weight, 0..=100.
    pub(in crate::analysis) weight: u8,
    /// Failed checks of this rollout; never reset by a passing check (Flagger's meaning).
    pub(in crate::analysis) failed_checks: u32,
    /// Inconclusive checks in a row.
    pub(in crate::analysis) inconclusive_checks: u32,
    /// Passed checks in iterations mode.
    pub(in crate::analysis) iterations: u32,
    /// Sequential judge: checks at the current step without a decision.
    #[serde(default)]
    pub(in crate::analysis) step_checks: u32,
    /// The `pre-rollout` gate is behind this rollout (passed, or none was configured when the
    /// first step was entered). Asked only once per rollout.
    pub(in crate::analysis) pre_rollout_passed: bool,
    /// The first step has been entered: the canary gets traffic. Before that the data plane
    /// treats the rollout as Waiting, so no request, match or mirror reaches the canary until
    /// `confirm-rollout` and `pre-rollout` passed.
    pub(in crate::analysis) started: bool,
    /// While Paused: the phase `resume` returns to.
    #[serde(default)]
    pub(in crate::analysis) paused_from: Option<ResumeTo>,
    /// The last finished rollout of this route.
    #[serde(default)]
    pub(in crate::analysis) last_finished: Option<Finished>,
    /// When this revision's rollout (re)started, unix seconds.
    pub(in crate::analysis) started_at: u64,
    /// Last transition, unix seconds.
    pub(in crate::analysis) updated_at: u64,
    /// The last check that judged a window.
    #[serde(default)]
    pub(in crate::analysis) last_check: Option<CheckReport>,
    /// Why the rollout is where it is, in one line: what the judge is still collecting, or why
    /// it was promoted or rolled back (`reason` in the status and the `post-rollout` payload).
    #[serde(default)]
    pub(in crate::analysis) reason: Option<String>,
    /// While Baking: the checks still to pass before the bake ends (docs/rollouts.md#bake).
    /// Counted in checks, not wall time, so that a bake follows the analysis clock (paused
    /// in tests, virtual in `canaryd simulate`) and a restart resumes it where it was.
    #[serde(default)]
    pub(in crate::analysis) bake_left: Option<u32>,
    /// `analysis.bake` of the check in progress, in checks, so a promotion (also the one a
    /// confirm webhook approves) knows whether to bake. Not persisted: every check sets it.
    #[serde(skip)]
    pub(in crate::analysis) bake_for: Option<u32>,
    /// A confirm webhook the runner was told to ask; only [`Rollout::confirm`] consumes it.
    /// Not persisted: after a restart the next passing check asks again.
    #[serde(skip)]
    pub(in crate::analysis) pending: Option<Confirm>,
}

// === impl Rollout: start and new revisions ===

impl Rollout {
    /// The rollout of a route at start-up: `previous` is its entry in the state file (`None`
    /// when absent or corrupt), resumed where it was unless the config moved on.
    pub fn start_or_resume(
        params: &Params,
        previous: Option<Rollout>,
        now: SystemTime,
    ) -> (Rollout, Vec<Event>) {
        let mut rollout = previous.unwrap_or_else(|| Rollout::blank(params, now));
        let events = rollout.on_config(params, now);
        (rollout, events)
    }

    /// An Idle rollout that has seen no revision yet; the first config starts it.
    fn blank(params: &Params, now: SystemTime) -> Rollout {
        let now = unix_seconds(now);
        Rollout {
            route: params.route.clone(),
            revision: String::new(),
            primary_revision: params.primary_revision.clone(),
            phase: Phase::Idle,
            weight: 0,
            failed_checks: 0,
            inconclusive_checks: 0,
            iterations: 0,
            step_checks: 0,
            pre_rollout_passed: false,
            started: false,
            paused_from: None,
            last_finished: None,
            started_at: now,
            updated_at: now,
            last_check: None,
            reason: None,
            bake_left: None,
            bake_for: None,
            pending: None,
        }
    }

    /// Apply a (re)loaded config. Rules, in order:
    ///
    /// 1. canary revision == primary revision → Idle (nothing to roll out);
    /// 2. same canary revision as before and not Idle → unchanged: the rollout continues, a
    ///    Failed revision stays Failed, a Succeeded one stays Succeeded; new analysis settings
    ///    apply from the next check;
    /// 3. the revision is the last finished one → that outcome again (Failed: weight 0 until
    ///    `retry`; Succeeded: weight 100);
    /// 4. otherwise "New revision detected": a fresh rollout from the first step, even if
    ///    another revision was mid-rollout.
    pub fn on_config(&mut self, params: &Params, now: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        self.route.clone_from(&params.route);
        self.primary_revision.clone_from(&params.primary_revision);

        if params.canary_revision == params.primary_revision {
            self.revision.clone_from(&params.canary_revision);
            if self.phase != Phase::Idle {
                self.become_idle(now, &mut events);
            }
            return events;
        }
        // Idle (and Static, which a rollout never is, but a hand-edited state file might say)
        // means "nothing in flight": the start rule is evaluated afresh.
        if params.canary_revision == self.revision && self.phase.in_flight() {
            return events;
        }

        self.revision.clone_from(&params.canary_revision);
        let finished = self
            .last_finished
            .as_ref()
            .filter(|f| f.revision == self.revision)
            .map(|f| f.outcome);
        match finished {
            Some(outcome) => self.restore(outcome, now, &mut events),
            None => {
                events.push(Event::info(
                    &self.route,
                    now,
                    format!(
                        "New revision detected! Rolling out {} {} (primary {})",
                        self.route, self.revision, self.primary_revision
                    ),
                ));
                self.start(params, now, &mut events);
            }
        }
        events
    }

    /// Begin this revision's rollout from the first step (also used by `retry`).
    pub(in crate::analysis) fn start(
        &mut self,
        params: &Params,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) {
        let confirm_first = params.hooks.has(WebhookKind::ConfirmRollout);
        self.phase = if confirm_first {
            Phase::Waiting
        } else {
            Phase::Progressing
        };
        self.weight = 0;
        self.failed_checks = 0;
        self.inconclusive_checks = 0;
        self.iterations = 0;
        self.step_checks = 0;
        self.pre_rollout_passed = false;
        self.started = false;
        self.paused_from = None;
        self.last_check = None;
        self.reason = None;
        self.bake_left = None;
        self.pending = None;
        self.started_at = unix_seconds(now);
        self.updated_at = unix_seconds(now);
        if confirm_first {
            return;
        }
        events.push(self.starting_event(now));
        // Without gates that need an answer, the canary gets its first step right away
        // rather than idling for one interval.
        let needs_answers = params.hooks.has(WebhookKind::PreRollout)
            || (params.first_weight().is_some()
                && params.hooks.has(WebhookKind::ConfirmTrafficIncrease));
        if !needs_answers {
            self.pre_rollout_passed = true;
            self.enter_first_step(params, now, events);
        }
    }

    pub(in crate::analysis) fn starting_event(&self, now: SystemTime) -> Event {
        Event::info(
            &self.route,
            now,
            format!("Starting canary analysis for {}", self.route),
        )
    }

    /// The start gates passed: give the canary its first step (weights) or its match or
    /// mirrored traffic (iterations).
    pub(in crate::analysis) fn enter_first_step(
        &mut self,
        params: &Params,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        match params.first_weight() {
            None => {
                self.started = true;
                self.updated_at = unix_seconds(now);
                Decision::Started
            }
            Some(weight) => self.increase_to(params, weight, now, events),
        }
    }

    /// Raise the weight, asking `confirm-traffic-increase` first when one is configured.
    pub(in crate::analysis) fn increase_to(
        &mut self,
        params: &Params,
        weight: u8,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if params.hooks.has(WebhookKind::ConfirmTrafficIncrease) {
            self.pending = Some(Confirm::TrafficIncrease(weight));
            return Decision::Confirm(Confirm::TrafficIncrease(weight));
        }
        self.advance_to(weight, now, events)
    }

    /// Set the canary's weight (the step was granted).
    pub(in crate::analysis) fn advance_to(
        &mut self,
        weight: u8,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.weight = weight.min(100);
        self.started = true;
        self.step_checks = 0;
        // What the judge was collecting was about the step just passed.
        self.reason = None;
        self.updated_at = unix_seconds(now);
        events.push(Event::info(
            &self.route,
            now,
            format!("Advance {} canary weight {}", self.route, self.weight),
        ));
        Decision::Advance(self.weight)
    }

    /// All traffic to the canary: phase Succeeded, weight 100.
    pub(in crate::analysis) fn promote_now(
        &mut self,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if let Some(bake) = self.bake_for.take().filter(|_| self.phase != Phase::Baking) {
            return self.start_bake(bake, now, events);
        }
        self.finish(FinishOutcome::Succeeded, now);
        self.reason = Some(match self.bake_left.take() {
            Some(_) => "every check passed, and the bake".to_owned(),
            None => "every check passed".to_owned(),
        });
        events.push(Event::info(
            &self.route,
            now,
            format!(
                "Promotion completed! {} is now serving {}",
                self.route, self.revision
            ),
        ));
        Decision::Promote
    }

    /// The last step passed and `bake` is set: all traffic to the canary, the primary still
    /// running, checks going on until `bake` has passed (docs/rollouts.md#bake).
    fn start_bake(&mut self, checks: u32, now: SystemTime, events: &mut Vec<Event>) -> Decision {
        self.phase = Phase::Baking;
        self.weight = 100;
        self.pending = None;
        self.paused_from = None;
        self.bake_left = Some(checks);
        self.updated_at = unix_seconds(now);
        self.reason = Some(format!("baking at 100% for {checks} more checks"));
        events.push(Event::info(
            &self.route,
            now,
            format!(
                "Baking {} {} at 100% for {checks} checks; {} is still running",
                self.route, self.revision, self.primary_revision
            ),
        ));
        Decision::Bake
    }

    /// No traffic to the canary: phase Failed, weight 0, sticky until a new revision or retry.
    /// `cause` is what the canary's failed connects were, when it had any
    /// (docs/operations.md#why-a-canary-was-rolled-back): the reason and the event name it.
    pub(in crate::analysis) fn roll_back(
        &mut self,
        reason: RollbackReason,
        cause: Option<&str>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.finish(FinishOutcome::Failed, now);
        self.bake_left = None;
        let why = match cause {
            Some(cause) => format!("{reason}: {cause}"),
            None => reason.to_string(),
        };
        events.push(Event::warning(
            &self.route,
            now,
            format!("Rolling back {} {why}", self.route),
        ));
        self.reason = Some(why);
        events.push(Event::warning(
            &self.route,
            now,
            format!(
                "Canary failed! {} {} gets no traffic; {} serves {}",
                self.route, self.revision, self.route, self.primary_revision
            ),
        ));
        Decision::Rollback(reason)
    }

    fn finish(&mut self, outcome: FinishOutcome, now: SystemTime) {
        self.phase = match outcome {
            FinishOutcome::Succeeded => Phase::Succeeded,
            FinishOutcome::Failed => Phase::Failed,
        };
        self.weight = match outcome {
            FinishOutcome::Succeeded => 100,
            FinishOutcome::Failed => 0,
        };
        self.paused_from = None;
        self.pending = None;
        self.updated_at = unix_seconds(now);
        self.last_finished = Some(Finished {
            revision: self.revision.clone(),
            outcome,
        });
    }

    /// A revision that already finished comes back: keep its outcome (rollback is sticky).
    fn restore(&mut self, outcome: FinishOutcome, now: SystemTime, events: &mut Vec<Event>) {
        self.finish(outcome, now);
        self.started = false;
        self.inconclusive_checks = 0;
        let message = match outcome {
            FinishOutcome::Failed => format!(
                "{} {} already failed: no traffic until a new revision or retry",
                self.route, self.revision
            ),
            FinishOutcome::Succeeded => format!(
                "{} {} already succeeded: serving it to all traffic",
                self.route, self.revision
            ),
        };
        events.push(Event::info(&self.route, now, message));
    }

    fn become_idle(&mut self, now: SystemTime, events: &mut Vec<Event>) {
        self.phase = Phase::Idle;
        self.weight = 0;
        self.started = false;
        self.paused_from = None;
        self.pending = None;
        self.failed_checks = 0;
        self.inconclusive_checks = 0;
        self.iterations = 0;
        self.step_checks = 0;
        self.updated_at = unix_seconds(now);
        events.push(Event::info(
            &self.route,
            now,
            format!(
                "{} is idle: primary and canary both are {}",
                self.route, self.revision
            ),
        ));
    }
}

// === impl Rollout: what others read ===

impl Rollout {
    /// What the data plane needs: phase and weight. Failed is always weight 0, Succeeded
    /// always 100, and a rollout whose first step has not been entered (confirm-rollout or
    /// pre-rollout pending, or paused before that) is shown as Waiting so that neither weight,
    /// match rules nor mirroring send the canary anything yet.
    pub fn view(&self) -> RolloutView {
        let (phase, weight) = match self.phase {
            Phase::Failed => (Phase::Failed, 0),
            Phase::Succeeded => (Phase::Succeeded, 100),
            Phase::Baking => (Phase::Baking, 100),
            Phase::Idle => (Phase::Idle, 0),
            Phase::Waiting | Phase::Progressing | Phase::Paused | Phase::WaitingPromotion
                if !self.started =>
            {
                (Phase::Waiting, 0)
            }
            phase => (phase, self.weight.min(100)),
        };
        RolloutView { phase, weight }
    }

    /// Route name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The canary revision this rollout is about.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The primary revision at the last config.
    pub fn primary_revision(&self) -> &str {
        &self.primary_revision
    }

    /// Current phase (as the API shows it; see [`Rollout::view`] for the data plane's).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Canary weight as the data plane applies it.
    pub fn weight(&self) -> u8 {
        self.view().weight
    }

    /// Failed checks of this rollout.
    pub fn failed_checks(&self) -> u32 {
        self.failed_checks
    }

    /// While Baking: the checks still to pass before the bake ends.
    pub fn bake_left(&self) -> Option<u32> {
        self.bake_left
    }

    /// Why the rollout is where it is, one line (see the field).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Inconclusive checks in a row.
    pub fn inconclusive_checks(&self) -> u32 {
        self.inconclusive_checks
    }

    /// Passed checks in iterations mode.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Whether the canary has entered its first step.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The last finished rollout of this route.
    pub fn last_finished(&self) -> Option<&Finished> {
        self.last_finished.as_ref()
    }

    /// The last check that judged a window.
    pub fn last_check(&self) -> Option<&CheckReport> {
        self.last_check.as_ref()
    }

    /// When this revision's rollout (re)started, unix seconds.
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// Last transition, unix seconds.
    pub fn updated_at(&self) -> u64 {
        self.updated_at
    }
}
