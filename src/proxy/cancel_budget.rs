//! How many requests a client may cancel on one HTTP/2 connection: the bound on a *paced*
//! rapid reset (CVE-2023-44487).
//!
//! h2 limits resets of streams that hyper has not accepted yet (`max_pending_accept_reset_streams`)
//! and resets h2 sends itself (`max_local_error_reset_streams`). A client that resets each
//! stream just after it was accepted is counted by neither, and every such stream costs the
//! upstream a request and — the cancelled HTTP/1.1 exchange cannot be reused — a new
//! connection. canaryd therefore counts requests the client cancels before their response head
//! and closes the connection of a client that cancels more than a burst of
//! [`CancelBudget::BURST`], then one per [`CancelBudget::INTERVAL`] (a generic cell rate
//! algorithm: one atomic, no timer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The cancellations one connection has left.
#[derive(Debug)]
pub struct CancelBudget {
    start: Instant,
    /// The theoretical arrival time of the next cancellation, in ms since `start`.
    tat_ms: AtomicU64,
}

impl CancelBudget {
    /// Cancellations allowed at once. A browser cancelling type-ahead searches stays far below.
    pub const BURST: u64 = 100;
    /// After the burst, one cancellation per this interval.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    /// A full budget.
    pub fn new() -> Self {
        CancelBudget {
            start: Instant::now(),
            tat_ms: AtomicU64::new(0),
        }
    }

    /// Counts one cancelled request; false once the client is over budget.
    pub fn spend(&self) -> bool {
        let interval = Self::INTERVAL.as_millis() as u64;
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = |tat: u64| tat.max(now).saturating_add(interval);
        let previous = match self
            .tat_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| Some(next(tat)))
        {
            Ok(tat) | Err(tat) => tat,
        };
        next(previous) - now <= Self::BURST * interval
    }
}

impl Default for CancelBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_one_per_interval() {
        let budget = CancelBudget::new();
        for n in 0..CancelBudget::BURST {
            assert!(budget.spend(), "cancellation {n} of the burst refused");
        }
        assert!(
            !budget.spend(),
            "the burst is not a floor: one more is refused"
        );
        // Time refills it at one per interval.
        tokio::time::advance(CancelBudget::INTERVAL * 3).await;
        assert!(budget.spend());
        assert!(budget.spend());
        assert!(!budget.spend());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_cancelling_at_the_refill_rate_is_never_cut() {
        let budget = CancelBudget::new();
        for _ in 0..10 * CancelBudget::BURST {
            assert!(budget.spend());
            tokio::time::advance(CancelBudget::INTERVAL).await;
        }
    }
}
