//! Operator commands through etcd: any replica writes a command key, only the leader consumes
//! it (applying it and deleting the key in the same fenced transaction as the new state), and
//! the asking replica answers once the state records the command's result.

use serde::{Deserialize, Serialize};

/// A command waiting under `commands/{route}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCommand {
    /// Unique id, also the key's last segment.
    pub id: String,
    /// `promote`, `abort`, `pause`, `resume` or `retry`.
    pub command: String,
    /// The replica that was asked.
    pub from: String,
}

/// What the leader did with a command, kept in the route's state for the asker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub id: String,
    /// `None`: applied; else why it was refused (e.g. "cannot promote: route is Failed").
    pub refused: Option<String>,
    /// The phase that refused it (e.g. `Failed`), when the phase was the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_in: Option<String>,
}

/// A fresh command id: replica, time and a counter, unique without coordination.
pub fn new_command_id(replica: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{replica}-{nanos}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
