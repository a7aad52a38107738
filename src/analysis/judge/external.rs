//! Judging the external metrics' readings (`docs/rollouts.md#external-metrics`): pure, no IO.
//! A value passes inside `min`/`max`; the count form's success rate passes at or above
//! `threshold`; no value (an error, no data, `total` 0) is inconclusive, never a pass;
//! `dry_run` metrics are reported and never decide.

use serde::{Deserialize, Serialize};

use crate::analysis::machine::report::MetricReport;
use crate::config::{ExternalMetric, MetricSource, PromQuery};

/// What the analysis task read for one external metric at a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalReading {
    /// The metric's `name`.
    pub name: String,
    /// The query or URL actually sent, placeholders filled (the count form: both queries).
    pub query: String,
    /// The value (the count form: failures and total), or why there is none.
    pub result: Result<Reading, String>,
}

/// A metric's number(s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    /// One value, judged by `min`/`max`.
    Value(f64),
    /// The count form.
    Count {
        /// Failed events in the interval.
        failures: f64,
        /// All events in the interval.
        total: f64,
    },
}

impl ExternalReading {
    /// A reading inside `metric`'s bounds: `canaryd simulate`, which cannot draw what an
    /// outside system would say, takes every external metric to pass.
    pub fn assumed_passing(metric: &ExternalMetric) -> ExternalReading {
        let result = match &metric.source {
            MetricSource::Prometheus {
                query: PromQuery::Count { .. },
                ..
            } => Reading::Count {
                failures: 0.0,
                total: 1.0,
            },
            _ => Reading::Value(metric.min.or(metric.max).unwrap_or(0.0)),
        };
        ExternalReading {
            name: metric.name.clone(),
            query: "(simulated: assumed to pass)".to_owned(),
            result: Ok(result),
        }
    }
}

/// How one external metric came out.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalVerdict {
    /// Inside its bounds.
    Pass,
    /// Outside them: what was read and allowed.
    Fail(String),
    /// No value: why.
    Inconclusive(String),
}

/// Judge `metric` on `reading` (`None`: nothing was read for it, e.g. a check that ran
/// without the analysis task's queries).
pub fn judge_external(
    metric: &ExternalMetric,
    reading: Option<&ExternalReading>,
) -> (ExternalVerdict, MetricReport) {
    let threshold = match &metric.source {
        MetricSource::Prometheus {
            query: PromQuery::Count { threshold, .. },
            ..
        } => Some(*threshold),
        _ => None,
    };
    let (verdict, value) = match reading.map(|r| &r.result) {
        None => (
            ExternalVerdict::Inconclusive("not measured".to_owned()),
            None,
        ),
        Some(Err(why)) => (ExternalVerdict::Inconclusive(why.clone()), None),
        Some(Ok(Reading::Count { failures, total })) => {
            if *total <= 0.0 || !total.is_finite() || !failures.is_finite() {
                (
                    ExternalVerdict::Inconclusive(format!("no events (total {total})")),
                    None,
                )
            } else {
                let rate = 100.0 * (1.0 - failures / total).clamp(0.0, 1.0);
                let limit = threshold.unwrap_or(100.0);
                let verdict = if rate >= limit {
                    ExternalVerdict::Pass
                } else {
                    ExternalVerdict::Fail(format!("success rate {rate:.2}% < {limit}%"))
                };
                (verdict, Some(rate))
            }
        }
        Some(Ok(Reading::Value(value))) => (bounds(metric, *value), Some(*value)),
    };
    let report = MetricReport {
        name: metric.name.clone(),
        value,
        threshold: threshold.or(metric.max).or(metric.min).unwrap_or(0.0),
        passed: verdict == ExternalVerdict::Pass,
        evidence: None,
        query: reading.map(|r| r.query.clone()),
        error: match &verdict {
            ExternalVerdict::Inconclusive(why) => Some(why.clone()),
            _ => None,
        },
        dry_run: metric.dry_run,
    };
    (verdict, report)
}

fn bounds(metric: &ExternalMetric, value: f64) -> ExternalVerdict {
    if !value.is_finite() {
        return ExternalVerdict::Inconclusive(format!("the value is {value}"));
    }
    if let Some(max) = metric.max.filter(|max| value > *max) {
        return ExternalVerdict::Fail(format!("{value} > max {max}"));
    }
    if let Some(min) = metric.min.filter(|min| value < *min) {
        return ExternalVerdict::Fail(format!("{value} < min {min}"));
    }
    ExternalVerdict::Pass
}

/// How the check's judge uses the count form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountForm {
    /// Judged on this check's rate against `threshold` (the threshold judge).
    Rate,
    /// Evidence of the sequential judge's test for the metric: not judged here, only a
    /// reading without a value (an error, no data) keeps the check from passing.
    Evidence,
}

/// Every external metric of a check: the reports, the failures and the reasons it cannot
/// pass, dry-run metrics left out of the last two.
pub fn judge_all(
    metrics: &[ExternalMetric],
    readings: &[ExternalReading],
    counts: CountForm,
) -> (Vec<MetricReport>, Vec<super::Failure>, Vec<String>) {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    let mut unknown = Vec::new();
    for metric in metrics {
        let reading = readings.iter().find(|r| r.name == metric.name);
        let (verdict, report) = judge_external(metric, reading);
        reports.push(report);
        if metric.dry_run {
            continue;
        }
        let evidence = counts == CountForm::Evidence && metric.counted();
        match verdict {
            ExternalVerdict::Pass => {}
            ExternalVerdict::Fail(_) if evidence => {}
            ExternalVerdict::Fail(detail) => failures.push(super::Failure::External {
                name: metric.name.clone(),
                detail,
            }),
            // An interval without events adds nothing to the evidence, and holds nothing.
            ExternalVerdict::Inconclusive(_)
                if evidence && matches!(reading.map(|r| &r.result), Some(Ok(_))) => {}
            ExternalVerdict::Inconclusive(why) => unknown.push(format!("{}: {why}", metric.name)),
        }
    }
    (reports, failures, unknown)
}
