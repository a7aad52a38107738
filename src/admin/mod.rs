//! The admin listener (docs/operations.md#admin-api, docs/security.md#admin-api): health, readiness, the JSON API, operator
//! commands, reload, events and the status page. It runs on the control runtime, apart from the
//! proxy workers, and nothing on a proxy port reaches it.

mod api;
mod auth;
mod json;
mod routes_view;
mod server;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::analysis::AnalysisHandle;
use crate::control::{ControlHandle, Reloader};
use crate::fleet::FleetBoard;
use crate::metrics::MetricsRegistry;
use crate::vitals::Vitals;

pub use server::serve;

/// Everything the admin endpoints read or drive.
#[derive(Debug)]
pub struct AdminContext {
    /// Listeners bound and config loaded.
    pub ready: AtomicBool,
    /// Shutting down: readiness fails so load balancers stop sending.
    pub draining: AtomicBool,
    /// The routing snapshot and config.
    pub control: ControlHandle,
    /// Rollout statuses, history, events and commands.
    pub analysis: AnalysisHandle,
    /// Request counters, for `/metrics`.
    pub registry: Arc<MetricsRegistry>,
    /// `POST /api/v1/reload`.
    pub reloader: Reloader,
    /// Fleet mode: what this replica knows of its fleet (`GET /api/v1/fleet`).
    pub fleet: Option<FleetBoard>,
    /// The vital tasks: once one ended, readiness fails.
    pub vitals: Vitals,
}
