//! The runner around the pure machine and its IO: the supervisor (`engine.rs`), one task per
//! analysed route (`route_task.rs`, and in fleet mode `fleet_route.rs`), the state file and its
//! only writer (`state_file.rs`, `persist.rs`), the webhooks (`webhook.rs`), and the
//! read-mostly view the admin API reads (`shared.rs`, `history.rs`).

pub(super) mod engine;
pub mod external;
#[cfg(feature = "fleet")]
mod fleet_route;
pub(super) mod history;
mod persist;
pub(super) mod rollout_runner;
mod route_task;
mod shared;
pub mod state_file;
#[cfg(test)]
pub(in crate::analysis) mod test_pki;
pub mod webhook;
