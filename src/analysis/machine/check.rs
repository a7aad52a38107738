//! One analysis interval of a rollout (docs/rollouts.md#checks, docs/rollouts.md#promotion), and the
//! answer of a confirm webhook that a passing check asked for.
//!
//! What the runner does every `interval`, per route:
//!
//! 1. `let gates = rollout.gates(&params)`; call those webhooks in order and put each answer
//!    in [`GateAnswers`] (after a `confirm-rollout` "no" the rest may be skipped);
//! 2. `let (decision, events) = rollout.check(&params, &window, &answers, now)`;
//! 3. while the decision is [`Decision::Confirm`]: call `confirm.webhook()` and feed its answer
//!    to [`Rollout::confirm`], which returns the final decision;
//! 4. if `decision.concludes_window()` start a new window, else keep accumulating;
//! 5. publish `rollout.view()`, persist the rollout, log and store the events; on
//!    `decision.finished()` call the `post-rollout` webhooks.

use std::time::SystemTime;

use crate::analysis::judge::evidence::StepEvidence;
use crate::analysis::judge::external::{judge_all, CountForm, ExternalReading};
use crate::analysis::judge::sequential::{self, SequentialJudgement, TestResult};
use crate::analysis::judge::window::Window;
use crate::analysis::judge::{describe, judge, report, thousands, Failure};
use crate::analysis::machine::decision::{Confirm, Decision, GateAnswers, Hold, RollbackReason};
use crate::analysis::machine::events::{rfc3339, unix_seconds, Event};
use crate::analysis::machine::params::Params;
use crate::analysis::machine::report::{CheckOutcome, CheckReport, MetricReport, VersionReport};
use crate::analysis::machine::rollout::Rollout;
use crate::config::{JudgeKind, OnInconclusive, WebhookKind};
use crate::routing::Phase;

/// [`Rollout::confirm`] was called although no check asked for a confirmation (or a later
/// transition made the question moot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no confirmation is pending for this rollout")]
pub struct NothingPending;

/// What a check judges: the window since the last concluded check (threshold judge, and the
/// report), and the evidence since the step or rollout began (sequential judge).
#[derive(Clone, Copy)]
struct Observed<'a> {
    window: &'a Window,
    evidence: &'a StepEvidence,
    /// What the analysis task read of the external metrics for this check.
    external: &'a [ExternalReading],
    /// The canary's failed connects in `window`, named ([`connect_cause`]).
    cause: Option<&'a str>,
}

/// What [`Rollout::judge_threshold`] found in a window.
struct ThresholdJudgement {
    /// Every failure, in the order the reason names them.
    failures: Vec<Failure>,
    outcome: CheckOutcome,
    /// External metrics with no reading.
    unknown: Vec<String>,
    /// The canary had `required_requests` in the window.
    enough: bool,
}

/// The canary's failed connects in the window, by kind, for the reasons that blame its
/// errors (docs/operations.md#why-a-canary-was-rolled-back): "130 of 130 canary requests
/// failed to connect: connection refused". `None` when every connect succeeded.
fn connect_cause(window: &Window) -> Option<String> {
    let canary = &window.canary;
    let failed = canary.connect.total();
    (failed > 0).then(|| {
        format!(
            "{} of {} canary requests failed to connect: {}",
            thousands(failed),
            thousands(canary.requests),
            canary.connect
        )
    })
}

/// A failed check's event, with the cause when the failure is the error rate.
fn halt_detail(failure: &Failure, cause: Option<&str>) -> String {
    match (failure, cause) {
        (Failure::SuccessRate { .. } | Failure::SuccessRateDrop { .. }, Some(cause)) => {
            format!("{failure}; {cause}")
        }
        _ => failure.to_string(),
    }
}

/// A reason with the cause after it, when there is one.
fn with_cause(text: String, cause: Option<&str>) -> String {
    match cause {
        Some(cause) => format!("{text}; {cause}"),
        None => text,
    }
}

// === impl Rollout: checks ===

impl Rollout {
    /// Judge one interval. `answers` holds the replies of the webhooks [`Rollout::gates`]
    /// listed. See the module doc for what the runner does with the decision.
    pub fn check(
        &mut self,
        params: &Params,
        window: &Window,
        evidence: &StepEvidence,
        answers: &GateAnswers,
        now: SystemTime,
    ) -> (Decision, Vec<Event>) {
        self.check_with(params, window, evidence, answers, &[], now)
    }

    /// [`Rollout::check`] with the external metrics' readings of this check
    /// (`docs/rollouts.md#external-metrics`); a configured metric without a reading is
    /// inconclusive.
    pub fn check_with(
        &mut self,
        params: &Params,
        window: &Window,
        evidence: &StepEvidence,
        answers: &GateAnswers,
        external: &[ExternalReading],
        now: SystemTime,
    ) -> (Decision, Vec<Event>) {
        let mut events = Vec::new();
        let cause = connect_cause(window);
        let observed = Observed {
            window,
            evidence,
            external,
            cause: cause.as_deref(),
        };
        // A confirmation nobody answered is dropped: this check asks again if still relevant.
        self.pending = None;
        self.bake_for = params.bake_checks();
        // Only a check that judged (wrote a new report) has dry-run readings to tell.
        let previous = self.last_check.take();
        let decision = match self.phase {
            Phase::Idle | Phase::Static | Phase::Paused | Phase::Succeeded | Phase::Failed => {
                Decision::Skip
            }
            Phase::Waiting => self.waiting(params, observed, answers, now, &mut events),
            Phase::Progressing | Phase::WaitingPromotion => {
                self.analyse(params, observed, answers, now, &mut events)
            }
            Phase::Baking => self.bake(params, observed, now, &mut events),
        };
        if decision != Decision::Skip {
            self.updated_at = unix_seconds(now);
        }
        match self.last_check {
            Some(_) => self.dry_run_events(now, &mut events),
            None => self.last_check = previous,
        }
        (decision, events)
    }

    /// What a judged window comes to, kept as `last_check`: any failure fails it; too little
    /// traffic or an external metric without a value (`conclusive` false) leaves it
    /// inconclusive.
    fn conclude(
        &mut self,
        now: SystemTime,
        window: &Window,
        failures: &[Failure],
        conclusive: bool,
        metrics: Vec<MetricReport>,
    ) -> CheckOutcome {
        let outcome = CheckOutcome::of(!failures.is_empty(), conclusive);
        self.last_check = Some(CheckReport {
            at: rfc3339(now),
            outcome,
            window_seconds: window.duration.as_secs(),
            primary: VersionReport::of(&window.primary),
            canary: VersionReport::of(&window.canary),
            metrics,
        });
        outcome
    }

    /// Baking (docs/rollouts.md#bake): the canary has all the traffic, so only the absolute
    /// thresholds can be judged (there is no primary to compare with), with the external
    /// metrics. A failure rolls back at once; once `bake / interval` checks have passed, the
    /// promotion is complete. A check that cannot pass yet (too little traffic, evidence that
    /// no longer says "good", an external metric without a value) does not count.
    fn bake(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        match params.analysis.judge {
            JudgeKind::Threshold => self.bake_window(params, observed, now, events),
            JudgeKind::Sequential => self.bake_evidence(params, observed, now, events),
        }
    }

    /// The threshold judge's verdict on this check's window, what a step check and a bake check
    /// share: a failure found before the metrics (a `rollout` webhook's "no") first, then the
    /// request metrics' failures kept by `keep` (judged only with enough canary traffic), then
    /// the external metrics'; the report recorded, and the outcome derived from them.
    fn judge_threshold(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        now: SystemTime,
        first: Option<Failure>,
        keep: impl Fn(&Failure) -> bool,
    ) -> ThresholdJudgement {
        let window = observed.window;
        let judgement = judge(params, window);
        let (external, external_failures, unknown) = judge_all(
            &params.analysis.external,
            observed.external,
            CountForm::Rate,
        );
        let enough = window.canary.requests >= params.required_requests();
        let mut failures: Vec<Failure> = first.into_iter().collect();
        if enough {
            failures.extend(judgement.failures.into_iter().filter(|f| keep(f)));
        }
        failures.extend(external_failures);
        let mut metrics = judgement.metrics;
        metrics.extend(external);
        let outcome = self.conclude(
            now,
            window,
            &failures,
            enough && unknown.is_empty(),
            metrics,
        );
        ThresholdJudgement {
            failures,
            outcome,
            unknown,
            enough,
        }
    }

    /// The threshold judge's bake: this interval's window against the absolute thresholds.
    fn bake_window(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        // Baking, the canary is judged against the absolute thresholds only: the primary has
        // no traffic left to compare with.
        let ThresholdJudgement {
            failures, outcome, ..
        } = self.judge_threshold(params, observed, now, None, |f| {
            matches!(f, Failure::SuccessRate { .. } | Failure::Duration { .. })
        });
        if !failures.is_empty() {
            let detail: Vec<String> = failures.iter().map(ToString::to_string).collect();
            return self.bake_failed(&detail.join(", "), observed.cause, now, events);
        }
        if outcome == CheckOutcome::Pass {
            return self.bake_check_passed(now, events);
        }
        Decision::Hold(Hold::Baking)
    }

    /// The sequential judge's bake: the evidence the last step ended with goes on growing with
    /// the canary's traffic (and its count-form external metrics), and its absolute tests are
    /// judged; the rollback side is also looked at between checks ([`Rollout::watch`]).
    fn bake_evidence(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        let judgement = sequential::judge_absolute(params, observed.evidence);
        let (external, external_failures, unknown) = judge_all(
            &params.analysis.external,
            observed.external,
            CountForm::Evidence,
        );
        // An interval without canary traffic watched nothing: it does not count.
        let served = observed.window.canary.requests > 0;
        let passes = judgement.all_pass() && unknown.is_empty() && served;
        let outcome = CheckOutcome::of(
            judgement.rollback().is_some() || !external_failures.is_empty(),
            passes,
        );
        self.record_evidence(outcome, observed.window, &judgement, now);
        self.add_external_reports(external);
        if let Some(test) = judgement.rollback() {
            return self.bake_failed(&describe(test), observed.cause, now, events);
        }
        if !external_failures.is_empty() {
            let detail: Vec<String> = external_failures.iter().map(ToString::to_string).collect();
            return self.bake_failed(&detail.join(", "), observed.cause, now, events);
        }
        if passes {
            return self.bake_check_passed(now, events);
        }
        let detail = match judgement.closest() {
            Some(test) => describe(test),
            None if !unknown.is_empty() => {
                format!("external metrics inconclusive: {}", unknown.join("; "))
            }
            None => "no canary requests in this interval".to_owned(),
        };
        self.reason = Some(format!("baking at 100%, this check not counted: {detail}"));
        Decision::Hold(Hold::Baking)
    }

    /// A check failed while Baking: back to the primary at once.
    fn bake_failed(
        &mut self,
        detail: &str,
        cause: Option<&str>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.failed_checks += 1;
        let detail = with_cause(detail.to_owned(), cause);
        events.push(Event::warning(
            &self.route,
            now,
            format!("Halt {} bake: {detail}", self.route),
        ));
        let reason = RollbackReason::BakeFailed;
        let decision = self.roll_back(reason.clone(), cause, now, events);
        self.reason = Some(format!("{reason}: {detail}"));
        decision
    }

    /// A bake check passed: one fewer to go, and the promotion completes after the last.
    fn bake_check_passed(&mut self, now: SystemTime, events: &mut Vec<Event>) -> Decision {
        let left = self.bake_left.unwrap_or(1).saturating_sub(1);
        self.bake_left = Some(left);
        if left == 0 {
            events.push(Event::info(
                &self.route,
                now,
                format!("Bake of {} {} passed", self.route, self.revision),
            ));
            return self.promote_now(now, events);
        }
        self.reason = Some(format!("baking at 100% for {left} more checks"));
        Decision::Hold(Hold::Baking)
    }

    /// The external metrics' reports join the check's. A count-form metric judged by the
    /// sequential judge already has its test's entry: it gets the query sent and the error.
    fn add_external_reports(&mut self, external: Vec<MetricReport>) {
        let Some(report) = self.last_check.as_mut() else {
            return;
        };
        for read in external {
            let test = report
                .metrics
                .iter_mut()
                .find(|m| m.name == read.name && m.evidence.is_some());
            match test {
                Some(test) => {
                    test.query = read.query;
                    test.error = read.error;
                }
                None => report.metrics.push(read),
            }
        }
    }

    /// Every `dry_run` external metric of this check says what it read, deciding nothing.
    fn dry_run_events(&self, now: SystemTime, events: &mut Vec<Event>) {
        let Some(check) = &self.last_check else {
            return;
        };
        for metric in check.metrics.iter().filter(|m| m.dry_run) {
            let read = match (metric.value, &metric.error) {
                (Some(value), _) => format!("{value}"),
                (None, Some(error)) => format!("no value ({error})"),
                (None, None) => "no value".to_owned(),
            };
            events.push(Event::info(
                &self.route,
                now,
                format!(
                    "Dry run metric {} of {}: {read}, {} (decides nothing)",
                    metric.name,
                    self.route,
                    if metric.passed {
                        "would pass"
                    } else {
                        "would not pass"
                    }
                ),
            ));
        }
    }

    /// Feed the answer of the confirm webhook a [`Decision::Confirm`] asked for.
    /// Yes: the weight rises or the rollout is promoted. No: held (traffic increase refused:
    /// this interval only; promotion: stay WaitingPromotion and ask again after the next
    /// passing check).
    pub fn confirm(
        &mut self,
        approved: bool,
        now: SystemTime,
    ) -> Result<(Decision, Vec<Event>), NothingPending> {
        let pending = self.pending.take().ok_or(NothingPending)?;
        let mut events = Vec::new();
        self.updated_at = unix_seconds(now);
        let decision = match (pending, approved) {
            (Confirm::TrafficIncrease(weight), true) => self.advance_to(weight, now, &mut events),
            (Confirm::TrafficIncrease(weight), false) => {
                events.push(Event::info(
                    &self.route,
                    now,
                    format!(
                        "Halt {} advancement waiting for traffic increase approval (weight {weight})",
                        self.route
                    ),
                ));
                Decision::Hold(Hold::TrafficIncreaseRefused { to: weight })
            }
            (Confirm::Promotion, true) => self.promote_now(now, &mut events),
            (Confirm::Promotion, false) => {
                events.push(Event::info(
                    &self.route,
                    now,
                    format!(
                        "Halt {} advancement waiting for promotion approval",
                        self.route
                    ),
                ));
                Decision::Hold(Hold::PromotionNotConfirmed)
            }
        };
        Ok((decision, events))
    }

    /// Waiting: nothing happens until `confirm-rollout` says yes; then the analysis starts in
    /// this same interval.
    fn waiting(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        answers: &GateAnswers,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if params.hooks.has(WebhookKind::ConfirmRollout) && answers.confirm_rollout != Some(true) {
            events.push(Event::info(
                &self.route,
                now,
                format!(
                    "Halt {} advancement waiting for rollout approval",
                    self.route
                ),
            ));
            return Decision::Hold(Hold::RolloutNotConfirmed);
        }
        self.phase = Phase::Progressing;
        events.push(self.starting_event(now));
        self.analyse(params, observed, answers, now, events)
    }

    /// Progressing or WaitingPromotion: rollback webhook, then the start gates or the window.
    fn analyse(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        answers: &GateAnswers,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if params.hooks.has(WebhookKind::Rollback) && answers.rollback == Some(true) {
            return self.roll_back(RollbackReason::RollbackWebhook, None, now, events);
        }
        if !self.started {
            return self.before_first_step(params, answers, now, events);
        }
        match params.analysis.judge {
            JudgeKind::Threshold => self.judge_window(params, observed, answers, now, events),
            JudgeKind::Sequential => self.judge_evidence(params, observed, answers, now, events),
        }
    }

    /// Before the first step: `pre-rollout` must pass once (a "no" is a failed check), then
    /// the canary gets its first step. No window is judged: the canary had no traffic.
    fn before_first_step(
        &mut self,
        params: &Params,
        answers: &GateAnswers,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if !self.pre_rollout_passed {
            if params.hooks.has(WebhookKind::PreRollout) && answers.pre_rollout != Some(true) {
                let failures = vec![Failure::PreRolloutWebhook];
                return self.fail_check(params, failures, None, now, events);
            }
            self.pre_rollout_passed = true;
        }
        self.enter_first_step(params, now, events)
    }

    /// Judge the window: rollout webhook, enough traffic, every metric.
    fn judge_window(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        answers: &GateAnswers,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        let window = observed.window;
        let hook_failed = params.hooks.has(WebhookKind::Rollout) && answers.rollout != Some(true);
        let hook_failure = hook_failed.then_some(Failure::RolloutWebhook);
        let ThresholdJudgement {
            failures,
            outcome,
            unknown,
            enough,
        } = self.judge_threshold(params, observed, now, hook_failure, |_| true);

        match outcome {
            CheckOutcome::Inconclusive if enough => {
                self.inconclusive(params, &unknown.join("; "), now, events)
            }
            CheckOutcome::Inconclusive => {
                let why = format!(
                    "not enough traffic: {} canary requests < {}",
                    window.canary.requests,
                    params.required_requests()
                );
                self.inconclusive(params, &why, now, events)
            }
            CheckOutcome::Fail => {
                self.inconclusive_checks = 0;
                self.fail_check(params, failures, observed.cause, now, events)
            }
            CheckOutcome::Pass => {
                self.inconclusive_checks = 0;
                self.passed(params, now, events)
            }
        }
    }

    /// Sequential judge: roll back as soon as a test accepts "bad", advance when every test
    /// accepted "good", else hold and keep gathering (`docs/rollouts.md#the-sequential-judge`).
    fn judge_evidence(
        &mut self,
        params: &Params,
        observed: Observed<'_>,
        answers: &GateAnswers,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        let judgement = sequential::judge(params, observed.evidence);
        // A count-form external metric is one more test of the evidence; the others are gates:
        // a value outside its bounds is a failed check, no value keeps the step from passing
        // (docs/rollouts.md#external-metrics).
        let (external, external_failures, unknown) = judge_all(
            &params.analysis.external,
            observed.external,
            CountForm::Evidence,
        );
        let hook_failed = params.hooks.has(WebhookKind::Rollout) && answers.rollout != Some(true);
        let passes = judgement.all_pass() && unknown.is_empty();
        let outcome = CheckOutcome::of(
            judgement.rollback().is_some() || hook_failed || !external_failures.is_empty(),
            passes,
        );
        self.record_evidence(outcome, observed.window, &judgement, now);
        self.add_external_reports(external);
        if let Some(test) = judgement.rollback() {
            return self.evidence_rollback(test, observed.cause, now, events);
        }
        if hook_failed || !external_failures.is_empty() {
            let mut failures = external_failures;
            if hook_failed {
                failures.insert(0, Failure::RolloutWebhook);
            }
            return self.fail_check(params, failures, observed.cause, now, events);
        }
        if passes {
            return self.passed(params, now, events);
        }
        if judgement.all_pass() {
            let detail = format!("external metrics inconclusive: {}", unknown.join("; "));
            events.push(Event::info(
                &self.route,
                now,
                format!("Halt {} advancement {detail}", self.route),
            ));
            self.reason = Some(detail);
            return Decision::Hold(Hold::ExternalInconclusive);
        }
        self.undecided(params, &judgement, now, events)
    }

    /// The fast path, run every 250 ms between checks (the runner's `WATCH_EVERY`): only the
    /// rollback side of the sequential tests, which stay valid however often they are looked
    /// at; while Baking only the absolute ones, and a rollback is the bake's. `None` when
    /// nothing is to be done (another judge, another phase, or no test accepted "bad").
    pub fn watch(
        &mut self,
        params: &Params,
        window: &Window,
        evidence: &StepEvidence,
        now: SystemTime,
    ) -> Option<(Decision, Vec<Event>)> {
        let baking = match self.phase {
            Phase::Progressing | Phase::WaitingPromotion if self.started => false,
            Phase::Baking => true,
            Phase::Idle
            | Phase::Static
            | Phase::Waiting
            | Phase::Progressing
            | Phase::WaitingPromotion
            | Phase::Paused
            | Phase::Succeeded
            | Phase::Failed => return None,
        };
        if params.analysis.judge != JudgeKind::Sequential {
            return None;
        }
        let judgement = if baking {
            sequential::judge_absolute(params, evidence)
        } else {
            sequential::judge(params, evidence)
        };
        let test = judgement.rollback()?;
        self.pending = None;
        self.record_evidence(CheckOutcome::Fail, window, &judgement, now);
        let mut events = Vec::new();
        let cause = connect_cause(window);
        let decision = if baking {
            self.bake_failed(&describe(test), cause.as_deref(), now, &mut events)
        } else {
            self.evidence_rollback(test, cause.as_deref(), now, &mut events)
        };
        Some((decision, events))
    }

    fn record_evidence(
        &mut self,
        outcome: CheckOutcome,
        window: &Window,
        judgement: &SequentialJudgement,
        now: SystemTime,
    ) {
        self.last_check = Some(CheckReport {
            at: rfc3339(now),
            outcome,
            window_seconds: window.duration.as_secs(),
            primary: VersionReport::of(&window.primary),
            canary: VersionReport::of(&window.canary),
            metrics: judgement.tests.iter().map(report).collect(),
        });
    }

    fn evidence_rollback(
        &mut self,
        test: &TestResult,
        cause: Option<&str>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        let detail = with_cause(describe(test), cause);
        events.push(Event::warning(
            &self.route,
            now,
            format!("Halt {} advancement: {detail}", self.route),
        ));
        // The check that accepted "bad" is a failed check, so `failed_checks` says why a
        // sequential rollout failed as it does for the threshold judge.
        self.failed_checks += 1;
        let reason = RollbackReason::Evidence {
            test: test.name.clone(),
        };
        let decision = self.roll_back(reason.clone(), cause, now, events);
        self.reason = Some(format!("{reason}: {detail}"));
        decision
    }

    /// No decision yet: hold and say so once per step ("Collecting evidence": a healthy canary
    /// is not failing, so no "Halt"); after `max_step_duration` warn and follow
    /// `on_inconclusive`.
    fn undecided(
        &mut self,
        params: &Params,
        judgement: &SequentialJudgement,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.step_checks = self.step_checks.saturating_add(1);
        let limit = params.max_step_checks();
        let detail = match judgement.closest() {
            Some(test) => describe(test),
            None => "no metric to judge".to_owned(),
        };
        let collecting = format!(
            "Collecting evidence for {} at weight {}: {detail}",
            self.route, self.weight
        );
        if self.step_checks == 1 {
            events.push(Event::info(&self.route, now, collecting.clone()));
        }
        self.reason = Some(collecting);
        if self.step_checks == limit {
            let on = params.analysis.sequential.on_inconclusive;
            events.push(Event::warning(
                &self.route,
                now,
                format!(
                    "No decision for {} after {} checks at weight {}: {detail}; {}",
                    self.route,
                    self.step_checks,
                    self.weight,
                    match on {
                        OnInconclusive::Hold => "holding (on_inconclusive = hold)",
                        OnInconclusive::Rollback => "rolling back (on_inconclusive = rollback)",
                    }
                ),
            ));
            if on == OnInconclusive::Rollback {
                let checks = self.step_checks;
                return self.roll_back(RollbackReason::Undecided { checks }, None, now, events);
            }
        }
        Decision::Undecided {
            checks: self.step_checks,
            limit,
        }
    }

    /// Too few canary requests: hold, and fail after `inconclusive_limit` in a row.
    fn inconclusive(
        &mut self,
        params: &Params,
        why: &str,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.inconclusive_checks += 1;
        let limit = params.analysis.inconclusive_limit;
        if self.inconclusive_checks >= limit {
            let reason = RollbackReason::NotEnoughTraffic { limit };
            return self.roll_back(reason, None, now, events);
        }
        events.push(Event::warning(
            &self.route,
            now,
            format!(
                "Halt {} advancement {why} (inconclusive check {}/{limit})",
                self.route, self.inconclusive_checks
            ),
        ));
        Decision::Inconclusive {
            checks: self.inconclusive_checks,
            limit,
        }
    }

    /// A failed check: count it, roll back at `threshold`.
    fn fail_check(
        &mut self,
        params: &Params,
        failures: Vec<Failure>,
        cause: Option<&str>,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        self.failed_checks += 1;
        for failure in &failures {
            events.push(Event::warning(
                &self.route,
                now,
                format!(
                    "Halt {} advancement {}",
                    self.route,
                    halt_detail(failure, cause)
                ),
            ));
        }
        if self.failed_checks >= params.analysis.threshold {
            let threshold = params.analysis.threshold;
            let reason = RollbackReason::FailedChecks { threshold };
            return self.roll_back(reason, cause, now, events);
        }
        Decision::Halt(failures)
    }

    /// A passed check: next step, next iteration, or promotion.
    fn passed(&mut self, params: &Params, now: SystemTime, events: &mut Vec<Event>) -> Decision {
        if self.phase == Phase::WaitingPromotion {
            return self.ask_promotion(params, now, events);
        }
        if let Some(of) = params.iterations() {
            self.iterations += 1;
            if self.iterations >= of {
                return self.ask_promotion(params, now, events);
            }
            events.push(Event::info(
                &self.route,
                now,
                format!(
                    "Advance {} canary iteration {}/{of}",
                    self.route, self.iterations
                ),
            ));
            self.step_checks = 0;
            return Decision::Iteration {
                passed: self.iterations,
                of,
            };
        }
        match params.next_weight(self.weight) {
            Some(weight) => self.increase_to(params, weight, now, events),
            None => self.ask_promotion(params, now, events),
        }
    }

    /// The last step passed: promote, or wait for `confirm-promotion`.
    fn ask_promotion(
        &mut self,
        params: &Params,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) -> Decision {
        if !params.hooks.has(WebhookKind::ConfirmPromotion) {
            return self.promote_now(now, events);
        }
        self.phase = Phase::WaitingPromotion;
        self.pending = Some(Confirm::Promotion);
        Decision::Confirm(Confirm::Promotion)
    }
}
