//! Routing a request (SPEC section 3): which route, which version, which endpoint.
//!
//! Everything here works on plain data — a [`RoutingSnapshot`] and an `http::HeaderMap` — so it
//! is tested without sockets. A snapshot is immutable; [`crate::control`] builds a new one for
//! every reload or rollout decision and publishes it atomically.

mod backend;
mod hosts;
mod matching;
mod phase;
mod route;
mod snapshot;
mod sticky;
mod version;

pub use backend::{Backend, EndpointPick};
pub use hosts::{strip_port, RouteTable};
pub use matching::rule_matches;
pub use phase::{CanaryShare, Phase, PhaseTraffic, RolloutView};
pub use route::Route;
pub use snapshot::{initial_rollout, BackendCache, Resolved, RoutingSnapshot};
pub use sticky::sticky_bucket;
pub use version::{choose_version, Bucket};
