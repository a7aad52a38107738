//! The `last_check` JSON of SPEC section 6: what one check saw and concluded.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::VersionWindow;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    /// Every metric and the `rollout` webhook passed.
    Pass,
    /// A metric or the `rollout` webhook failed.
    Fail,
    /// Too few canary requests to judge.
    Inconclusive,
}

impl CheckOutcome {
    /// `"pass"`, `"fail"` or `"inconclusive"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Pass => "pass",
            CheckOutcome::Fail => "fail",
            CheckOutcome::Inconclusive => "inconclusive",
        }
    }
}

/// `last_check`: `{at, outcome, window_seconds, primary, canary, metrics}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// When the check ran, RFC 3339 UTC.
    pub at: String,
    /// Pass, fail or inconclusive.
    pub outcome: CheckOutcome,
    /// How long the judged window had been accumulating.
    pub window_seconds: u64,
    /// The primary's side of the window.
    pub primary: VersionReport,
    /// The canary's side of the window.
    pub canary: VersionReport,
    /// Every configured metric, in config order.
    pub metrics: Vec<MetricReport>,
}

/// `{requests, success_rate, p50_ms, p99_ms}` of one version; `null`s without requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionReport {
    /// Judged requests in the window.
    pub requests: u64,
    /// Percent of them that succeeded.
    pub success_rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

impl VersionReport {
    /// Summarise one version's window.
    pub fn of(window: &VersionWindow) -> Self {
        VersionReport {
            requests: window.requests,
            success_rate: window.success_rate(),
            p50_ms: window.quantile(0.5).map(millis),
            p99_ms: window.quantile(0.99).map(millis),
        }
    }
}

/// `{name, value, threshold, passed}` of one metric; `value` is `null` without data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    /// `request-success-rate` or `request-duration`.
    pub name: String,
    /// Percent for the success rate, milliseconds for the duration quantile.
    pub value: Option<f64>,
    /// The absolute threshold, in the same unit.
    pub threshold: f64,
    /// Whether the metric passed, comparative part included.
    pub passed: bool,
}

/// A duration as fractional milliseconds, the unit of the JSON reports.
pub(crate) fn millis(d: Duration) -> f64 {
    // Whole microseconds divided once: 552 µs reads 0.552, not 0.5519999999999999.
    d.as_micros() as f64 / 1000.0
}
