//! What `canaryd simulate` prints: outcome shares, time to decision and exposure over K runs.

use serde::Serialize;

use super::run::{RunOutcome, RunResult};

/// The summary of many simulated rollouts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Rollouts simulated.
    pub runs: u32,
    /// How many were promoted.
    pub promoted: u32,
    /// How many were rolled back.
    pub rolled_back: u32,
    /// How many were undecided at the horizon.
    pub undecided: u32,
    /// `promoted / runs`.
    pub p_promote: f64,
    /// `rolled_back / runs`.
    pub p_rollback: f64,
    /// `undecided / runs`.
    pub p_undecided: f64,
    /// Median virtual seconds to promotion or rollback (decided runs only).
    pub median_decision_seconds: Option<f64>,
    /// 95th percentile of the same.
    pub p95_decision_seconds: Option<f64>,
    /// Median virtual seconds to promotion (promoted runs only).
    pub median_promote_seconds: Option<f64>,
    /// Median virtual seconds to rollback (rolled back runs only).
    pub median_rollback_seconds: Option<f64>,
    /// Median canary requests served per rollout (its exposure).
    pub median_canary_requests: u64,
    /// Mean canary requests served per rollout.
    pub mean_canary_requests: f64,
}

impl Summary {
    /// Summarise `results`.
    pub fn of(results: &[RunResult]) -> Summary {
        let count = |o: RunOutcome| results.iter().filter(|r| r.outcome == o).count() as u32;
        let runs = results.len() as u32;
        let share = |n: u32| {
            if runs == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(runs)
            }
        };
        let seconds = |keep: &dyn Fn(RunOutcome) -> bool| {
            let mut s: Vec<f64> = results
                .iter()
                .filter(|r| keep(r.outcome))
                .map(|r| r.seconds)
                .collect();
            s.sort_by(f64::total_cmp);
            s
        };
        let decided = seconds(&|o| o != RunOutcome::Undecided);
        let mut exposure: Vec<u64> = results.iter().map(|r| r.canary_requests).collect();
        exposure.sort_unstable();
        let (promoted, rolled_back, undecided) = (
            count(RunOutcome::Promoted),
            count(RunOutcome::RolledBack),
            count(RunOutcome::Undecided),
        );
        Summary {
            runs,
            promoted,
            rolled_back,
            undecided,
            p_promote: share(promoted),
            p_rollback: share(rolled_back),
            p_undecided: share(undecided),
            median_decision_seconds: quantile(&decided, 0.5),
            p95_decision_seconds: quantile(&decided, 0.95),
            median_promote_seconds: quantile(&seconds(&|o| o == RunOutcome::Promoted), 0.5),
            median_rollback_seconds: quantile(&seconds(&|o| o == RunOutcome::RolledBack), 0.5),
            median_canary_requests: exposure.get(exposure.len() / 2).copied().unwrap_or(0),
            mean_canary_requests: if exposure.is_empty() {
                0.0
            } else {
                exposure.iter().sum::<u64>() as f64 / exposure.len() as f64
            },
        }
    }
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
