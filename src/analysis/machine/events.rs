//! Rollout events (docs/rollouts.md#events): what happened to a route, in Flagger's words, and the
//! ring buffer of the last 1000 that `GET /api/v1/events` serves.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How many events [`EventLog`] keeps.
pub const EVENT_LOG_CAPACITY: usize = 1000;

/// Event severity, `"info"` or `"warning"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal progress.
    Info,
    /// Something an operator should look at: failed checks, rollbacks, refusals.
    Warning,
}

/// One event: `{at, route, severity, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, RFC 3339 UTC with seconds (`2025-01-31T12:00:00Z`).
    pub at: String,
    /// The route it happened to.
    pub route: String,
    /// Info or warning.
    pub severity: Severity,
    /// Human-readable, Flagger's wording where one exists.
    pub message: String,
}

// === impl Event ===

impl Event {
    /// An informational event.
    pub fn info(route: &str, now: SystemTime, message: impl Into<String>) -> Self {
        Event::new(route, now, Severity::Info, message.into())
    }

    /// A warning event.
    pub fn warning(route: &str, now: SystemTime, message: impl Into<String>) -> Self {
        Event::new(route, now, Severity::Warning, message.into())
    }

    fn new(route: &str, now: SystemTime, severity: Severity, message: String) -> Self {
        Event {
            at: rfc3339(now),
            route: route.to_owned(),
            severity,
            message,
        }
    }
}

/// `now` as RFC 3339 UTC. Clamped to 1970..=9999 because humantime panics before the epoch
/// and fails after year 9999; a clock that far off must not take the analysis down.
pub fn rfc3339(now: SystemTime) -> String {
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    let latest = UNIX_EPOCH + Duration::from_secs(LAST_SECOND_OF_9999);
    let clamped = now.clamp(UNIX_EPOCH, latest);
    // Milliseconds: checks can run several times a second, and their points must stay apart.
    humantime::format_rfc3339_millis(clamped).to_string()
}

/// Seconds since the Unix epoch (0 for a clock before it); the state file's timestamps.
pub fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last [`EVENT_LOG_CAPACITY`] events of every route, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    events: VecDeque<Event>,
}

// === impl EventLog ===

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        EventLog::default()
    }

    /// Append an event, dropping the oldest once full.
    pub fn push(&mut self, event: Event) {
        if self.events.len() == EVENT_LOG_CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Append several events in order.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.push(event);
        }
    }

    /// The kept events, all or one route's, newest last.
    pub fn list(&self, route: Option<&str>) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| route.is_none_or(|r| e.route == r))
            .cloned()
            .collect()
    }

    /// Number of kept events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
