//! Passive health of one endpoint: after [`FAILURES_TO_EJECT`] consecutive failures (connect
//! errors, timeouts, broken exchanges or 5xx answers) the endpoint is ejected — skipped by
//! endpoint selection — for a back-off that doubles with each ejection in a row (5 s, 10 s, …
//! capped at 5 min). When the back-off ends the endpoint is on probation: the next request it
//! gets is the probe; a success re-admits it fully, a failure ejects it again at once.
//!
//! Lock-free: a few atomics read on the request path. Time is milliseconds since the first
//! endpoint was created, so an endpoint that was never ejected costs one atomic load to check.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Consecutive failures that eject an endpoint.
pub const FAILURES_TO_EJECT: u32 = 5;
/// The first ejection's length; each further ejection in a row doubles it.
pub const BASE_EJECTION: Duration = Duration::from_secs(5);
/// The longest ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // +1 so that 0 can mean "never ejected".
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// The passive health state of one endpoint.
#[derive(Debug, Default)]
pub struct Health {
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    on_probation: AtomicBool,
}

/// What a recorded outcome did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Nothing changed.
    None,
    /// The endpoint was just ejected for this long.
    Ejected(Duration),
    /// A probe succeeded: the endpoint is back.
    Readmitted,
}

impl Health {
    /// Whether selection should skip this endpoint now.
    #[inline]
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// A request to the endpoint succeeded.
    pub fn record_success(&self) -> HealthChange {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.on_probation.swap(false, Ordering::Relaxed) {
            self.ejections.store(0, Ordering::Relaxed);
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            return HealthChange::Readmitted;
        }
        HealthChange::None
    }

    /// A request to the endpoint failed.
    pub fn record_failure(&self) -> HealthChange {
        if self.is_ejected() {
            return HealthChange::None;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let probe_failed = self.on_probation.load(Ordering::Relaxed);
        if failures < FAILURES_TO_EJECT && !probe_failed {
            return HealthChange::None;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff = BASE_EJECTION
            .saturating_mul(1 << (ejections - 1).min(10))
            .min(MAX_EJECTION);
        let until = now_ms() + u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX / 2);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.on_probation.store(true, Ordering::Relaxed);
        HealthChange::Ejected(backoff)
    }

    /// Pretend the current ejection is over (tests only: back-offs are seconds long).
    #[doc(hidden)]
    pub fn end_ejection_now(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_and_readmits_after_a_good_probe() {
        let h = Health::default();
        // Failures interrupted by a success never eject.
        for _ in 0..FAILURES_TO_EJECT - 1 {
            assert_eq!(h.record_failure(), HealthChange::None);
        }
        h.record_success();
        assert!(!h.is_ejected());
        for _ in 0..FAILURES_TO_EJECT - 1 {
            h.record_failure();
        }
        assert_eq!(h.record_failure(), HealthChange::Ejected(BASE_EJECTION));
        assert!(h.is_ejected());
        // The back-off ends: on probation, one failure ejects again, for twice as long.
        h.end_ejection_now();
        assert!(!h.is_ejected());
        assert_eq!(h.record_failure(), HealthChange::Ejected(BASE_EJECTION * 2));
        h.end_ejection_now();
        assert_eq!(h.record_success(), HealthChange::Readmitted);
        assert!(!h.is_ejected());
        // Fully back: it takes the whole run of failures again, and the back-off starts over.
        for _ in 0..FAILURES_TO_EJECT - 1 {
            assert_eq!(h.record_failure(), HealthChange::None);
        }
        assert_eq!(h.record_failure(), HealthChange::Ejected(BASE_EJECTION));
    }

    #[test]
    fn back_off_is_capped() {
        let h = Health::default();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            for _ in 0..FAILURES_TO_EJECT {
                if let HealthChange::Ejected(d) = h.record_failure() {
                    last = d;
                }
            }
            h.end_ejection_now();
        }
        assert_eq!(last, MAX_EJECTION);
    }
}
