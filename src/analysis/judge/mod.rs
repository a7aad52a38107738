//! The judges: pure arithmetic on what was measured, side by side. `threshold.rs` judges one
//! window against fixed thresholds (`docs/rollouts.md#checks`); `sequential.rs` tests the evidence
//! accumulated since the step (or rollout) began (`docs/rollouts.md#the-sequential-judge`). Neither counts checks nor
//! changes the rollout; [`super::Rollout`] decides what a verdict means.

pub(super) mod evidence;
mod explain;
pub mod external;
pub mod sequential;
mod threshold;
pub(super) mod window;

pub use explain::{describe, report, thousands};
pub use sequential::{SequentialJudgement, TestName, TestResult, Verdict};
pub use threshold::{judge, Judgement};

use std::fmt;
use std::time::Duration;

use crate::analysis::machine::report::millis;

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
    /// An external metric's value was outside `min`/`max`, or its success rate below
    /// `threshold` (`docs/rollouts.md#external-metrics`).
    External {
        /// The metric's `name`.
        name: String,
        /// What was read and what was allowed, e.g. `0.8 > max 0.5`.
        detail: String,
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
            Failure::External { name, detail } => write!(f, "{name} {detail}"),
            Failure::RolloutWebhook => f.write_str("rollout webhook failed"),
            Failure::PreRolloutWebhook => f.write_str("pre-rollout webhook failed"),
        }
    }
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
