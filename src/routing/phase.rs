//! The rollout phase and weight that the data plane reads for a route.

use std::fmt;

/// A route's rollout phase (docs/rollouts.md#phases).
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
    /// Promoted and still judged: all traffic to the canary, the primary still running, for
    /// `analysis.bake` (docs/rollouts.md#bake).
    Baking,
    /// Promoted: all traffic to the canary.
    Succeeded,
    /// Rolled back: no traffic to the canary at all.
    Failed,
}

impl Phase {
    /// Every phase, in the order of docs/rollouts.md#phases (used for the `canaryd_canary_phase` series).
    pub const ALL: [Phase; 9] = [
        Phase::Idle,
        Phase::Static,
        Phase::Waiting,
        Phase::Progressing,
        Phase::Paused,
        Phase::WaitingPromotion,
        Phase::Baking,
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
            Phase::Baking => "Baking",
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

/// How much of a route's traffic the canary receives by weight in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryShare {
    /// None: every request the weight decides goes to the primary.
    Nothing,
    /// The rollout's current `weight` (sticky key or random draw).
    Weighted,
    /// Everything: the canary was promoted.
    Everything,
}

/// What a phase means for the data plane: which requests may reach the canary and how
/// (`docs/routing.md#2-version`, `docs/rollouts.md#phases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTraffic {
    /// Whether `[[route.match]]` rules send matching requests where they say.
    pub match_rules_apply: bool,
    /// The share of the remaining requests the canary gets.
    pub share: CanaryShare,
    /// Whether primary-bound requests are copied to the canary (`[route.mirror]`).
    pub mirrored: bool,
}

impl Phase {
    /// The one place that decides what each phase means for traffic; exhaustive on purpose so
    /// that a new phase cannot compile without an answer here.
    pub fn traffic(self) -> PhaseTraffic {
        const NOTHING: PhaseTraffic = PhaseTraffic {
            match_rules_apply: false,
            share: CanaryShare::Nothing,
            mirrored: false,
        };
        const ANALYSED: PhaseTraffic = PhaseTraffic {
            match_rules_apply: true,
            share: CanaryShare::Weighted,
            mirrored: true,
        };
        match self {
            // A Failed canary gets nothing at all, and before the rollout starts (Waiting) it
            // gets nothing either.
            Phase::Idle | Phase::Waiting | Phase::Failed => NOTHING,
            Phase::Static | Phase::Progressing | Phase::Paused | Phase::WaitingPromotion => {
                ANALYSED
            }
            // Promoted: it already serves everything, a copy would be a duplicate.
            Phase::Baking | Phase::Succeeded => PhaseTraffic {
                match_rules_apply: true,
                share: CanaryShare::Everything,
                mirrored: false,
            },
        }
    }

    /// Whether a rollout in this phase is in flight (`Idle` and `Static` are not: a new
    /// config evaluates the start rule afresh).
    pub fn in_flight(self) -> bool {
        match self {
            Phase::Idle | Phase::Static => false,
            Phase::Waiting
            | Phase::Progressing
            | Phase::Paused
            | Phase::WaitingPromotion
            | Phase::Baking
            | Phase::Succeeded
            | Phase::Failed => true,
        }
    }
}
