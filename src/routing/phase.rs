//! The rollout phase and weight that the data plane reads for a route.

use std::fmt;

/// A route's rollout phase (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No canary, or the canary revision equals the primary's.
    Idle,
    /// Fixed weight, no analysis.
    Static,
    /// The confirm-rollout gate is pending.
    Waiting,
    /// Analysis is advancing the weight.
    Progressing,
    /// Weight and analysis frozen by an operator.
    Paused,
    /// The confirm-promotion gate is pending.
    WaitingPromotion,
    /// Promoted: all traffic to the canary.
    Succeeded,
    /// Rolled back: no traffic to the canary at all.
    Failed,
}

impl Phase {
    /// Every phase, in SPEC order (used for the `canaryd_canary_phase` series).
    pub const ALL: [Phase; 8] = [
        Phase::Idle,
        Phase::Static,
        Phase::Waiting,
        Phase::Progressing,
        Phase::Paused,
        Phase::WaitingPromotion,
        Phase::Succeeded,
        Phase::Failed,
    ];

    /// The exact name used in JSON, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::Static => "Static",
            Phase::Waiting => "Waiting",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::WaitingPromotion => "WaitingPromotion",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the data plane needs of a rollout: its phase and the canary's weight in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutView {
    /// Current phase.
    pub phase: Phase,
    /// Canary weight, 0..=100.
    pub weight: u8,
}
