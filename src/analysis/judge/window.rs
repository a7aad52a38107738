//! The analysis window: judged requests of each version since the last concluded check.
//!
//! The data plane records every finished request somewhere cheap; the analysis runner folds
//! those records into a [`Window`] and hands it to [`crate::analysis::Rollout::check`]. Only *judged*
//! outcomes belong here (success or failure): a client that went away is neither, and the caller
//! leaves it out.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::ConnectCounts;

/// Smallest latency the histogram tells apart: 1 µs.
const LOWEST_MICROS: u64 = 1;
/// Largest latency the histogram tracks: 60 s. Slower requests are clamped to this, which is
/// far beyond any sensible `request-duration` threshold, so the verdict is unaffected.
const HIGHEST_MICROS: u64 = 60_000_000;
/// Three significant digits: quantiles are exact to 0.1%.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The histogram could not be created (only with impossible bounds; kept typed so that no
/// constructor here can panic).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the latency histogram: {0}")]
pub struct WindowError(#[from] hdrhistogram::CreationError);

/// One version's judged requests in a window.
#[derive(Debug, Clone)]
pub struct VersionWindow {
    /// Judged requests: successes plus failures.
    pub requests: u64,
    /// Failures among them (5xx, and 502/504 the proxy answered for a broken upstream).
    pub failures: u64,
    /// The failures that were failed connects, by kind (what a rollback reason names).
    pub connect: ConnectCounts,
    /// Latency of every judged request, in microseconds, 1 µs ..= 60 s, 3 significant digits.
    pub latency: Histogram<u64>,
}

// === impl VersionWindow ===

impl VersionWindow {
    /// An empty window.
    ///
    /// Fails only if the constant histogram bounds were invalid; create windows once and
    /// [`clear`](Self::clear) them between checks instead of re-creating them.
    pub fn new() -> Result<Self, WindowError> {
        let latency =
            Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)?;
        Ok(VersionWindow {
            requests: 0,
            failures: 0,
            connect: ConnectCounts::default(),
            latency,
        })
    }

    /// Count one judged request.
    pub fn record(&mut self, success: bool, latency: Duration) {
        self.requests += 1;
        if !success {
            self.failures += 1;
        }
        // Saturating: sub-microsecond answers count as 1 µs and anything beyond 60 s as 60 s,
        // rather than losing the sample.
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(LOWEST_MICROS));
    }

    /// Share of judged requests that succeeded, in percent; `None` without requests, because
    /// no data is never a success rate of 100%.
    pub fn success_rate(&self) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let successes = self.requests.saturating_sub(self.failures);
        // Multiply before dividing so that e.g. 99 of 100 is exactly 99.0 and compares equal to
        // a threshold of 99.
        Some(successes as f64 * 100.0 / self.requests as f64)
    }

    /// The latency at quantile `q` (0..=1); `None` without recorded latencies.
    ///
    /// Returns the lower bound of the histogram bucket holding the quantile, so a request
    /// exactly at a threshold is not failed by the histogram's 0.1% rounding.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.latency.is_empty() {
            return None;
        }
        let micros = self
            .latency
            .lowest_equivalent(self.latency.value_at_quantile(q));
        Some(Duration::from_micros(micros))
    }

    /// Add another window of the same version (e.g. one per worker thread) into this one.
    pub fn merge(&mut self, other: &VersionWindow) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.connect.merge(&other.connect);
        // Re-record bucket by bucket rather than `Histogram::add`, which is fallible; both
        // histograms have the same bounds so nothing is clamped.
        for bucket in other.latency.iter_recorded() {
            self.latency
                .saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value());
        }
    }

    /// Forget everything, keeping the histogram's allocation.
    pub fn clear(&mut self) {
        self.requests = 0;
        self.failures = 0;
        self.connect.clear();
        // Resetting zeroes every bucket; an empty histogram (the sequential judge's windows in
        // `canaryd simulate`) has nothing to zero.
        if !self.latency.is_empty() {
            self.latency.reset();
        }
    }
}

/// Both versions' judged requests since the last concluded check.
#[derive(Debug, Clone)]
pub struct Window {
    /// The primary's requests.
    pub primary: VersionWindow,
    /// The canary's requests (including mirrored ones in blue/green).
    pub canary: VersionWindow,
    /// How long the window has been accumulating (reported as `window_seconds`).
    pub duration: Duration,
}

// === impl Window ===

impl Window {
    /// An empty window.
    pub fn new() -> Result<Self, WindowError> {
        Ok(Window {
            primary: VersionWindow::new()?,
            canary: VersionWindow::new()?,
            duration: Duration::ZERO,
        })
    }

    /// Start a new window after a concluded check.
    pub fn clear(&mut self) {
        self.primary.clear();
        self.canary.clear();
        self.duration = Duration::ZERO;
    }
}
