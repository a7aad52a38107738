//! Upstream connections: endpoints, keep-alive pools, connecting, sending one request.
//!
//! Each worker thread keeps its own pool per endpoint — idle HTTP/1.1 connections, shared
//! HTTP/2 ones (see `pool.rs`) — so taking and returning a connection never locks or crosses
//! cores. An endpoint is an address *and* its transport (`transport.rs`: protocol, TLS
//! settings), so connections verified for one route's TLS settings never serve another's.
//! Cleartext HTTP/1.1 exchanges are driven by canaryd's own engine (`http1/`) unless
//! `proxy.http1_engine = "hyper"`; everything else by hyper's client.

mod body;
mod connect;
mod endpoint;
mod failure;
mod health;
pub(crate) mod http1;
mod idle;
mod pool;
mod response;
mod send;
mod tls;
mod transport;

pub use body::{BodyWatch, RequestBody};
pub use connect::ConnectError;
pub use endpoint::{Endpoint, InFlight};
pub use failure::{ConnectFailure, TlsFailure, CONNECT_FAILURES};
pub use health::{Health, HealthChange};
pub use response::{ExchangeError, InformationalHook, UpgradedIo, UpstreamBody, UpstreamUpgrade};
pub use send::{acquire, AcquireError, Conn, HeadSendError, SendError};
pub use transport::Transport;
