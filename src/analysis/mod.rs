//! Canary analysis (docs/rollouts.md): the rollout state machine, the judges, and the runner
//! around them, one layer per folder.
//!
//! - `machine/` is pure and synchronous: [`Params`] (from config) → [`Window`] (what was
//!   measured) → [`Rollout`] ([`Rollout::gates`], [`Rollout::check`], [`Rollout::confirm`],
//!   commands) → [`Decision`] and [`Event`]s out.
//! - `judge/` is pure arithmetic on what was measured: the window, the mergeable
//!   [`StepEvidence`], the threshold and sequential judges.
//! - `runner/` drives the machine: [`RolloutRunner`] (`rollout_runner.rs`) is the one pure
//!   runner every way a rollout runs follows (the local route task, the fleet route task,
//!   `canaryd simulate`); around it the IO: `engine.rs` supervises one `route_task.rs` per
//!   analysed route, `persist.rs` is the state file's only writer (`state_file.rs`),
//!   `webhook.rs` calls hooks.

mod judge;
mod machine;
mod runner;

#[cfg(test)]
mod tests;

pub use judge::evidence::{Counts, Drained, ExternalCount, LatencyTest, SlowCount, StepEvidence};
pub use judge::external::{ExternalReading, ExternalVerdict, Reading};
pub use judge::sequential::{binomial_llr, canary_share, test_count, Bounds};
pub use judge::window::{VersionWindow, Window, WindowError};
pub use judge::{
    judge, thousands, Failure, Judgement, SequentialJudgement, TestName, TestResult, Verdict,
};
pub use machine::check::NothingPending;
pub use machine::commands::{Command, CommandError};
pub use machine::decision::{Confirm, Decision, GateAnswers, Hold, RollbackReason};
pub use machine::events::{rfc3339, unix_seconds, Event, EventLog, Severity, EVENT_LOG_CAPACITY};
pub use machine::params::{Hooks, Params, Strategy};
pub use machine::report::{CheckOutcome, CheckReport, EvidenceReport, MetricReport, VersionReport};
pub use machine::rollout::{FinishOutcome, Finished, ResumeTo, Rollout};
pub use machine::status::RolloutStatus;
pub use runner::engine::{start, AnalysisHandle, EngineError, Prepared};
/// For the fuzz targets only (`crate::fuzzing`).
#[doc(hidden)]
pub use runner::external::{json_value, prometheus_value};
pub use runner::history::{HistoryPoint, HistoryVersion, HISTORY_CAPACITY};
pub use runner::rollout_runner::{Due, Now, Restart, RolloutRunner, Step, WATCH_EVERY};
pub use runner::{state_file, webhook};
