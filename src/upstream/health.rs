//! Passive health of one endpoint: after `ejection_failures` consecutive failures (connect
//! errors, timeouts, broken exchanges or 5xx answers; default 5) the endpoint is ejected —
//! skipped by endpoint selection — for a back-off that doubles with each ejection in a row
//! (`ejection_base_time`, twice that, … capped at `ejection_max_time`; default 5 s … 5 min).
//! When the back-off ends the endpoint is on probation: the next request it gets is the probe; a
//! success re-admits it fully, a failure ejects it again at once. The policy is read from the
//! current config at each outcome, so a reload changes it for endpoints already known.
//!
//! Lock-free: a few atomics read on the request path. Time is milliseconds since the first
//! endpoint was created, so an endpoint that was never ejected costs one atomic load to check.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

use crate::config::EjectionConfig;
use crate::process_clock::since_start;

fn now_ms() -> u64 {
    // +1 so that 0 can mean "never ejected".
    u64::try_from(since_start().as_millis()).unwrap_or(u64::MAX) + 1
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
    pub fn record_failure(&self, policy: &EjectionConfig) -> HealthChange {
        if policy.failures == 0 || self.is_ejected() {
            return HealthChange::None;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let probe_failed = self.on_probation.load(Ordering::Relaxed);
        if failures < policy.failures && !probe_failed {
            return HealthChange::None;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff = policy
            .base
            .saturating_mul(1 << (ejections - 1).min(10))
            .min(policy.max);
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

    const P: EjectionConfig = EjectionConfig {
        failures: 5,
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
    };

    #[test]
    fn ejects_after_consecutive_failures_and_readmits_after_a_good_probe() {
        let h = Health::default();
        // Failures interrupted by a success never eject.
        for _ in 0..P.failures - 1 {
            assert_eq!(h.record_failure(&P), HealthChange::None);
        }
        h.record_success();
        assert!(!h.is_ejected());
        for _ in 0..P.failures - 1 {
            h.record_failure(&P);
        }
        assert_eq!(h.record_failure(&P), HealthChange::Ejected(P.base));
        assert!(h.is_ejected());
        // The back-off ends: on probation, one failure ejects again, for twice as long.
        h.end_ejection_now();
        assert!(!h.is_ejected());
        assert_eq!(h.record_failure(&P), HealthChange::Ejected(P.base * 2));
        h.end_ejection_now();
        assert_eq!(h.record_success(), HealthChange::Readmitted);
        assert!(!h.is_ejected());
        // Fully back: it takes the whole run of failures again, and the back-off starts over.
        for _ in 0..P.failures - 1 {
            assert_eq!(h.record_failure(&P), HealthChange::None);
        }
        assert_eq!(h.record_failure(&P), HealthChange::Ejected(P.base));
    }

    #[test]
    fn back_off_is_capped() {
        let h = Health::default();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            for _ in 0..P.failures {
                if let HealthChange::Ejected(d) = h.record_failure(&P) {
                    last = d;
                }
            }
            h.end_ejection_now();
        }
        assert_eq!(last, P.max);
    }

    #[test]
    fn zero_failures_never_ejects_and_the_policy_is_read_per_outcome() {
        let h = Health::default();
        let off = EjectionConfig { failures: 0, ..P };
        for _ in 0..100 {
            assert_eq!(h.record_failure(&off), HealthChange::None);
        }
        assert!(!h.is_ejected());
        let quick = EjectionConfig {
            failures: 2,
            base: Duration::from_secs(1),
            max: Duration::from_secs(2),
        };
        assert_eq!(h.record_failure(&quick), HealthChange::None);
        assert_eq!(
            h.record_failure(&quick),
            HealthChange::Ejected(Duration::from_secs(1))
        );
        h.end_ejection_now();
        assert_eq!(
            h.record_failure(&quick),
            HealthChange::Ejected(Duration::from_secs(2))
        );
        h.end_ejection_now();
        assert_eq!(
            h.record_failure(&quick),
            HealthChange::Ejected(Duration::from_secs(2))
        );
    }
}
