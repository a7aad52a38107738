//! Latency models for `canaryd simulate --canary-latency`: a fixed value (`50ms`), an
//! exponential with a mean (`exp:50ms`), or a mix of a fast and a slow value (`mix:50ms,900ms,0.015`
//! = 1.5% of requests take 900 ms). Each knows its tail `P(latency > x)`, so slow requests are
//! drawn as one binomial count per tick instead of one sample per request.

use std::str::FromStr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Binomial, Distribution};

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Every request takes this long.
    Fixed(Duration),
    /// Exponentially distributed with this mean.
    Exponential(Duration),
    /// `share` of requests take `slow`, the others `fast`.
    Mix {
        /// The usual latency.
        fast: Duration,
        /// The latency of the slow ones.
        slow: Duration,
        /// The share of slow ones, 0..=1.
        share: f64,
    },
}

/// A latency model that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid latency {0:?}: write 50ms, exp:50ms or mix:50ms,900ms,0.015")]
pub struct LatencyError(String);

impl FromStr for Latency {
    type Err = LatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LatencyError(s.to_owned());
        let duration = |d: &str| humantime::parse_duration(d.trim()).map_err(|_| bad());
        if let Some(mean) = s.strip_prefix("exp:") {
            let mean = duration(mean)?;
            return if mean.is_zero() {
                Err(bad())
            } else {
                Ok(Latency::Exponential(mean))
            };
        }
        if let Some(rest) = s.strip_prefix("mix:") {
            let parts: Vec<&str> = rest.split(',').collect();
            let [fast, slow, share] = parts.as_slice() else {
                return Err(bad());
            };
            let share: f64 = share.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&share) {
                return Err(bad());
            }
            return Ok(Latency::Mix {
                fast: duration(fast)?,
                slow: duration(slow)?,
                share,
            });
        }
        Ok(Latency::Fixed(duration(s)?))
    }
}

impl Latency {
    /// `P(latency > x)`.
    pub fn tail(&self, x: Duration) -> f64 {
        match *self {
            Latency::Fixed(d) => f64::from(u8::from(d > x)),
            Latency::Exponential(mean) => (-x.as_secs_f64() / mean.as_secs_f64()).exp(),
            Latency::Mix { fast, slow, share } => {
                f64::from(u8::from(slow > x)) * share
                    + f64::from(u8::from(fast > x)) * (1.0 - share)
            }
        }
    }

    /// How many of `n` requests take longer than `x`.
    pub fn slower_than(&self, n: u64, x: Duration, rng: &mut SmallRng) -> u64 {
        binomial(n, self.tail(x), rng)
    }

    /// `n` latencies, as `(microseconds, count)` pairs.
    pub fn sample(&self, n: u64, rng: &mut SmallRng, mut record: impl FnMut(u64, u64)) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        match *self {
            Latency::Fixed(d) => record(micros(d), n),
            Latency::Mix { fast, slow, share } => {
                let slow_n = binomial(n, share, rng);
                record(micros(slow), slow_n);
                record(micros(fast), n - slow_n);
            }
            Latency::Exponential(mean) => {
                for _ in 0..n {
                    let u: f64 = rng.random();
                    let seconds = -mean.as_secs_f64() * (1.0 - u).ln();
                    record(micros(Duration::from_secs_f64(seconds.min(60.0))), 1);
                }
            }
        }
    }
}

/// A binomial draw; `p` outside (0, 1) is the certain outcome.
pub(super) fn binomial(n: u64, p: f64, rng: &mut SmallRng) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    match Binomial::new(n, p) {
        Ok(d) => d.sample(rng),
        Err(_) => 0,
    }
}
