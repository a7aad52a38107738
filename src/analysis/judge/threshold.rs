//! The `threshold` judge (`docs/rollouts.md#checks`): each window passes or fails on fixed
//! thresholds, Flagger's semantics. Whether enough checks failed is the rollout's business.

use std::time::Duration;

use super::Failure;
use crate::analysis::judge::window::{VersionWindow, Window};
use crate::analysis::machine::params::Params;
use crate::analysis::machine::report::{millis, MetricReport};
use crate::config::MetricCheck;

/// Every metric's report and the failures among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// One report per configured metric, in config order.
    pub metrics: Vec<MetricReport>,
    /// Empty when every metric passed.
    pub failures: Vec<Failure>,
}

/// Evaluate every metric of `params` on `window`.
///
/// The comparative parts (`max_drop`, `max_ratio`) apply only when the primary also has
/// `min_requests` in the window: a primary with a handful of requests is no baseline.
pub fn judge(params: &Params, window: &Window) -> Judgement {
    let baseline = window.primary.requests >= params.required_requests();
    let mut judgement = Judgement {
        metrics: Vec::with_capacity(params.analysis.metrics.len()),
        failures: Vec::new(),
    };
    for metric in &params.analysis.metrics {
        let (report, failure) = match metric {
            MetricCheck::SuccessRate {
                threshold,
                max_drop,
            } => success_rate(window, baseline, *threshold, *max_drop),
            MetricCheck::Duration {
                threshold,
                quantile,
                max_ratio,
            } => duration(window, baseline, *threshold, *quantile, *max_ratio),
        };
        judgement.metrics.push(report);
        judgement.failures.extend(failure);
    }
    judgement
}

fn success_rate(
    window: &Window,
    baseline: bool,
    threshold: f64,
    max_drop: Option<f64>,
) -> (MetricReport, Option<Failure>) {
    const NAME: &str = "request-success-rate";
    let value = window.canary.success_rate();
    let failure = match value {
        None => Some(Failure::NoData { metric: NAME }),
        Some(value) if value < threshold => Some(Failure::SuccessRate { value, threshold }),
        Some(value) => comparative_rate(&window.primary, baseline, value, max_drop),
    };
    let report = MetricReport {
        name: NAME.to_owned(),
        value,
        threshold,
        passed: failure.is_none(),
        evidence: None,
        query: None,
        error: None,
        dry_run: false,
    };
    (report, failure)
}

fn comparative_rate(
    primary: &VersionWindow,
    baseline: bool,
    value: f64,
    max_drop: Option<f64>,
) -> Option<Failure> {
    let max_drop = max_drop.filter(|_| baseline)?;
    let primary = primary.success_rate()?;
    (value < primary - max_drop).then_some(Failure::SuccessRateDrop {
        value,
        primary,
        max_drop,
    })
}

fn duration(
    window: &Window,
    baseline: bool,
    threshold: Duration,
    quantile: f64,
    max_ratio: Option<f64>,
) -> (MetricReport, Option<Failure>) {
    const NAME: &str = "request-duration";
    let value = window.canary.quantile(quantile);
    let failure = match value {
        None => Some(Failure::NoData { metric: NAME }),
        Some(value) if value > threshold => Some(Failure::Duration { value, threshold }),
        Some(value) => comparative_duration(&window.primary, baseline, value, quantile, max_ratio),
    };
    let report = MetricReport {
        name: NAME.to_owned(),
        value: value.map(millis),
        threshold: millis(threshold),
        passed: failure.is_none(),
        evidence: None,
        query: None,
        error: None,
        dry_run: false,
    };
    (report, failure)
}

fn comparative_duration(
    primary: &VersionWindow,
    baseline: bool,
    value: Duration,
    quantile: f64,
    max_ratio: Option<f64>,
) -> Option<Failure> {
    let max_ratio = max_ratio.filter(|_| baseline)?;
    let primary = primary.quantile(quantile)?;
    (value.as_secs_f64() > max_ratio * primary.as_secs_f64()).then_some(Failure::DurationRatio {
        value,
        primary,
        max_ratio,
    })
}
