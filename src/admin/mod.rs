//! The admin listener: health and readiness now; metrics, the API and the status page plug in
//! here. It runs on the control runtime, apart from the proxy workers, and nothing on a proxy
//! port reaches it.

mod server;

pub use server::{serve, AdminState};
