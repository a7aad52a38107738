//! A route's fleet state: the rollout as the leader last wrote it, with the term that wrote it,
//! the analysis window the evidence is counted for, and the results of recent commands. One key
//! per route, JSON. Only the leader writes it, and only in a transaction that compares the
//! leader key's `create_revision` (the term) and this key's `mod_revision`.

use serde::{Deserialize, Serialize};

use super::commands::CommandResult;

/// `state/{route}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteState {
    /// The rollout (the analysis's own state-file entry for the route).
    pub rollout: serde_json::Value,
    /// The term (leader key `create_revision`) of the write.
    pub term: i64,
    /// The leader that wrote it.
    pub writer: String,
    /// The analysis window evidence is counted for; the leader bumps it whenever a check
    /// concludes a window, and replicas then start counting afresh.
    pub window: u64,
    /// The analysis's evidence period: bumped whenever a decision restarts the judge's
    /// cumulative evidence; replicas then clear theirs.
    #[serde(default)]
    pub evidence: u64,
    /// The canary weight of `rollout` as the data plane applies it (for the history and tools).
    pub weight: u8,
    /// The phase of `rollout`.
    pub phase: String,
    /// Results of the last commands, newest last.
    #[serde(default)]
    pub commands: Vec<CommandResult>,
    /// The events of this write (the analysis's serialised events), for every member to show
    /// in its event log; only the leader calls the webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
}
