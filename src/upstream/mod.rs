//! Upstream connections: endpoints, keep-alive pools, connecting, sending one request.
//!
//! Each worker thread keeps its own pool per endpoint — idle HTTP/1.1 connections, shared
//! HTTP/2 ones (see `pool.rs`) — so taking and returning a connection never locks or crosses
//! cores. An endpoint is an address *and* its transport (`transport.rs`: protocol, TLS
//! settings), so connections verified for one route's TLS settings never serve another's.
//! Cleartext HTTP/1.1 exchanges are driven by canaryd's own engine (`http1/`) unless
//! `proxy.http1_engine = "hyper"`, TLS HTTP/1.1 by hyper's client, and HTTP/2 streams by the
//! `h2` crate from the request's own task (`h2_stream.rs`).

mod body;
mod connect;
mod endpoint;
mod failure;
mod h2_stream;
mod health;
pub(crate) mod http1;
mod idle;
mod keep_alive;
mod pool;
pub(crate) mod readiness;
mod response;
mod send;
mod tls;
mod transport;

pub use body::{BodyWatch, RequestBody};
pub use connect::ConnectError;
pub use endpoint::{Endpoint, InFlight};
pub use failure::{ConnectFailure, TlsFailure, CONNECT_FAILURES};
pub use h2_stream::H2Body;
pub use health::{Health, HealthChange};
pub use response::{ExchangeError, InformationalHook, UpgradedIo, UpstreamBody, UpstreamUpgrade};
pub use send::{acquire, AcquireError, Conn, HeadSendError, SendError};
pub use transport::Transport;
