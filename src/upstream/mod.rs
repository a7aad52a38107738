//! Upstream connections: endpoints, keep-alive pools, connecting, sending one request.
//!
//! Each worker thread keeps its own pool per endpoint — idle HTTP/1.1 connections, shared
//! HTTP/2 ones (see `pool.rs`) — so taking and returning a connection never locks or crosses
//! cores. An endpoint is an address *and* its transport (`transport.rs`: protocol, TLS
//! settings), so connections verified for one route's TLS settings never serve another's.

mod body;
mod connect;
mod endpoint;
mod failure;
mod health;
mod pool;
mod send;
mod tls;
mod transport;

pub use body::{BodyWatch, RequestBody};
pub use connect::ConnectError;
pub use endpoint::{Endpoint, InFlight};
pub use failure::{ConnectFailure, TlsFailure, CONNECT_FAILURES};
pub use health::{Health, HealthChange};
pub use send::{acquire, AcquireError, Conn, SendError};
pub use transport::Transport;
