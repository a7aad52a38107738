//! Judging one window against a route's metrics (SPEC section 4, "Checks").
//!
//! Pure arithmetic: it neither counts checks nor changes the rollout; [`super::Rollout`] decides
//! what a failure means.

use std::fmt;
use std::time::Duration;

use super::params::Params;
use super::report::{millis, MetricReport};
use super::window::{VersionWindow, Window};
use crate::config::MetricCheck;

/// Why a check failed. The `Display` text follows "Halt shop advancement …" in events.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Canary success rate below the absolute threshold.
    SuccessRate {
        /// Canary success rate, percent.
        value: f64,
        /// Configured minimum, percent.
        threshold: f64,
    },
    /// Canary success rate more than `max_drop` points below the primary's.
    SuccessRateDrop {
        /// Canary success rate, percent.
        value: f64,
        /// Primary success rate in the same window, percent.
        primary: f64,
        /// Allowed drop, points.
        max_drop: f64,
    },
    /// Canary latency quantile above the absolute threshold.
    Duration {
        /// Canary quantile.
        value: Duration,
        /// Configured maximum.
        threshold: Duration,
    },
    /// Canary latency quantile above `max_ratio` times the primary's.
    DurationRatio {
        /// Canary quantile.
        value: Duration,
        /// Primary quantile in the same window.
        primary: Duration,
        /// Allowed ratio.
        max_ratio: f64,
    },
    /// A metric had no data although the window concluded (no latency recorded).
    NoData {
        /// Metric name.
        metric: &'static str,
    },
    /// The `rollout` webhook said no (or did not answer).
    RolloutWebhook,
    /// The `pre-rollout` webhook said no (or did not answer).
    PreRolloutWebhook,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::SuccessRate { value, threshold } => {
                write!(f, "success rate {value:.2}% < {threshold}%")
            }
            Failure::SuccessRateDrop {
                value,
                primary,
                max_drop,
            } => write!(
                f,
                "success rate {value:.2}% more than {max_drop} points below primary {primary:.2}%"
            ),
            Failure::Duration { value, threshold } => write!(
                f,
                "request duration {} > {}",
                format_ms(*value),
                format_ms(*threshold)
            ),
            Failure::DurationRatio {
                value,
                primary,
                max_ratio,
            } => write!(
                f,
                "request duration {} > {max_ratio}x primary {}",
                format_ms(*value),
                format_ms(*primary)
            ),
            Failure::NoData { metric } => write!(f, "{metric} has no data"),
            Failure::RolloutWebhook => f.write_str("rollout webhook failed"),
            Failure::PreRolloutWebhook => f.write_str("pre-rollout webhook failed"),
        }
    }
}

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
        metrics: Vec::with_capacity(params.metrics.len()),
        failures: Vec::new(),
    };
    for metric in &params.metrics {
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

/// Milliseconds with three significant digits, the histogram's precision: `620ms`, `45.6ms`,
/// `1.23ms`, `0.412ms`.
pub(crate) fn format_ms(d: Duration) -> String {
    let ms = millis(d);
    let decimals = match ms {
        ms if ms >= 100.0 => 0,
        ms if ms >= 10.0 => 1,
        ms if ms >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{ms:.decimals$}");
    // "45.0" reads better as "45".
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}ms")
}
