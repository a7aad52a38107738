//! canaryd: an HTTP reverse proxy that does progressive delivery by itself.
//!
//! Data flows one way: [`proxy`] (listener, request phases) → [`routing`] (route, version,
//! endpoint) → [`upstream`] (pool, connect) → response, and every finished request is reported
//! once to [`metrics`]. [`control`] is the single writer of the routing snapshot; [`config`]
//! builds immutable configuration and knows nothing of the others.

pub mod admin;
pub mod analysis;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod process_clock;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod simulate;
pub mod upstream;
pub mod vitals;
