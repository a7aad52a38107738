//! Where route counters live between snapshots, and process-wide counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::RouteMetrics;

/// Route counters by route name. Only the control task calls [`MetricsRegistry::route`], once per
/// snapshot build, so its lock is never on the request path.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    routes: Mutex<HashMap<String, Arc<RouteMetrics>>>,
    /// Process-wide counters.
    pub process: ProcessStats,
}

impl MetricsRegistry {
    /// The counters of a route, created on first use and kept across reloads.
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.entry(name.to_owned()).or_default().clone()
    }

    /// Every route's counters, for exposition.
    pub fn routes(&self) -> Vec<(String, Arc<RouteMetrics>)> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Counters that belong to the process rather than a route.
#[derive(Debug)]
pub struct ProcessStats {
    /// Open client connections.
    pub active_connections: AtomicI64,
    /// Successful config reloads.
    pub reloads_success: AtomicU64,
    /// Rejected config reloads.
    pub reloads_failure: AtomicU64,
    /// Whether the last reload was accepted.
    pub last_reload_successful: AtomicBool,
}

impl Default for ProcessStats {
    fn default() -> Self {
        ProcessStats {
            active_connections: AtomicI64::new(0),
            reloads_success: AtomicU64::new(0),
            reloads_failure: AtomicU64::new(0),
            last_reload_successful: AtomicBool::new(true),
        }
    }
}

impl ProcessStats {
    /// Count a reload attempt.
    pub fn reload_result(&self, ok: bool) {
        if ok {
            self.reloads_success.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failure.fetch_add(1, Ordering::Relaxed);
        }
        self.last_reload_successful.store(ok, Ordering::Relaxed);
    }
}
