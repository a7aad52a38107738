//! Operator commands through etcd: any replica writes a command key, only the leader consumes
//! it (applying it and deleting the key in the same fenced transaction as the new state), and
//! the asking replica answers once the state records the command's result.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an operator asked for, as it travels (docs/fleet.md#wire-format): the lower-case name.
/// A name this build does not know (a newer member's command) is kept as said, so the leader
/// refuses it with a reason instead of leaving it queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Promote now.
    Promote,
    /// Roll back now.
    Abort,
    /// Freeze weight and analysis.
    Pause,
    /// Continue a paused rollout.
    Resume,
    /// Roll a Failed revision out again.
    Retry,
    /// Any other name.
    #[serde(untagged)]
    Unknown(String),
}

impl Operation {
    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Promote => "promote",
            Operation::Abort => "abort",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Retry => "retry",
            Operation::Unknown(name) => name,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the fleet's operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(name: &str) -> Result<Operation, UnknownOperation> {
        match name {
            "promote" => Ok(Operation::Promote),
            "abort" => Ok(Operation::Abort),
            "pause" => Ok(Operation::Pause),
            "resume" => Ok(Operation::Resume),
            "retry" => Ok(Operation::Retry),
            other => Err(UnknownOperation(other.to_owned())),
        }
    }
}

/// A command waiting under `commands/{route}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCommand {
    /// Unique id, also the key's last segment.
    pub id: String,
    /// What was asked.
    pub command: Operation,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_travels_as_its_lower_case_name_and_an_unknown_one_is_kept_as_said() {
        let command = FleetCommand {
            id: "b-1".to_owned(),
            command: Operation::Resume,
            from: "b".to_owned(),
        };
        let json = serde_json::to_string(&command).unwrap_or_default();
        assert_eq!(json, r#"{"id":"b-1","command":"resume","from":"b"}"#);
        let back: Result<FleetCommand, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(command));
        for name in ["promote", "abort", "pause", "resume", "retry"] {
            let parsed: Result<Operation, _> = name.parse();
            let read: Result<Operation, _> = serde_json::from_str(&format!("{name:?}"));
            assert_eq!(parsed.as_ref().map(Operation::as_str), Ok(name));
            assert_eq!(parsed.ok(), read.ok(), "{name}");
        }
        // A newer member's command: read, so the leader can refuse it with its name.
        let newer: Result<Operation, _> = serde_json::from_str(r#""rewind""#);
        assert_eq!(newer.ok(), Some(Operation::Unknown("rewind".to_owned())));
        assert_eq!(
            "rewind".parse::<Operation>(),
            Err(UnknownOperation("rewind".to_owned()))
        );
    }
}
