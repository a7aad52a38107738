//! Upstream connections: endpoints, keep-alive pools, connecting, sending one request.
//!
//! Each worker thread keeps its own pool of idle HTTP/1.1 connections per endpoint (see
//! `pool.rs`), so taking and returning a connection never locks or crosses cores.

mod body;
mod connect;
mod endpoint;
mod health;
mod pool;
mod send;

pub use body::{BodyWatch, RequestBody};
pub use endpoint::{Endpoint, InFlight};
pub use health::{Health, HealthChange};
pub use send::{acquire, AcquireError, Conn, SendError};
