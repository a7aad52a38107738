//! What one check decided, for the runner to act on (publish the weight, reset the window,
//! call a confirm webhook, call post-rollout).

use std::fmt;

use crate::config::{EvidenceScope, WebhookKind};

use crate::analysis::judge::{Failure, TestName};

/// The outcome of [`crate::analysis::Rollout::check`] or [`crate::analysis::Rollout::confirm`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing is analysed in this phase (Idle, Paused, Succeeded, Failed).
    Skip,
    /// A gate held the rollout where it is, without counting a failed check.
    Hold(Hold),
    /// Too few canary requests: weight held, the window keeps growing (do not reset it).
    Inconclusive {
        /// Inconclusive checks in a row so far.
        checks: u32,
        /// Rollback happens when `checks` reaches this.
        limit: u32,
    },
    /// Sequential judge: not enough evidence yet; weight held, evidence keeps accumulating.
    Undecided {
        /// Checks at this step without a decision so far.
        checks: u32,
        /// Checks in `max_step_duration`: at this many a warning, and `on_inconclusive`.
        limit: u32,
    },
    /// The check failed (`failed_checks` was incremented); weight held.
    Halt(Vec<Failure>),
    /// The check passed and a confirm webhook must be asked before going on: call it, then
    /// [`crate::analysis::Rollout::confirm`] with its answer.
    Confirm(Confirm),
    /// The canary's weight is now this.
    Advance(u8),
    /// Iterations mode (A/B, blue/green): the start gates passed and the canary now gets its
    /// match or mirrored traffic (weight stays 0).
    Started,
    /// Iterations mode: one more passed check.
    Iteration {
        /// Passed checks so far.
        passed: u32,
        /// Passed checks needed for promotion.
        of: u32,
    },
    /// Promoted into the bake: phase Baking, weight 100, still judged (docs/rollouts.md#bake).
    Bake,
    /// Promoted: phase Succeeded, weight 100. Call the `post-rollout` webhooks.
    Promote,
    /// Rolled back: phase Failed, weight 0. Call the `post-rollout` webhooks.
    Rollback(RollbackReason),
}

impl Decision {
    /// Whether the check concluded, so the runner starts a new window. Only an inconclusive
    /// check keeps the window growing (docs/rollouts.md#checks: "requests since the last concluded
    /// check"); everything else, including phases that judge nothing, starts afresh so that
    /// stale traffic never leaks into a later verdict.
    pub fn concludes_window(&self) -> bool {
        !matches!(self, Decision::Inconclusive { .. })
    }

    /// Whether the sequential judge's evidence starts afresh after this decision: at a new
    /// step when evidence is kept per step, and whenever the canary's traffic starts or ends
    /// (not into a bake: it goes on judging the evidence the last step ended with).
    pub fn restarts_evidence(&self, scope: EvidenceScope) -> bool {
        match self {
            Decision::Started | Decision::Promote | Decision::Rollback(_) => true,
            Decision::Advance(_) | Decision::Iteration { .. } => scope == EvidenceScope::Step,
            Decision::Bake
            | Decision::Skip
            | Decision::Hold(_)
            | Decision::Inconclusive { .. }
            | Decision::Undecided { .. }
            | Decision::Halt(_)
            | Decision::Confirm(_) => false,
        }
    }

    /// Whether the rollout finished, so the runner calls the `post-rollout` webhooks.
    pub fn finished(&self) -> bool {
        matches!(self, Decision::Promote | Decision::Rollback(_))
    }
}

/// Why a gate held the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `confirm-rollout` said no: stay Waiting.
    RolloutNotConfirmed,
    /// `confirm-traffic-increase` said no: weight held this interval.
    TrafficIncreaseRefused {
        /// The weight that was not granted.
        to: u8,
    },
    /// `confirm-promotion` said no: stay WaitingPromotion.
    PromotionNotConfirmed,
    /// Baking and nothing failed: the bake goes on.
    Baking,
    /// Sequential judge: every test passed but an external metric had no value; the step
    /// waits for one (docs/rollouts.md#external-metrics).
    ExternalInconclusive,
}

/// A confirm webhook the runner must ask after a passing check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Ask `confirm-traffic-increase` before raising the weight to this.
    TrafficIncrease(u8),
    /// Ask `confirm-promotion` (the rollout is now WaitingPromotion).
    Promotion,
}

impl Confirm {
    /// The webhook kind to call.
    pub fn webhook(self) -> WebhookKind {
        match self {
            Confirm::TrafficIncrease(_) => WebhookKind::ConfirmTrafficIncrease,
            Confirm::Promotion => WebhookKind::ConfirmPromotion,
        }
    }
}

/// Why a rollout was rolled back. `Display` follows "Rolling back shop …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackReason {
    /// `failed_checks` reached `threshold`.
    FailedChecks {
        /// The threshold that was reached.
        threshold: u32,
    },
    /// `inconclusive_limit` inconclusive checks in a row: no data is never success.
    NotEnoughTraffic {
        /// The limit that was reached.
        limit: u32,
    },
    /// The sequential judge accepted "bad" for this test.
    Evidence {
        /// The test that did.
        test: TestName,
    },
    /// The sequential judge reached no decision within `max_step_duration` and
    /// `on_inconclusive = "rollback"`.
    Undecided {
        /// Checks at the step without a decision.
        checks: u32,
    },
    /// A `rollback` webhook said yes.
    RollbackWebhook,
    /// An operator ran `canaryd abort`.
    Aborted,
    /// A check failed while Baking: back to the primary at once.
    BakeFailed,
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackReason::FailedChecks { threshold } => {
                write!(f, "failed checks threshold reached {threshold}")
            }
            RollbackReason::NotEnoughTraffic { limit } => write!(
                f,
                "not enough traffic to judge ({limit} inconclusive checks in a row)"
            ),
            RollbackReason::Evidence { test } => {
                write!(
                    f,
                    "{} is worse than allowed (sequential test)",
                    test.as_str()
                )
            }
            RollbackReason::Undecided { checks } => write!(
                f,
                "no decision after {checks} checks at one step (on_inconclusive = rollback)"
            ),
            RollbackReason::RollbackWebhook => f.write_str("manual webhook invoked"),
            RollbackReason::Aborted => f.write_str("aborted by operator"),
            RollbackReason::BakeFailed => f.write_str("a check failed during the bake"),
        }
    }
}

/// Answers of the gates [`crate::analysis::Rollout::gates`] listed; `None` = not asked.
///
/// A gate that is configured but unanswered counts as "no": an unanswered `pre-rollout` or
/// `rollout` is a failed check, an unanswered confirm keeps waiting, and an unanswered
/// `rollback` does not abort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateAnswers {
    /// `confirm-rollout` (asked while Waiting).
    pub confirm_rollout: Option<bool>,
    /// `pre-rollout` (asked before the first step until it passes).
    pub pre_rollout: Option<bool>,
    /// `rollout` (asked every check).
    pub rollout: Option<bool>,
    /// `rollback` (asked every check; yes aborts).
    pub rollback: Option<bool>,
}

impl GateAnswers {
    /// Record the answer of a gate; kinds that are not up-front gates are ignored.
    pub fn set(&mut self, kind: WebhookKind, yes: bool) {
        let slot = match kind {
            WebhookKind::ConfirmRollout => &mut self.confirm_rollout,
            WebhookKind::PreRollout => &mut self.pre_rollout,
            WebhookKind::Rollout => &mut self.rollout,
            WebhookKind::Rollback => &mut self.rollback,
            WebhookKind::ConfirmTrafficIncrease
            | WebhookKind::ConfirmPromotion
            | WebhookKind::PostRollout
            | WebhookKind::Event => return,
        };
        *slot = Some(yes);
    }
}
