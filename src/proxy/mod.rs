//! The proxy: client connections (HTTP/1.1 and h2c), and the request phases of `forward.rs`.
//!
//! `proxy/` owns sockets and speaks hyper; below it, routing and metrics see plain
//! `http::Request`/`Response` values and snapshots.

mod body;
mod conn_timer;
mod error;
mod forward;
pub mod headers;
mod listener;
mod mirror;
mod upgrade;

pub use body::ResponseBody;
pub use conn_timer::{CountingIo, HeadTimer, ReadActivity};
pub use error::ProxyError;
pub use forward::{handle, ClientConn, ProxyShared};
pub use listener::{bind_listeners, spawn_workers, BoundListeners, RuntimeModel, WorkerSet};
