//! The fixed-bucket request-duration histogram behind `canaryd_request_duration_seconds`.
//!
//! One per route and version. Recording is on the request path, so it is one relaxed atomic
//! increment of the bucket the latency falls in plus one relaxed atomic add to the sum: no lock,
//! no allocation. Buckets hold plain (non-cumulative) counts; the cumulative `le` counts, the
//! total and the sum in seconds are computed when Prometheus scrapes.
//!
//! This is separate from the check windows (`window.rs`): those are exact, drained per check and
//! kept only for routes under analysis; this one is coarse, never reset, and kept for every route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the finite buckets, in seconds (the `le` label values). They resolve 1 ms to
/// 10 s at roughly 2.5× steps, which is what P50/P99 panels and alerts over `histogram_quantile`
/// need; the last, implicit bucket is `+Inf`.
pub const DURATION_BUCKETS_SECONDS: [f64; FINITE_BUCKETS] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Number of finite buckets.
pub const FINITE_BUCKETS: usize = 13;

/// The same bounds in whole microseconds, the unit latencies are recorded in, so the hot path
/// compares integers.
const BOUNDS_MICROS: [u64; FINITE_BUCKETS] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Counts per bucket (finite buckets then `+Inf`) and the sum of observed latencies.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// `buckets[i]` counts latencies in `(bound[i-1], bound[i]]`; the last one counts those above
    /// every bound. Not cumulative, so an observation touches exactly one counter.
    buckets: [AtomicU64; FINITE_BUCKETS + 1],
    /// Sum of observed latencies in microseconds (u64 microseconds last 584,000 years).
    sum_micros: AtomicU64,
}

/// A histogram as read at scrape time, in Prometheus' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationSnapshot {
    /// Cumulative counts for each bound of [`DURATION_BUCKETS_SECONDS`] (`le` semantics: a
    /// latency equal to a bound counts in that bound's bucket).
    pub cumulative: [u64; FINITE_BUCKETS],
    /// Every observation: the `+Inf` bucket and `_count`.
    pub count: u64,
    /// Sum of observed latencies in seconds: `_sum`.
    pub sum_seconds: f64,
}

/// Index of the bucket a latency of `micros` belongs to: the number of bounds strictly below it.
/// Counting over a fixed 13-element array compiles to straight-line compares (vectorised on
/// x86-64), with no data-dependent branch to mispredict, unlike a binary search.
#[inline]
fn bucket_index(micros: u64) -> usize {
    BOUNDS_MICROS.iter().map(|&b| usize::from(micros > b)).sum()
}

impl DurationHistogram {
    /// Record one latency.
    #[inline]
    pub fn observe(&self, latency: Duration) {
        self.observe_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Record one latency given in microseconds (the caller often has it already).
    #[inline]
    pub fn observe_micros(&self, micros: u64) {
        self.buckets[bucket_index(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Read the histogram for exposition. Each counter is read once, relaxed, so under concurrent
    /// recording `_sum` may be a request or two ahead or behind the buckets; the buckets, `+Inf`
    /// and `_count` always agree with each other because the last two are derived from the first.
    pub fn snapshot(&self) -> DurationSnapshot {
        let mut cumulative = [0u64; FINITE_BUCKETS];
        let mut running = 0u64;
        for (i, slot) in cumulative.iter_mut().enumerate() {
            running = running.saturating_add(self.buckets[i].load(Ordering::Relaxed));
            *slot = running;
        }
        let count = running.saturating_add(self.buckets[FINITE_BUCKETS].load(Ordering::Relaxed));
        // Whole microseconds divided once, so 1500 µs reads 0.0015 exactly as printed.
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        DurationSnapshot {
            cumulative,
            count,
            sum_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_micros_match_the_bounds_in_seconds() {
        for (s, us) in DURATION_BUCKETS_SECONDS.iter().zip(BOUNDS_MICROS) {
            assert_eq!((s * 1_000_000.0).round() as u64, us);
        }
        assert!(BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bucket_edges_follow_le_semantics() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1_000), 0, "exactly 1 ms is le=0.001");
        assert_eq!(bucket_index(1_001), 1);
        assert_eq!(bucket_index(2_500), 1);
        assert_eq!(bucket_index(10_000_000), 12, "exactly 10 s is le=10");
        assert_eq!(
            bucket_index(10_000_001),
            13,
            "above every bound is +Inf only"
        );
        assert_eq!(bucket_index(u64::MAX), 13);
    }

    #[test]
    fn snapshot_is_cumulative_with_count_and_sum() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(500)); // le 0.001
        h.observe(Duration::from_millis(3)); // le 0.005
        h.observe(Duration::from_millis(3)); // le 0.005
        h.observe(Duration::from_millis(700)); // le 1
        h.observe(Duration::from_secs(30)); // +Inf
        let s = h.snapshot();
        assert_eq!(
            s.cumulative,
            [1, 1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4],
            "cumulative per bound"
        );
        assert_eq!(s.count, 5);
        assert!((s.sum_seconds - 30.7065).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
