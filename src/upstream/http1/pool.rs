//! Each worker's idle connections of canaryd's engine, per endpoint: a stack (the most
//! recently returned first, the least likely to have been closed by the upstream), bounded and
//! swept by the same rules as hyper's pool (`../pool.rs`, which runs the sweep). A connection
//! is taken only if a non-blocking read finds it quiet: not closed, and no stray bytes.

use std::cell::RefCell;

use tokio::time::Instant;

use super::Socket;
use crate::upstream::idle::{IdleLists, Reusable};
use crate::upstream::Endpoint;

impl Reusable for Socket {
    fn reusable(&self) -> bool {
        self.is_quiet()
    }
}

thread_local! {
    static IDLE: RefCell<IdleLists<Socket>> = RefCell::new(IdleLists::default());
}

/// An idle, quiet, unexpired connection to the endpoint.
pub(crate) fn take(endpoint: &Endpoint) -> Option<Socket> {
    IDLE.with(|idle| idle.borrow_mut().take(endpoint.id(), Instant::now()))
}

/// Keep a connection whose exchange ended cleanly, unless the endpoint's pool is full.
pub(crate) fn put(endpoint: &Endpoint, socket: Socket) {
    let policy = endpoint.pool();
    if policy.max_idle_per_endpoint == 0 {
        return;
    }
    let expires = Instant::now() + policy.idle_timeout;
    IDLE.with(|idle| {
        idle.borrow_mut()
            .put(endpoint.id(), socket, policy.max_idle_per_endpoint, expires)
    });
    super::super::pool::start_sweeping();
}

/// Close this worker's connections expired by `now`, and those the upstream closed or wrote to.
pub(crate) fn sweep(now: Instant) {
    IDLE.with(|idle| idle.borrow_mut().sweep(now));
}
