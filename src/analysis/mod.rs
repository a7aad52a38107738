//! Canary analysis (docs/rollouts.md): the rollout state machine, and the runner around it.
//!
//! The state machine is pure and synchronous: [`Params`] (from config) → [`Window`] (what was
//! measured) → [`Rollout`] ([`Rollout::gates`], [`Rollout::check`], [`Rollout::confirm`],
//! commands) → [`Decision`] and [`Event`]s out. The runner owns the clock, the webhooks, the
//! windows and the state file: `engine.rs` supervises one `route_task.rs` per analysed route,
//! `persist.rs` is the state file's only writer (`state_file.rs`), `webhook.rs` calls hooks.

mod check;
mod commands;
mod decision;
mod engine;
mod events;
mod evidence;
#[cfg(feature = "fleet")]
mod fleet_route;
mod gates;
mod history;
mod judge;
mod params;
mod persist;
mod phase_serde;
mod report;
mod rollout;
mod route_task;
mod shared;
pub mod state_file;
mod status;
pub mod webhook;
mod window;

#[cfg(test)]
mod tests;

pub use check::NothingPending;
pub use commands::{Command, CommandError};
pub use decision::{Confirm, Decision, GateAnswers, Hold, RollbackReason};
pub use engine::{start, AnalysisHandle, EngineError, Prepared};
pub use events::{rfc3339, unix_seconds, Event, EventLog, Severity, EVENT_LOG_CAPACITY};
pub use evidence::{Counts, Drained, LatencyTest, SlowCount, StepEvidence};
pub use history::{HistoryPoint, HistoryVersion, HISTORY_CAPACITY};
pub use judge::sequential::{binomial_llr, canary_share, test_count, Bounds};
pub use judge::{
    judge, thousands, Failure, Judgement, SequentialJudgement, TestName, TestResult, Verdict,
};
pub use params::{Hooks, Params, Strategy};
pub use report::{CheckOutcome, CheckReport, EvidenceReport, MetricReport, VersionReport};
pub use rollout::{FinishOutcome, Finished, ResumeTo, Rollout};
pub use status::RolloutStatus;
pub use window::{VersionWindow, Window, WindowError};
