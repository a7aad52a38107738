//! The route JSON of the admin API: the analysis's status for analysed routes, and the routing
//! snapshot's view (Idle or Static) for the others, in the same shape.

use crate::analysis::{AnalysisHandle, RolloutStatus};
use crate::routing::RoutingSnapshot;

/// Every route, in config order.
pub fn all_routes(snapshot: &RoutingSnapshot, analysis: &AnalysisHandle) -> Vec<RolloutStatus> {
    let mut statuses = analysis.statuses();
    snapshot
        .config
        .routes
        .iter()
        .map(|route| {
            statuses.remove(&route.name).unwrap_or_else(|| {
                let view = snapshot
                    .table
                    .routes()
                    .iter()
                    .find(|r| *r.name == *route.name)
                    .map(|r| r.rollout);
                RolloutStatus {
                    name: route.name.clone(),
                    phase: view.map_or("Idle", |v| v.phase.as_str()),
                    weight: view.map_or(0, |v| v.weight),
                    revision: route
                        .canary
                        .as_ref()
                        .map(|c| c.version.revision.clone())
                        .unwrap_or_default(),
                    primary_revision: route.primary.revision.clone(),
                    failed_checks: 0,
                    inconclusive_checks: 0,
                    iterations: 0,
                    last_check: None,
                    reason: None,
                }
            })
        })
        .collect()
}

/// One route by name.
pub fn one_route(
    snapshot: &RoutingSnapshot,
    analysis: &AnalysisHandle,
    name: &str,
) -> Option<RolloutStatus> {
    all_routes(snapshot, analysis)
        .into_iter()
        .find(|r| r.name == name)
}
