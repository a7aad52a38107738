//! Which webhooks the runner asks before a check (docs/rollouts.md#webhooks).
//!
//! Up-front gates only: `confirm-traffic-increase` and `confirm-promotion` are asked *after*
//! a check passed, when [`crate::analysis::Decision::Confirm`] says so, because they approve a specific
//! step and must not be bothered when the check fails. `post-rollout` and `event` never gate.

use crate::config::WebhookKind;
use crate::routing::Phase;

use crate::analysis::machine::params::Params;
use crate::analysis::machine::rollout::Rollout;

// === impl Rollout: gates ===

impl Rollout {
    /// The webhooks to call, in order, before the next [`Rollout::check`]; only kinds the
    /// route configures are listed.
    ///
    /// | phase | gates |
    /// |---|---|
    /// | Waiting | `confirm-rollout`, then `pre-rollout` (skip it if the first said no) |
    /// | Progressing, before the first step | `rollback`, `pre-rollout` until it passed once |
    /// | Progressing, WaitingPromotion | `rollback`, `rollout` |
    /// | Idle, Static, Paused, Succeeded, Failed | none |
    pub fn gates(&self, params: &Params) -> Vec<WebhookKind> {
        let wanted: &[WebhookKind] = match self.phase {
            Phase::Waiting if self.pre_rollout_passed => &[WebhookKind::ConfirmRollout],
            Phase::Waiting => &[WebhookKind::ConfirmRollout, WebhookKind::PreRollout],
            Phase::Progressing | Phase::WaitingPromotion if self.started => {
                &[WebhookKind::Rollback, WebhookKind::Rollout]
            }
            Phase::Progressing | Phase::WaitingPromotion if self.pre_rollout_passed => {
                &[WebhookKind::Rollback]
            }
            Phase::Progressing | Phase::WaitingPromotion => {
                &[WebhookKind::Rollback, WebhookKind::PreRollout]
            }
            Phase::Idle
            | Phase::Static
            | Phase::Paused
            | Phase::Baking
            | Phase::Succeeded
            | Phase::Failed => &[],
        };
        wanted
            .iter()
            .copied()
            .filter(|kind| params.hooks.has(*kind))
            .collect()
    }
}
