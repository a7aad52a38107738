//! Idle keep-alive connections, one pool per worker thread and endpoint.
//!
//! Thread-local on purpose: a worker takes and returns connections without a lock or a shared
//! cache line, like HAProxy's and nginx's per-worker pools. A connection returned on another
//! thread (possible with the work-stealing runtime) simply joins that thread's pool.
//!
//! Bounded by the endpoint's pool bounds (`proxy.pool_max_idle_per_endpoint`,
//! `proxy.pool_idle_timeout`, docs/configuration.md#keys-and-defaults): a connection returned to
//! a full pool is closed, and a sweep task per worker closes the ones idle for too long. Each
//! list is a stack (the most recently returned connection is taken first, as it is the least
//! likely to have been closed by the upstream), so it is ordered oldest first and a sweep only
//! looks at its front.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use super::{Endpoint, RequestBody};

/// How often a worker's sweep looks for connections idle longer than their endpoint's timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Sender = SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    /// When it is closed if still idle.
    expires: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<u64, Vec<Idle>>> = RefCell::new(HashMap::new());
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Take an idle connection to this endpoint that is neither known to be closed nor expired.
pub(super) fn take(endpoint: &Endpoint) -> Option<Sender> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&endpoint.id())?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            if entry.expires <= now {
                // the newest has expired, so have all the older ones: close them all
                list.clear();
                return None;
            }
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    })
}

/// Return a connection whose last response completed; it is closed (dropped) instead if the
/// endpoint's pool on this worker is full.
pub(super) fn put(endpoint: &Endpoint, sender: Sender) {
    let policy = endpoint.pool();
    if sender.is_closed() || policy.max_idle_per_endpoint == 0 {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(endpoint.id()).or_default();
        if list.len() < policy.max_idle_per_endpoint {
            list.push(Idle {
                sender,
                expires: Instant::now() + policy.idle_timeout,
            });
        }
    });
    start_sweeping();
}

/// Start this worker's sweep task once, from inside its runtime.
fn start_sweeping() {
    if SWEEPING.with(Cell::get) {
        return;
    }
    // Outside a runtime (a connection dropped during shutdown) there is nothing to sweep for.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    SWEEPING.with(|s| s.set(true));
    runtime.spawn(async {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sweep(Instant::now());
        }
    });
}

/// Close this worker's connections that expired by `now` (and those closed by the upstream).
fn sweep(now: Instant) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        for list in idle.values_mut() {
            let expired = list.iter().take_while(|e| e.expires <= now).count();
            list.drain(..expired);
            list.retain(|e| !e.sender.is_closed());
        }
        idle.retain(|_, list| !list.is_empty());
    });
}
