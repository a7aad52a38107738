//! Fleet mode (`docs/fleet.md`): any number of replicas run one rollout per analysed route
//! together, through etcd. One elected leader judges the fleet's merged evidence and writes
//! each route's state in a fenced transaction; every replica (leader included) applies the
//! state it watches by sending the same rollout message to its control task.
//!
//! `view.rs` (what the admin API and metrics show) is part of every build; everything that
//! talks to etcd needs the `fleet` cargo feature.

pub mod view;

#[cfg(feature = "fleet")]
mod client;
#[cfg(feature = "fleet")]
mod commands;
#[cfg(feature = "fleet")]
mod evidence;
#[cfg(feature = "fleet")]
mod handle;
#[cfg(feature = "fleet")]
pub(crate) mod keys;
#[cfg(all(test, feature = "fleet"))]
mod memory;
#[cfg(feature = "fleet")]
mod mirror;
#[cfg(feature = "fleet")]
mod session;
#[cfg(feature = "fleet")]
mod state;
#[cfg(feature = "fleet")]
mod store;

#[cfg(feature = "fleet")]
pub use commands::{new_command_id, CommandResult, FleetCommand, Operation, UnknownOperation};
#[cfg(feature = "fleet")]
pub use evidence::{Counts, MergedEvidence, StepEvidence};
#[cfg(feature = "fleet")]
pub use handle::{start, FleetError, FleetHandle};
#[cfg(all(test, feature = "fleet"))]
pub use memory::{MemoryStore, StateWrite};
#[cfg(feature = "fleet")]
pub use mirror::Mirror;
#[cfg(feature = "fleet")]
pub use session::Session;
#[cfg(feature = "fleet")]
pub use state::RouteState;

pub use view::{FleetBoard, FleetView, MemberView, RouteFleet};

/// The version of what fleet members write to each other (docs/fleet.md#wire-format). 2: the
/// judge's evidence is the analysis's typed `StepEvidence`, command refusals carry the phase
/// that refused them, and the drift hash is over canonical JSON.
pub const WIRE_VERSION: u32 = 2;

/// A stable hash of a route's analysis settings (FNV-1a, 64 bit, hex): the same settings give the
/// same hash in every replica of one build, which is all drift detection needs.
pub fn settings_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
