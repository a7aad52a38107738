//! The proxy: client connections (HTTP/1.1 and h2c, plain or TLS), and the request phases of `forward.rs`.
//!
//! `proxy/` owns sockets and speaks hyper; below it, routing and metrics see plain
//! `http::Request`/`Response` values and snapshots.

mod balance;
mod body;
mod cancel_budget;
mod conn_timer;
mod connection;
mod drain;
mod error;
pub(crate) mod fast;
mod forward;
mod grpc;
mod h2_idle;
pub mod headers;
mod http1_rounds;
mod informational;
mod lingering_close;
mod listener;
mod mirror;
mod rewind;
mod service;
mod tls;
mod tls_sni;
mod upgrade;
mod upstream_call;
mod validate;
mod write_through;

pub use body::ResponseBody;
pub use conn_timer::{CountingIo, HeadTimer, ReadActivity};
pub use error::ProxyError;
/// For tests that must know the fast path was taken (`tests/fast_path_diff.rs`).
#[doc(hidden)]
pub use fast::serve::served_count as fast_path_served;
pub use forward::{handle, ClientConn, ProxyShared};
/// For the fuzz targets only (`crate::fuzzing`).
#[doc(hidden)]
pub use grpc::{grpc_status, grpc_timeout};
pub use listener::{bind_listeners, spawn_workers, BoundListeners, RuntimeModel, WorkerSet};
/// For the fuzz targets only (`crate::fuzzing`).
#[doc(hidden)]
pub use rewind::Rewind;
pub use tls::{load_server_config, ClientTlsStream, TlsCerts, TlsError, ALPN_PROTOCOLS};
/// For the fuzz targets only (`crate::fuzzing`).
#[doc(hidden)]
pub use validate::malformed_head;
