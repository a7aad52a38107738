//! How long `canaryd simulate` lets a rollout run before calling it undecided, derived from the
//! schedule and the traffic, and what a step needs to pass — the figures its "why undecided"
//! hint quotes (docs/rollouts.md#checking-a-config-with-canaryd-simulate).

use std::time::Duration;

use super::Scenario;
use crate::analysis::Params;
use crate::config::{EvidenceScope, JudgeKind, MetricCheck, Steps};

/// The longest default horizon: beyond a week of virtual time a rollout is undecided for any
/// practical purpose, and the simulation's cost grows with the horizon.
const MAX_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many times the average time a canary failing at exactly the "good" rate needs the
/// default horizon allows: the time to a decision has a long tail (measured on the seed
/// schedule at 5 req/s: p95 2.5x the median).
const SLACK: u32 = 3;

/// A horizon and where it comes from, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    /// Virtual time after which a run counts as undecided.
    pub duration: Duration,
    /// Why this long, in a few words.
    pub basis: String,
}

impl Horizon {
    /// The default for `params` at `rps`: the longer of every step's `max_step_duration` (the
    /// threshold judge: every check it may need) and three times what a canary failing at the
    /// "good" rate needs on average at this traffic, plus one interval, plus `bake`; at most a
    /// week.
    pub fn default_for(params: &Params, rps: f64) -> Horizon {
        let schedule = Scenario::default_horizon(params);
        let (duration, basis) = match (params.analysis.judge, pass_time(params, rps)) {
            (JudgeKind::Threshold, _) => (
                threshold_horizon(params),
                "every step's checks, failed and inconclusive ones included".to_owned(),
            ),
            (JudgeKind::Sequential, Some(needed)) if needed.saturating_mul(SLACK) > schedule => (
                needed
                    .saturating_mul(SLACK)
                    .saturating_add(params.interval()),
                format!(
                    "{SLACK}x the {:.0} s a canary failing at the \"good\" rate needs on average at this traffic",
                    needed.as_secs_f64()
                ),
            ),
            (JudgeKind::Sequential, _) => (schedule, "every step's max_step_duration".to_owned()),
        };
        // A bake is judged after promotion: the run is decided only when it ends.
        let (duration, basis) = match params.analysis.bake {
            Some(bake) => (
                duration.saturating_add(bake),
                format!("{basis}, plus the {:.0} s bake", bake.as_secs_f64()),
            ),
            None => (duration, basis),
        };
        if duration > MAX_HORIZON {
            return Horizon {
                duration: MAX_HORIZON,
                basis: format!("{basis}, capped at a week"),
            };
        }
        Horizon { duration, basis }
    }

    /// A horizon the user chose.
    pub fn given(duration: Duration) -> Horizon {
        Horizon {
            duration,
            basis: "--horizon".to_owned(),
        }
    }
}

/// The threshold judge: one passing check per step, plus the failed checks it tolerates and
/// the inconclusive checks in a row it waits for, plus one interval.
fn threshold_horizon(params: &Params) -> Duration {
    let checks = steps(params)
        .saturating_add(params.analysis.threshold)
        .saturating_add(params.analysis.inconclusive_limit)
        .saturating_add(1);
    params.interval().saturating_mul(checks)
}

fn steps(params: &Params) -> u32 {
    match &params.analysis.steps {
        Steps::Weights(w) => u32::try_from(w.len()).unwrap_or(u32::MAX),
        Steps::Iterations(n) => *n,
    }
}

/// Canary requests without a single failure (or slow request) after which the sequential
/// judge accepts "good" for its most demanding absolute test: `ln β / ln((1 − bad)/(1 − good))`
/// (297 for the seed's 0.5%/1.5%). `None` without a metric it can count.
pub fn clean_requests_to_pass(params: &Params) -> Option<u64> {
    requests_to_pass(params, |_good, success, _event| success)
}

/// Canary requests after which the sequential judge accepts "good", on average, for a canary
/// whose events come at exactly the "good" rate (Wald's approximation: the pass bound over the
/// LLR's mean step `g·ln(b/g) + (1 − g)·ln((1 − b)/(1 − g))`; 657 for the seed's 0.5%/1.5%).
fn requests_to_pass_at_good_rate(params: &Params) -> Option<u64> {
    requests_to_pass(params, |good, success_step, event_step| {
        good * event_step + (1.0 - good) * success_step
    })
}

/// `ln β` over the LLR step `step(good rate, LLR of a success, LLR of an event)` returns, for
/// the absolute test that needs the most requests.
fn requests_to_pass(params: &Params, step: impl Fn(f64, f64, f64) -> f64) -> Option<u64> {
    let sequential = &params.analysis.sequential;
    params
        .analysis
        .metrics
        .iter()
        .map(|metric| match metric {
            MetricCheck::SuccessRate { threshold, .. } => (100.0 - threshold) / 100.0,
            MetricCheck::Duration { quantile, .. } => 1.0 - quantile,
        })
        .filter_map(|allowed| {
            let good = sequential.good_multiple * allowed;
            let bad = (sequential.bad_multiple * allowed).min(0.999_999);
            let success = ((1.0 - bad) / (1.0 - good)).ln();
            let event = (bad / good).ln();
            let needed = sequential.max_false_promotion.ln() / step(good, success, event);
            (needed.is_finite() && needed > 0.0).then(|| needed.ceil() as u64)
        })
        .max()
}

/// Virtual time a canary failing at the "good" rate needs on average to be promoted at `rps`:
/// each step's canary traffic must reach [`requests_to_pass_at_good_rate`] (once with evidence
/// carried over the rollout, at every step with `evidence = "step"`), rounded up to checks,
/// and every later step is held one interval at least.
fn pass_time(params: &Params, rps: f64) -> Option<Duration> {
    if rps <= 0.0 {
        // No traffic never decides; the schedule's bound is horizon enough to show it.
        return None;
    }
    let needed = requests_to_pass_at_good_rate(params)? as f64;
    let interval = params.interval().as_secs_f64().max(1e-3);
    let checks_for = |share: f64| {
        if rps * share <= 0.0 {
            return f64::INFINITY;
        }
        (needed / (rps * share) / interval).ceil().max(1.0)
    };
    let checks = match (&params.analysis.steps, params.analysis.sequential.evidence) {
        (Steps::Weights(w), EvidenceScope::Rollout) => {
            let first = f64::from(w.first().copied().unwrap_or(100)) / 100.0;
            checks_for(first) + w.len().saturating_sub(1) as f64
        }
        (Steps::Weights(w), EvidenceScope::Step) => w
            .iter()
            .map(|weight| checks_for(f64::from(*weight) / 100.0))
            .sum(),
        // A/B and blue/green: the canary gets its traffic from match rules the simulation
        // does not model.
        (Steps::Iterations(_), _) => return None,
    };
    let seconds = checks * interval;
    (seconds.is_finite() && seconds < MAX_HORIZON.as_secs_f64())
        .then(|| Duration::from_secs_f64(seconds))
        .or(Some(MAX_HORIZON))
}
