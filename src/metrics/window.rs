//! Exact check windows: per-worker latency histograms and judged counts, drained by the
//! analysis loop.
//!
//! Each worker thread records into its own shard; a shard's lock is shared only with the
//! analysis loop, which takes it briefly once per check to move the shard's contents out. A
//! request is recorded entirely inside one critical section, so a drain sees it exactly once:
//! nothing is lost or counted twice at a window's edge.

use std::cell::Cell;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::connect_counts::ConnectCounts;
use crate::upstream::ConnectFailure;

/// Latencies are recorded in microseconds, 1 µs to 60 s, to 3 significant digits.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// Shards per version: workers map onto them by index; other threads share the last one.
const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(SHARDS - 1) };
}

/// Record this thread's outcomes in shard `worker` (called once by each worker thread).
pub fn set_worker_shard(worker: usize) {
    SHARD.with(|s| s.set(worker % (SHARDS - 1)));
}

/// A new, empty latency histogram (microseconds).
// hdrhistogram only rejects invalid bounds, and these are constants checked by a unit test.
#[allow(clippy::expect_used)]
pub fn new_latency_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// What one version saw since the last drain: judged requests, failures, latencies.
#[derive(Debug, Clone)]
pub struct VersionSample {
    /// Judged requests (successes and failures; clients that went away are not judged).
    pub requests: u64,
    /// 5xx answers and upstream errors.
    pub failures: u64,
    /// The failures that were failed connects, by kind.
    pub connect: ConnectCounts,
    /// Latency of judged requests, in microseconds.
    pub latency: Histogram<u32>,
}

impl Default for VersionSample {
    fn default() -> Self {
        VersionSample {
            requests: 0,
            failures: 0,
            connect: ConnectCounts::default(),
            latency: new_latency_histogram(),
        }
    }
}

impl VersionSample {
    /// Add another sample into this one.
    pub fn merge(&mut self, other: &VersionSample) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.connect.merge(&other.connect);
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// The per-worker shards of one version. Enabled only for routes that have a canary, since only
/// they are judged; each shard's histogram (about 70 KB) is allocated by the first request its
/// worker records.
#[derive(Debug, Default)]
pub struct WindowShards {
    shards: OnceLock<Box<[OnceLock<Mutex<VersionSample>>]>>,
}

impl WindowShards {
    /// Start recording (idempotent).
    pub fn enable(&self) {
        self.shards
            .get_or_init(|| (0..SHARDS).map(|_| OnceLock::new()).collect());
    }

    /// Record one judged request on this thread's shard, with the kind of its failed connect
    /// if it was one; no-op until enabled.
    #[inline]
    pub fn record(&self, failed: bool, connect: Option<ConnectFailure>, latency: Duration) {
        let Some(shards) = self.shards.get() else {
            return;
        };
        let index = SHARD.with(Cell::get);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut shard = shards[index % shards.len()]
            .get_or_init(|| Mutex::new(VersionSample::default()))
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.requests += 1;
        shard.failures += u64::from(failed);
        if let Some(failure) = connect {
            shard.connect.add(failure);
        }
        shard
            .latency
            .saturating_record(micros.clamp(LOWEST_MICROS, HIGHEST_MICROS));
    }

    /// Move everything recorded since the last drain into `into`.
    pub fn drain_into(&self, into: &mut VersionSample) {
        let Some(shards) = self.shards.get() else {
            return;
        };
        for shard in shards.iter().filter_map(OnceLock::get) {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            into.merge(&shard);
            shard.requests = 0;
            shard.failures = 0;
            shard.connect.clear();
            shard.latency.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_are_exact_and_shards_merge() {
        let shards = WindowShards::default();
        shards.record(false, None, Duration::from_millis(5));
        let mut nothing = VersionSample::default();
        shards.drain_into(&mut nothing);
        assert_eq!(nothing.requests, 0, "recording before enable is a no-op");

        shards.enable();
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let shards = &shards;
                std::thread::scope(|s| {
                    s.spawn(move || {
                        set_worker_shard(w);
                        for i in 0..1000u64 {
                            shards.record(i % 10 == 0, None, Duration::from_micros(100 + i));
                        }
                    });
                })
            })
            .collect();
        drop(handles);
        let mut window = VersionSample::default();
        shards.drain_into(&mut window);
        assert_eq!(window.requests, 4000);
        assert_eq!(window.failures, 400);
        assert_eq!(window.latency.len(), 4000);
        let p50 = window.latency.value_at_quantile(0.5);
        assert!((590..=610).contains(&p50), "{p50}");
        let mut again = VersionSample::default();
        shards.drain_into(&mut again);
        assert_eq!(again.requests, 0, "a drain empties the shards");
    }
}
