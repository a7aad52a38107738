//! The shared, read-mostly view of the analysis: each route's status, its check history and
//! the event ring. Route tasks write it; the admin API reads it through
//! [`crate::analysis::AnalysisHandle`]. Its own module so that the supervisor (`engine.rs`) and the route
//! tasks (`route_task.rs`) both depend on it instead of on each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::analysis::runner::history::{HistoryPoint, RouteHistory};
use crate::analysis::{rfc3339, Event, EventLog, RolloutStatus};

/// Statuses and events, written by route tasks and read by the admin API.
#[derive(Debug, Default)]
pub struct EngineShared {
    statuses: Mutex<BTreeMap<String, RolloutStatus>>,
    history: Mutex<HashMap<String, RouteHistory>>,
    events: Mutex<EventLog>,
}

impl EngineShared {
    pub(in crate::analysis) fn set_status(&self, status: RolloutStatus) {
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            history
                .entry(status.name.clone())
                .or_default()
                .observe(&status, rfc3339(SystemTime::now()));
        }
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.insert(status.name.clone(), status);
    }

    pub(in crate::analysis) fn remove_status(&self, route: &str) {
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.remove(route);
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.remove(route);
    }

    pub(in crate::analysis) fn push_event(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.push(event);
    }

    pub(in crate::analysis) fn statuses(&self) -> BTreeMap<String, RolloutStatus> {
        let statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.clone()
    }

    pub(in crate::analysis) fn history(&self, route: &str) -> Option<Vec<HistoryPoint>> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.get(route).map(RouteHistory::points)
    }

    pub(in crate::analysis) fn events(&self, route: Option<&str>) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.list(route)
    }
}
