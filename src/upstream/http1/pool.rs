//! Each worker's idle connections of canaryd's engine, per endpoint: a stack (the most
//! recently returned first, the least likely to have been closed by the upstream), bounded and
//! swept by the same rules as hyper's pool (`../pool.rs`, which runs the sweep). A connection
//! is taken only if a non-blocking read finds it quiet: not closed, and no stray bytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tokio::time::Instant;

use super::Socket;
use crate::upstream::Endpoint;

struct Idle {
    socket: Socket,
    expires: Instant,
}

/// Endpoint ids are small sequential numbers: they need no hashing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ById<T> = HashMap<u64, T, BuildHasherDefault<IdHasher>>;

thread_local! {
    static IDLE: RefCell<ById<Vec<Idle>>> = RefCell::new(ById::default());
}

/// An idle, quiet, unexpired connection to the endpoint.
pub(crate) fn take(endpoint: &Endpoint) -> Option<Socket> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&endpoint.id())?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if entry.expires <= now {
                // the newest has expired, so have all the older ones
                list.clear();
                return None;
            }
            if entry.socket.is_quiet() {
                return Some(entry.socket);
            }
        }
        None
    })
}

/// Keep a connection whose exchange ended cleanly, unless the endpoint's pool is full.
pub(crate) fn put(endpoint: &Endpoint, socket: Socket) {
    let policy = endpoint.pool();
    if policy.max_idle_per_endpoint == 0 {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(endpoint.id()).or_default();
        if list.len() < policy.max_idle_per_endpoint {
            list.push(Idle {
                socket,
                expires: Instant::now() + policy.idle_timeout,
            });
        }
    });
    super::super::pool::start_sweeping();
}

/// Close this worker's connections expired by `now`, and those the upstream closed or wrote to.
pub(crate) fn sweep(now: Instant) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        for list in idle.values_mut() {
            let expired = list.iter().take_while(|e| e.expires <= now).count();
            list.drain(..expired);
            list.retain(|e| e.socket.is_quiet());
        }
        idle.retain(|_, list| !list.is_empty());
    });
}
