//! The rollout state machine (docs/rollouts.md): pure and synchronous, no IO and no clock
//! reads. `rollout.rs` holds the persisted state and its transitions, `check.rs` one check,
//! `commands.rs` the operator commands, `gates.rs` which webhooks a check asks,
//! `decision.rs` what a check decided, `events.rs` what it says about it.

pub(super) mod check;
pub(super) mod commands;
pub(super) mod decision;
pub(super) mod events;
pub(super) mod gates;
pub(super) mod params;
pub(super) mod phase_serde;
pub(super) mod report;
pub(super) mod rollout;
pub(super) mod status;
