//! What the sequential judge's numbers mean, in words and in `last_check.metrics[]`
//! (`docs/rollouts.md#explaining-a-decision`).

use std::fmt::Write as _;
use std::time::Duration;

use super::format_ms;
use super::sequential::{TestName, TestResult};
use crate::analysis::machine::report::{EvidenceReport, MetricReport};

/// `2310` → `2,310`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// "error rate 1.42% over 2,310 requests, 64% of the evidence needed to roll back".
pub fn describe(test: &TestResult) -> String {
    let mut text = match &test.name {
        TestName::SuccessRate | TestName::SuccessRateDrop => "error rate".to_owned(),
        TestName::Duration | TestName::DurationRatio => match test.slower_than_micros {
            Some(micros) => format!(
                "share slower than {}",
                format_ms(Duration::from_micros(micros))
            ),
            None => "share of slow requests".to_owned(),
        },
        TestName::External(name) => format!("{name} failure rate"),
    };
    match test.observed() {
        Some(rate) => {
            let _ = write!(text, " {}", percent(rate));
        }
        None => text.push_str(" unknown"),
    }
    if let Some(primary) = test.primary_rate {
        let _ = write!(text, " (primary {})", percent(primary));
    }
    let counted = match test.name {
        TestName::External(_) => "events",
        _ => "requests",
    };
    let _ = write!(text, " over {} {counted}", thousands(test.requests));
    let (toward_rollback, fraction) = test.progress();
    let _ = write!(
        text,
        ", {:.0}% of the evidence needed to {}",
        fraction * 100.0,
        if toward_rollback { "roll back" } else { "pass" }
    );
    text
}

/// The test as a `last_check.metrics[]` entry.
pub fn report(test: &TestResult) -> MetricReport {
    let (toward_rollback, progress) = test.progress();
    let verdict = test.verdict();
    MetricReport {
        name: test.name.as_str().to_owned(),
        value: test.observed().map(|r| r * 100.0),
        threshold: test.bad * 100.0,
        passed: verdict == super::sequential::Verdict::Pass,
        evidence: Some(EvidenceReport {
            requests: test.requests,
            events: test.events,
            observed_rate: test.observed(),
            primary_rate: test.primary_rate,
            good_rate: test.good,
            bad_rate: test.bad,
            slower_than_ms: test.slower_than_micros.map(|m| m as f64 / 1000.0),
            llr: test.llr,
            rollback_bound: test.bounds.rollback,
            pass_bound: test.bounds.pass,
            p_value: test.p_value(),
            toward: if toward_rollback { "rollback" } else { "pass" }.to_owned(),
            progress,
            verdict: verdict.as_str().to_owned(),
        }),
        query: None,
        error: None,
        dry_run: false,
    }
}
