//! Idle keep-alive connections, one pool per worker thread and endpoint.
//!
//! Thread-local on purpose: a worker takes and returns connections without a lock or a shared
//! cache line, like HAProxy's and nginx's per-worker pools. A connection returned on another
//! thread (possible with the work-stealing runtime) simply joins that thread's pool.

use std::cell::RefCell;
use std::collections::HashMap;

use hyper::client::conn::http1::SendRequest;

use super::RequestBody;

/// Idle connections kept per endpoint and worker; more are closed on return.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

type Sender = SendRequest<RequestBody>;

thread_local! {
    static IDLE: RefCell<HashMap<u64, Vec<Sender>>> = RefCell::new(HashMap::new());
}

/// Take an idle connection to this endpoint that is not known to be closed.
pub(super) fn take(endpoint_id: u64) -> Option<Sender> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&endpoint_id)?;
        while let Some(sender) = list.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    })
}

/// Return a connection whose last response completed.
pub(super) fn put(endpoint_id: u64, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(endpoint_id).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    });
}
