//! A short in-memory history of each analysed route — one point per check or phase change —
//! for the status page's charts. Not persisted: it is a picture of the last minutes.

use std::collections::VecDeque;

use serde::Serialize;

use crate::analysis::{CheckOutcome, CheckReport, RolloutStatus, VersionReport};

/// Points kept per route: at one check a second, the last six minutes.
pub const HISTORY_CAPACITY: usize = 360;

/// One point of a route's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// When the check ran (or the phase changed), RFC 3339.
    pub at: String,
    /// Phase name after it.
    pub phase: &'static str,
    /// Canary weight after it.
    pub weight: u8,
    /// The check's outcome; `null` for a change without a check (a command, a reload).
    pub outcome: Option<CheckOutcome>,
    /// The primary in the check's window.
    pub primary: HistoryVersion,
    /// The canary in the check's window.
    pub canary: HistoryVersion,
}

/// What the charts plot of one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryVersion {
    /// Judged requests in the window.
    pub requests: u64,
    /// Success rate in percent, `null` without requests.
    pub success_rate: Option<f64>,
    /// P99 latency in milliseconds, `null` without requests.
    pub p99_ms: Option<f64>,
}

impl From<&VersionReport> for HistoryVersion {
    fn from(report: &VersionReport) -> Self {
        HistoryVersion {
            requests: report.requests,
            success_rate: report.success_rate,
            p99_ms: report.p99_ms,
        }
    }
}

/// The history of one route.
#[derive(Debug, Default)]
pub struct RouteHistory {
    points: VecDeque<HistoryPoint>,
    last_check: Option<CheckReport>,
}

impl RouteHistory {
    /// Add a point if the status shows a new check or a new phase or weight.
    pub fn observe(&mut self, status: &RolloutStatus, now: String) {
        // The whole report, not just its time, tells a new check from the one already seen.
        let new_check = status.last_check.is_some() && status.last_check != self.last_check;
        let changed = self
            .points
            .back()
            .is_none_or(|p| p.phase != status.phase || p.weight != status.weight);
        if !new_check && !changed {
            return;
        }
        let empty = HistoryVersion {
            requests: 0,
            success_rate: None,
            p99_ms: None,
        };
        let point = match (&status.last_check, new_check) {
            (Some(check), true) => HistoryPoint {
                at: check.at.clone(),
                phase: status.phase,
                weight: status.weight,
                outcome: Some(check.outcome),
                primary: (&check.primary).into(),
                canary: (&check.canary).into(),
            },
            _ => HistoryPoint {
                at: now,
                phase: status.phase,
                weight: status.weight,
                outcome: None,
                primary: empty.clone(),
                canary: empty,
            },
        };
        self.last_check.clone_from(&status.last_check);
        if self.points.len() == HISTORY_CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Oldest first.
    pub fn points(&self) -> Vec<HistoryPoint> {
        self.points.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::CheckReport;

    fn status(weight: u8, check: Option<CheckReport>) -> RolloutStatus {
        RolloutStatus {
            name: "shop".into(),
            phase: "Progressing",
            weight,
            revision: "v2".into(),
            primary_revision: "v1".into(),
            failed_checks: 0,
            inconclusive_checks: 0,
            iterations: 0,
            last_check: check,
            reason: None,
        }
    }

    fn check(at: &str, canary_requests: u64) -> CheckReport {
        let version = |requests| VersionReport {
            requests,
            success_rate: Some(100.0),
            p50_ms: Some(1.0),
            p99_ms: Some(2.0),
        };
        CheckReport {
            at: at.into(),
            outcome: CheckOutcome::Pass,
            window_seconds: 0,
            primary: version(50),
            canary: version(canary_requests),
            metrics: vec![],
        }
    }

    #[test]
    fn every_new_check_is_a_point_even_within_one_timestamp() {
        let mut history = RouteHistory::default();
        history.observe(&status(10, None), "t0".into());
        // Same status again: nothing new.
        history.observe(&status(10, None), "t0".into());
        assert_eq!(history.points().len(), 1);
        history.observe(&status(20, Some(check("t1", 7))), "t1".into());
        // A different check that happens to carry the same timestamp.
        history.observe(&status(30, Some(check("t1", 9))), "t1".into());
        // The same check seen again (a command published the status): no new point.
        history.observe(&status(30, Some(check("t1", 9))), "t1".into());
        let points = history.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[1].canary.requests, 7);
        assert_eq!(points[2].canary.requests, 9);
        assert_eq!(points[2].outcome, Some(CheckOutcome::Pass));
    }
}
