//! Routing a request (docs/routing.md): which route, which version, which endpoint.
//!
//! Everything here works on plain data — a [`RoutingSnapshot`] and the request fields (an
//! `http::HeaderMap`, or the fast path's flat view: [`RequestFields`]) — so it
//! is tested without sockets. A snapshot is immutable; [`crate::control`] builds a new one for
//! every reload or rollout decision and publishes it atomically.

mod backend;
mod fields;
mod hosts;
mod matching;
mod phase;
mod route;
mod snapshot;
mod sticky;
mod version;

pub use backend::{Backend, EndpointPick};
pub use fields::{as_text, FlatFields, RequestFields};
pub use hosts::{strip_port, RouteTable};
pub use matching::rule_matches;
pub use phase::{CanaryShare, Phase, PhaseTraffic, RolloutView};
pub use route::Route;
pub use snapshot::{initial_rollout, BackendCache, Resolved, RoutingSnapshot};
pub use sticky::sticky_bucket;
pub use version::{choose_version, Bucket};
