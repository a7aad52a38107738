//! A short in-memory history of each analysed route — one point per check or phase change —
//! for the status page's charts. Not persisted: it is a picture of the last minutes.

use std::collections::VecDeque;

use serde::Serialize;

use super::{CheckOutcome, RolloutStatus, VersionReport};

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
    last_check_at: Option<String>,
}

impl RouteHistory {
    /// Add a point if the status shows a new check or a new phase or weight.
    pub fn observe(&mut self, status: &RolloutStatus, now: String) {
        let check_at = status.last_check.as_ref().map(|c| c.at.clone());
        let new_check = check_at.is_some() && check_at != self.last_check_at;
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
        self.last_check_at = check_at;
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
