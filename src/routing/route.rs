//! One route as the data plane sees it: resolved backends, rollout view, rules, counters.

use std::sync::Arc;

use super::{Backend, RolloutView};
use crate::config::{FailurePolicy, MatchRule, MirrorConfig, StickyKey, Version};
use crate::metrics::RouteMetrics;

/// A route, resolved once per routing snapshot so nothing is looked up per request.
#[derive(Debug)]
pub struct Route {
    /// The route's name (metric label, API key).
    pub name: Arc<str>,
    /// Requests whose path starts with this belong to the route.
    pub path_prefix: Box<str>,
    /// The stable version's endpoints.
    pub primary: Arc<Backend>,
    /// The canary's endpoints, if the route has a canary.
    pub canary: Option<Arc<Backend>>,
    /// Current phase and weight.
    pub rollout: RolloutView,
    /// `[[route.match]]` rules, first match wins.
    pub matches: Vec<MatchRule>,
    /// Where the sticky key is read from.
    pub sticky: Option<StickyKey>,
    /// Shadow traffic settings.
    pub mirror: Option<MirrorConfig>,
    /// The route's counters (shared across snapshots).
    pub metrics: Arc<RouteMetrics>,
    /// `[route.failures]`: what counts as a failed request.
    pub failures: FailurePolicy,
}

impl Route {
    /// The backend serving a version; a route without canary serves everything from the primary.
    pub fn backend(&self, version: Version) -> &Arc<Backend> {
        match (version, &self.canary) {
            (Version::Canary, Some(canary)) => canary,
            _ => &self.primary,
        }
    }
}
