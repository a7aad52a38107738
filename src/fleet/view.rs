//! What the fleet looks like from this replica, for `GET /api/v1/fleet`, the route JSON, the
//! status page and the `canaryd_fleet_*` metrics. Plain data in an arc-swap cell: the fleet
//! task replaces it, readers never wait.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// One member of the fleet as it last published itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Replica id.
    pub replica: String,
    /// The canary weight it serves, per analysed route.
    pub applied: BTreeMap<String, u8>,
    /// How old its copy of the fleet state was when it published.
    pub state_age_seconds: f64,
    /// Hash of each analysed route's settings (drift detection).
    pub config_hash: BTreeMap<String, String>,
}

/// `GET /api/v1/fleet`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetView {
    /// Fleet name.
    pub name: String,
    /// This replica's id.
    pub replica: String,
    /// The current leader's replica id, if one is known.
    pub leader: Option<String>,
    /// Whether this replica is the leader.
    pub is_leader: bool,
    /// Live members (their keys are bound to their leases).
    pub members: Vec<MemberView>,
    /// `"up"` or `"down"`: whether this replica reached etcd lately.
    pub etcd: &'static str,
    /// Seconds since this replica last confirmed its copy of the fleet state.
    pub state_age_seconds: f64,
    /// Analysed routes whose settings differ between members: not judged until they agree.
    pub drift: Vec<String>,
}

/// `fleet: {leader, members}` in the route JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteFleet {
    /// The leader's replica id.
    pub leader: Option<String>,
    /// Member ids.
    pub members: Vec<String>,
    /// Members disagree about this route's settings.
    pub drift: bool,
}

/// The shared, replaceable view.
#[derive(Debug, Clone, Default)]
pub struct FleetBoard(Arc<ArcSwap<FleetView>>);

impl FleetBoard {
    /// The latest view.
    pub fn load(&self) -> Arc<FleetView> {
        self.0.load_full()
    }

    /// Publish a new view.
    pub fn store(&self, view: FleetView) {
        self.0.store(Arc::new(view));
    }

    /// The route JSON's `fleet` member.
    pub fn route(&self, route: &str) -> RouteFleet {
        let view = self.load();
        RouteFleet {
            leader: view.leader.clone(),
            members: view.members.iter().map(|m| m.replica.clone()).collect(),
            drift: view.drift.iter().any(|r| r == route),
        }
    }
}
