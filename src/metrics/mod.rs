//! Measurement: the per-request outcome hook and the counters behind it.
//!
//! Every finished request is reported exactly once through [`RouteMetrics::record`]. The hook is
//! allocation-free and lock-free: handles are resolved once per routing snapshot, so the request
//! path only touches atomics. The retry budget (`retry_budget.rs`) lives here too, because its
//! deposits are these counters: it adds nothing to a request that is not retried.

mod connect_counts;
mod duration;
mod exposition;
mod outcome;
mod registry;
mod retry_budget;
mod window;

pub use connect_counts::ConnectCounts;
pub use duration::{DurationHistogram, DurationSnapshot, DURATION_BUCKETS_SECONDS, FINITE_BUCKETS};
pub use exposition::{
    render, ExpositionInput, LastCheckInput, RouteInput, VersionCheck, CONTENT_TYPE,
};
pub use outcome::{
    Answer, Outcome, OutcomeClass, RouteMetrics, UpstreamErrorKind, VersionMetrics, OUTCOMES,
};
pub use registry::{MetricsRegistry, ProcessStats};
pub use retry_budget::{RetryBudget, RetryOutcome, WINDOW_SECS as RETRY_BUDGET_WINDOW_SECS};
pub use window::{new_latency_histogram, set_worker_shard, VersionSample, WindowShards};
