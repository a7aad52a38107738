//! The route JSON of `GET /api/v1/routes/{name}` (docs/operations.md#admin-api), as far as the rollout
//! knows it.

use serde::Serialize;

use crate::analysis::machine::report::CheckReport;
use crate::analysis::machine::rollout::Rollout;

/// `{name, phase, weight, revision, primary_revision, failed_checks, inconclusive_checks,
/// iterations, last_check}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStatus {
    /// Route name.
    pub name: String,
    /// Phase name, e.g. `"Progressing"`.
    pub phase: &'static str,
    /// Canary weight the data plane applies.
    pub weight: u8,
    /// Canary revision.
    pub revision: String,
    /// Primary revision.
    pub primary_revision: String,
    /// Failed checks of this rollout.
    pub failed_checks: u32,
    /// Inconclusive checks in a row.
    pub inconclusive_checks: u32,
    /// Passed checks in iterations mode.
    pub iterations: u32,
    /// The last check that judged a window, or `null`.
    pub last_check: Option<CheckReport>,
    /// Why the rollout is where it is, one line: what the sequential judge is still collecting,
    /// or why it was promoted or rolled back. Omitted when there is nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Rollout {
    /// This rollout as the admin API shows it.
    pub fn status(&self) -> RolloutStatus {
        RolloutStatus {
            name: self.route().to_owned(),
            phase: self.phase().as_str(),
            weight: self.weight(),
            revision: self.revision().to_owned(),
            primary_revision: self.primary_revision().to_owned(),
            failed_checks: self.failed_checks(),
            inconclusive_checks: self.inconclusive_checks(),
            iterations: self.iterations(),
            last_check: self.last_check().cloned(),
            reason: self.reason().map(str::to_owned),
        }
    }
}
