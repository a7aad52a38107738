//! One worker's idle HTTP/1.1 connections per endpoint, for both clients (hyper's in
//! `pool.rs`, canaryd's engine in `http1/pool.rs`): each endpoint's list is a stack, the most
//! recently returned connection taken first (the least likely to have been closed by the
//! upstream), so it is ordered oldest first and expiry only looks at its front.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tokio::time::Instant;

/// A kept connection that can tell whether it may still carry a request.
pub(super) trait Reusable {
    /// Not closed by the upstream, and (where the client can see it) nothing unasked for read.
    fn reusable(&self) -> bool;
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

struct Idle<C> {
    conn: C,
    /// When it is closed if still idle.
    expires: Instant,
}

/// Idle connections by endpoint id.
pub(super) struct IdleLists<C> {
    by_endpoint: HashMap<u64, Vec<Idle<C>>, BuildHasherDefault<IdHasher>>,
}

impl<C> Default for IdleLists<C> {
    fn default() -> Self {
        Self {
            by_endpoint: HashMap::default(),
        }
    }
}

impl<C: Reusable> IdleLists<C> {
    /// The most recent reusable, unexpired connection to the endpoint; the unusable ones met on
    /// the way are closed (dropped).
    pub(super) fn take(&mut self, endpoint: u64, now: Instant) -> Option<C> {
        let list = self.by_endpoint.get_mut(&endpoint)?;
        while let Some(entry) = list.pop() {
            if entry.expires <= now {
                // the newest has expired, so have all the older ones: close them all
                list.clear();
                return None;
            }
            if entry.conn.reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keep `conn` until `expires`, unless the endpoint already has `max` idle connections
    /// (then it is closed).
    pub(super) fn put(&mut self, endpoint: u64, conn: C, max: usize, expires: Instant) {
        let list = self.by_endpoint.entry(endpoint).or_default();
        if list.len() < max {
            list.push(Idle { conn, expires });
        }
    }

    /// Close the connections expired by `now` and those no longer reusable.
    pub(super) fn sweep(&mut self, now: Instant) {
        for list in self.by_endpoint.values_mut() {
            let expired = list.iter().take_while(|e| e.expires <= now).count();
            list.drain(..expired);
            list.retain(|e| e.conn.reusable());
        }
        self.by_endpoint.retain(|_, list| !list.is_empty());
    }
}
