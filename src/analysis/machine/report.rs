//! The `last_check` JSON of docs/operations.md#admin-api: what one check saw and concluded.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analysis::judge::window::VersionWindow;

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
    /// A failure decides; without one, a check passes only when it could judge everything.
    pub fn of(failed: bool, conclusive: bool) -> Self {
        if failed {
            CheckOutcome::Fail
        } else if conclusive {
            CheckOutcome::Pass
        } else {
            CheckOutcome::Inconclusive
        }
    }

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
    /// Whether the metric passed, comparative part included (sequential: accepted "good").
    pub passed: bool,
    /// The sequential judge's evidence; absent with `judge = "threshold"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceReport>,
    /// External metrics: the query (or URL) actually sent, placeholders filled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// External metrics: why there is no value (the check is then inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// External metrics: `dry_run`, measured and shown but never deciding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// `evidence` of one sequential test (`docs/rollouts.md#explaining-a-decision`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceReport {
    /// Canary requests the test counted since the evidence began.
    pub requests: u64,
    /// Failures, or requests slower than `slower_than_ms`, among them.
    pub events: u64,
    /// `events / requests`; `null` without requests.
    pub observed_rate: Option<f64>,
    /// The primary's rate over the same time (comparative tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_rate: Option<f64>,
    /// "Good": the rate a healthy canary stays at or below.
    pub good_rate: f64,
    /// "Bad": the rate that must be rolled back.
    pub bad_rate: f64,
    /// The latency a request must exceed to count (duration tests), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slower_than_ms: Option<f64>,
    /// Log-likelihood ratio of "bad" over "good".
    pub llr: f64,
    /// `ln(1/α')`: the LLR that rolls back.
    pub rollback_bound: f64,
    /// `ln(β)`: the LLR that accepts "good".
    pub pass_bound: f64,
    /// Always-valid p-value of "good", `min(1, e^-llr)`.
    pub p_value: f64,
    /// `"rollback"` or `"pass"`: the decision the evidence leans to.
    pub toward: String,
    /// Share of the evidence that decision needs, 0..=1.
    pub progress: f64,
    /// `"pass"`, `"rollback"` or `"undecided"`.
    pub verdict: String,
}

/// A duration as fractional milliseconds, the unit of the JSON reports.
pub(crate) fn millis(d: Duration) -> f64 {
    // Whole microseconds divided once: 552 µs reads 0.552, not 0.5519999999999999.
    d.as_micros() as f64 / 1000.0
}
