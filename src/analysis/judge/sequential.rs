//! The `sequential` judge (`docs/rollouts.md#the-sequential-judge`): Wald's sequential
//! probability ratio test per metric on the cumulative [`StepEvidence`], with thresholds that
//! stay valid however often they are looked at.
//!
//! For counts, the log-likelihood ratio of "bad" (event probability `p1`) against "good"
//! (`p0`) after `k` events in `n` trials is `k·ln(p1/p0) + (n−k)·ln((1−p1)/(1−p0))`. Under
//! "good" the likelihood ratio is a non-negative martingale of mean 1, so by Ville's inequality
//! it ever reaches `1/α` with probability at most `α`, at whatever times it is inspected; the
//! same holds for its reciprocal under "bad". Hence: roll back when `LLR ≥ ln(1/α)`, accept
//! "good" when `LLR ≤ ln(β)`, and look as often as wanted (the runner looks every 250 ms).

use crate::analysis::judge::evidence::{LatencyTest, StepEvidence};
use crate::analysis::machine::params::Params;
use crate::config::{EvidenceScope, ExternalMetric, MetricCheck, SequentialConfig};

/// Which test of which metric (the `metric` label and the `name` in `last_check.metrics[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TestName {
    /// The canary's failure rate against `100 − threshold`.
    SuccessRate,
    /// The canary's share of failures given its share of traffic (`max_drop`).
    SuccessRateDrop,
    /// The canary's share slower than `threshold` against `1 − quantile`.
    Duration,
    /// The canary's share of slow requests given its share of traffic (`max_ratio`).
    DurationRatio,
    /// A count-form external metric's failed events among its events, against
    /// `100 − threshold` (`docs/rollouts.md#external-metrics`); the metric's `name`.
    External(String),
}

impl TestName {
    /// `request-success-rate`, `request-success-rate/max_drop`, `request-duration`,
    /// `request-duration/max_ratio`, or an external metric's `name`.
    pub fn as_str(&self) -> &str {
        match self {
            TestName::SuccessRate => "request-success-rate",
            TestName::SuccessRateDrop => "request-success-rate/max_drop",
            TestName::Duration => "request-duration",
            TestName::DurationRatio => "request-duration/max_ratio",
            TestName::External(name) => name,
        }
    }

    /// Whether the test compares the canary with the primary (`max_drop`, `max_ratio`).
    pub fn comparative(&self) -> bool {
        matches!(self, TestName::SuccessRateDrop | TestName::DurationRatio)
    }
}

/// Where a test stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted "good": `LLR ≤ pass bound`.
    Pass,
    /// Accepted "bad": `LLR ≥ rollback bound`.
    Rollback,
    /// Not enough evidence either way yet.
    Undecided,
}

impl Verdict {
    /// `"pass"`, `"rollback"` or `"undecided"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Rollback => "rollback",
            Verdict::Undecided => "undecided",
        }
    }
}

/// The two decision bounds on the log-likelihood ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// `ln(1/α')`: at or above, roll back.
    pub rollback: f64,
    /// `ln(β)`: at or below, accept "good".
    pub pass: f64,
}

impl Bounds {
    /// The bounds for `tests` tests over `segments` independent evidence segments (steps when
    /// evidence restarts per step, else 1).
    ///
    /// A healthy canary is rolled back if any test of any segment crosses the rollback bound,
    /// so `max_false_rollback` is split evenly over all of them (union bound). A bad canary is
    /// promoted only if its bad metric is accepted "good" in every segment, and each such
    /// acceptance alone has probability at most `β`, so `max_false_promotion` needs no split.
    pub fn new(config: &SequentialConfig, tests: usize, segments: usize) -> Bounds {
        let looks = (tests.max(1) * segments.max(1)) as f64;
        Bounds {
            rollback: (looks / config.max_false_rollback).ln(),
            pass: config.max_false_promotion.ln(),
        }
    }

    /// The bounds of a route's current configuration with `tests` tests.
    pub fn of(params: &Params, tests: usize) -> Bounds {
        let segments = match params.analysis.sequential.evidence {
            EvidenceScope::Rollout => 1,
            EvidenceScope::Step => match &params.analysis.steps {
                crate::config::Steps::Weights(w) => w.len(),
                crate::config::Steps::Iterations(n) => *n as usize,
            },
        };
        Bounds::new(&params.analysis.sequential, tests, segments)
    }
}

/// Wald's log-likelihood ratio of `events` in `trials` Bernoulli trials, "bad" probability
/// `bad` against "good" probability `good` (both in (0, 1)).
pub fn binomial_llr(events: u64, trials: u64, good: f64, bad: f64) -> f64 {
    let k = events.min(trials) as f64;
    let rest = trials.saturating_sub(events) as f64;
    k * (bad / good).ln() + rest * ((1.0 - bad) / (1.0 - good)).ln()
}

/// The probability that an event came from the canary when the canary's event rate is
/// `ratio` times the primary's and they served `canary` and `primary` requests.
pub fn canary_share(canary: u64, primary: u64, ratio: f64) -> f64 {
    let c = canary as f64 * ratio;
    c / (c + primary as f64)
}

/// One test's evidence and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// Which test.
    pub name: TestName,
    /// Canary requests the test counted.
    pub requests: u64,
    /// Canary events (failures, or requests slower than the test's latency) among them.
    pub events: u64,
    /// The primary's event rate, for the comparative tests.
    pub primary_rate: Option<f64>,
    /// "Good": the canary's event rate it is judged against (at most this is fine).
    pub good: f64,
    /// "Bad": the canary's event rate that must be caught.
    pub bad: f64,
    /// The latency above which a request counted as slow (duration tests), microseconds.
    pub slower_than_micros: Option<u64>,
    /// The log-likelihood ratio, bad over good.
    pub llr: f64,
    /// The decision bounds.
    pub bounds: Bounds,
}

impl TestResult {
    /// The canary's observed event rate; `None` without requests.
    pub fn observed(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.events as f64 / self.requests as f64)
    }

    /// Where the test stands.
    pub fn verdict(&self) -> Verdict {
        if self.llr >= self.bounds.rollback {
            Verdict::Rollback
        } else if self.llr <= self.bounds.pass {
            Verdict::Pass
        } else {
            Verdict::Undecided
        }
    }

    /// An always-valid p-value of "good": `min(1, 1/LR)`. By Ville's inequality it is below
    /// `x` with probability at most `x` for a good canary, at any time it is read.
    pub fn p_value(&self) -> f64 {
        (-self.llr).exp().min(1.0)
    }

    /// Share of the evidence needed for the decision the LLR leans to: `(toward_rollback,
    /// fraction in 0..=1)`.
    pub fn progress(&self) -> (bool, f64) {
        if self.llr >= 0.0 {
            (true, (self.llr / self.bounds.rollback).clamp(0.0, 1.0))
        } else {
            (false, (self.llr / self.bounds.pass).clamp(0.0, 1.0))
        }
    }

    /// Signed progress: +1 at the rollback bound, −1 at the pass bound (status page, gauge).
    pub fn evidence(&self) -> f64 {
        match self.progress() {
            (true, f) => f,
            (false, f) => -f,
        }
    }
}

/// Every test of a route's metrics on one step's evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialJudgement {
    /// In config order: each metric's absolute test, then its comparative one if configured.
    pub tests: Vec<TestResult>,
}

impl SequentialJudgement {
    /// The first test accepted "bad", if any.
    pub fn rollback(&self) -> Option<&TestResult> {
        self.tests.iter().find(|t| t.verdict() == Verdict::Rollback)
    }

    /// Whether every test accepted "good" (false without tests: no evidence is no decision).
    pub fn all_pass(&self) -> bool {
        !self.tests.is_empty() && self.tests.iter().all(|t| t.verdict() == Verdict::Pass)
    }

    /// The undecided test closest to a decision of its own, for the "Collecting evidence" event.
    pub fn closest(&self) -> Option<&TestResult> {
        self.tests
            .iter()
            .filter(|t| t.verdict() != Verdict::Pass)
            .max_by(|a, b| a.evidence().total_cmp(&b.evidence()))
    }
}

/// The count-form external metrics that are sequential tests: those that decide (not
/// `dry_run`), with their `threshold`.
pub fn counted_external(external: &[ExternalMetric]) -> impl Iterator<Item = (&str, f64)> {
    external
        .iter()
        .filter(|m| !m.dry_run)
        .filter_map(|m| Some((m.name.as_str(), m.count_threshold()?)))
}

/// The number of tests a route's analysis makes: each own metric, plus its comparative part,
/// plus each deciding count-form external metric. The rollback bound splits
/// `max_false_rollback` over all of them.
pub fn tests_of(params: &Params) -> usize {
    test_count(&params.analysis.metrics) + counted_external(&params.analysis.external).count()
}

/// The number of tests `metrics` make (each metric, plus its comparative part).
pub fn test_count(metrics: &[MetricCheck]) -> usize {
    metrics
        .iter()
        .map(|m| match m {
            MetricCheck::SuccessRate { max_drop, .. } => 1 + usize::from(max_drop.is_some()),
            MetricCheck::Duration { max_ratio, .. } => 1 + usize::from(max_ratio.is_some()),
        })
        .sum()
}

/// Judge `evidence` with the tests of `params`.
pub fn judge(params: &Params, evidence: &StepEvidence) -> SequentialJudgement {
    let config = &params.analysis.sequential;
    let bounds = Bounds::of(params, tests_of(params));
    let (g, b) = (config.good_multiple, config.bad_multiple);
    let mut tests = Vec::new();
    let mut latency = evidence.slow.iter();
    for metric in &params.analysis.metrics {
        match metric {
            MetricCheck::SuccessRate {
                threshold,
                max_drop,
            } => {
                let allowed = (100.0 - threshold) / 100.0;
                let (n, k) = (evidence.canary.requests, evidence.canary.failures);
                tests.push(TestResult {
                    name: TestName::SuccessRate,
                    requests: n,
                    events: k,
                    primary_rate: None,
                    good: g * allowed,
                    bad: b * allowed,
                    slower_than_micros: None,
                    llr: binomial_llr(k, n, g * allowed, b * allowed),
                    bounds,
                });
                if let Some(drop) = max_drop {
                    tests.push(comparative(
                        TestName::SuccessRateDrop,
                        (evidence.canary.requests, evidence.canary.failures),
                        (evidence.primary.requests, evidence.primary.failures),
                        drop / 100.0,
                        config,
                        bounds,
                        None,
                    ));
                }
            }
            MetricCheck::Duration { quantile, .. } => {
                let allowed = 1.0 - quantile;
                // The evidence holds one counter per latency test, in this same order.
                for slow in latency.by_ref().take(slow_tests(metric)) {
                    let micros = slow.above.map(|d| d.as_micros() as u64);
                    let test = match slow.test {
                        LatencyTest::Absolute => TestResult {
                            name: TestName::Duration,
                            requests: slow.canary_requests,
                            events: slow.canary_slow,
                            primary_rate: None,
                            good: g * allowed,
                            bad: b * allowed,
                            slower_than_micros: micros,
                            llr: binomial_llr(
                                slow.canary_slow,
                                slow.canary_requests,
                                g * allowed,
                                b * allowed,
                            ),
                            bounds,
                        },
                        LatencyTest::Ratio { .. } => comparative(
                            TestName::DurationRatio,
                            (slow.canary_requests, slow.canary_slow),
                            (slow.primary_requests, slow.primary_slow),
                            allowed,
                            config,
                            bounds,
                            micros,
                        ),
                    };
                    tests.push(test);
                }
            }
        }
    }
    for (name, threshold) in counted_external(&params.analysis.external) {
        let allowed = (100.0 - threshold) / 100.0;
        let (good, bad) = (g * allowed, b * allowed);
        let (k, n) = evidence.external(name);
        tests.push(TestResult {
            name: TestName::External(name.to_owned()),
            requests: n,
            events: k,
            primary_rate: None,
            good,
            bad,
            slower_than_micros: None,
            llr: binomial_llr(k, n, good, bad),
            bounds,
        });
    }
    SequentialJudgement { tests }
}

/// Judge `evidence` with the absolute tests of `params` only: while Baking the canary has all
/// the traffic, so nothing compares it with the primary (docs/rollouts.md#bake). The bounds
/// stay those of every test, so a bake is no easier to roll back than a step.
pub fn judge_absolute(params: &Params, evidence: &StepEvidence) -> SequentialJudgement {
    let mut judgement = judge(params, evidence);
    judgement.tests.retain(|t| !t.name.comparative());
    judgement
}

fn slow_tests(metric: &MetricCheck) -> usize {
    match metric {
        MetricCheck::Duration { max_ratio, .. } => 1 + usize::from(max_ratio.is_some()),
        MetricCheck::SuccessRate { .. } => 0,
    }
}

/// Primary events the conditional test needs before it is used: below, the primary's rate is
/// too uncertain for the rate ratio, and with no primary events at all every event is the
/// canary's under either hypothesis, which reads as evidence of "bad" (measured: a canary at
/// 0.5% slow requests against a primary with none was rolled back in every run).
pub const CONDITIONAL_MIN_PRIMARY_EVENTS: u64 = 20;

/// The comparative test. "Good" lets the canary's event rate exceed the primary's by
/// `good_multiple × allowance`, "bad" by `bad_multiple × allowance`, the primary's rate being
/// the evidence's own (with half an event of prior).
///
/// Once the primary has [`CONDITIONAL_MIN_PRIMARY_EVENTS`] events, it is the conditional-binomial
/// test: given that `canary.1 + primary.1` events happened, each is the canary's with probability
/// [`canary_share`] of the two versions' requests and the rate ratio, so a swing that hits both
/// versions moves both counts and cancels out. Before that, the canary's own count is tested
/// against those two rates (a binomial test like the absolute one).
fn comparative(
    name: TestName,
    canary: (u64, u64),
    primary: (u64, u64),
    allowance: f64,
    config: &SequentialConfig,
    bounds: Bounds,
    slower_than_micros: Option<u64>,
) -> TestResult {
    let (n_c, k_c) = canary;
    let (n_p, k_p) = primary;
    let base = (k_p as f64 + 0.5) / (n_p as f64 + 1.0);
    let good = (base + config.good_multiple * allowance).min(0.999);
    let bad = (base + config.bad_multiple * allowance).min(0.9995);
    let llr = if n_c == 0 {
        0.0
    } else if k_p >= CONDITIONAL_MIN_PRIMARY_EVENTS {
        let pi_good = canary_share(n_c, n_p, good / base);
        let pi_bad = canary_share(n_c, n_p, bad / base);
        binomial_llr(k_c, k_c + k_p, pi_good, pi_bad)
    } else {
        binomial_llr(k_c, n_c, good, bad)
    };
    TestResult {
        name,
        requests: n_c,
        events: k_c,
        primary_rate: (n_p > 0).then(|| k_p as f64 / n_p as f64),
        good,
        bad,
        slower_than_micros,
        llr,
        bounds,
    }
}
