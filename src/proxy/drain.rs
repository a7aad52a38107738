//! The open client connections of one worker, so shutdown can wait for them to finish (within
//! `drain_timeout`) after asking each to close gracefully.
//!
//! hyper-util's `GracefulShutdown` does the same but owns the connection future, which leaves
//! no way to also close it for being idle (see `h2_idle.rs`); this is the counting half of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts open connections; [`OpenConnections::all_closed`] waits for zero.
#[derive(Debug, Default)]
pub struct OpenConnections {
    open: AtomicUsize,
    changed: Notify,
}

impl OpenConnections {
    /// One more open connection, until the returned guard is dropped.
    pub fn opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// How many are open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let changed = self.changed.notified();
            if self.count() == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// One open connection; dropping it closes it in the count.
#[derive(Debug)]
pub struct OpenConnection(Arc<OpenConnections>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}
