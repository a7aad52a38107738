//! [`StepEvidence`]: what the sequential judge decides on — cumulative counts of both versions
//! since the evidence began (`docs/rollouts.md#the-sequential-judge`).
//!
//! Plain and mergeable on purpose: the rollout runner adds every drain of the data plane's
//! windows (at every check and watch), `canaryd simulate` adds drawn counts through the same
//! [`Drained`] trait,
//! and several replicas' evidence can be summed with [`StepEvidence::merge`] and judged as one.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::analysis::judge::window::VersionWindow;
use crate::config::MetricCheck;
use crate::metrics::{new_latency_histogram, VersionSample};

/// Judged requests and failures of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Judged requests.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
}

/// Which latency test a [`SlowCount`] feeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LatencyTest {
    /// Slower than the metric's `threshold`, against `1 − quantile`.
    Absolute,
    /// Slower than `max_ratio` × the primary's `quantile`, canary against primary.
    Ratio {
        /// `max_ratio`.
        max_ratio: f64,
        /// `quantile`.
        quantile: f64,
    },
}

/// The events a count-form external metric read since the evidence began
/// (`docs/rollouts.md#external-metrics`): the sums of its `failures` and `total` queries at
/// every check, rounded to whole events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCount {
    /// The metric's `name`.
    pub name: String,
    /// Failed events.
    pub failures: u64,
    /// All events.
    pub total: u64,
}

/// Requests of each version slower than `above`, counted since `above` was fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowCount {
    /// The test this counter feeds.
    pub test: LatencyTest,
    /// The latency a request must exceed to count as slow; `None` until a comparative test's
    /// latency is fixed from the primary (nothing is counted before). Whole microseconds on
    /// the wire and in the state file.
    #[serde(rename = "above_micros", with = "micros")]
    pub above: Option<Duration>,
    /// Primary requests counted.
    pub primary_requests: u64,
    /// Primary requests slower than `above`.
    pub primary_slow: u64,
    /// Canary requests counted.
    pub canary_requests: u64,
    /// Canary requests slower than `above`.
    pub canary_slow: u64,
}

/// One drain of one version's measurements, however they were obtained.
pub trait Drained {
    /// Judged requests.
    fn requests(&self) -> u64;
    /// Failures among them.
    fn failures(&self) -> u64;
    /// How many of the requests took longer than `latency`.
    fn slower_than(&mut self, latency: Duration) -> u64;
    /// Add the latencies to `into` (only while a comparative latency is being fixed).
    fn latencies_into(&mut self, into: &mut Histogram<u32>);
    /// Add this drain to a check window: counts, and latencies where a judge reads them.
    fn add_to_window(&mut self, window: &mut VersionWindow);
}

impl Drained for VersionSample {
    fn requests(&self) -> u64 {
        self.requests
    }

    fn failures(&self) -> u64 {
        self.failures
    }

    fn slower_than(&mut self, latency: Duration) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        // The bucket holding `latency` counts as not slower, as in the threshold judge: the
        // histogram's rounding never fails a request that took exactly the threshold.
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let at_most = self.latency.count_between(0, micros);
        self.latency.len().saturating_sub(at_most)
    }

    fn latencies_into(&mut self, into: &mut Histogram<u32>) {
        let _ = into.add(&self.latency);
    }

    fn add_to_window(&mut self, window: &mut VersionWindow) {
        window.requests += self.requests;
        window.failures += self.failures;
        window.connect.merge(&self.connect);
        for bucket in self.latency.iter_recorded() {
            window.latency.saturating_record_n(
                bucket.value_iterated_to(),
                u64::from(bucket.count_at_value()),
            );
        }
    }
}

impl Drained for VersionWindow {
    fn requests(&self) -> u64 {
        self.requests
    }

    fn failures(&self) -> u64 {
        self.failures
    }

    fn slower_than(&mut self, latency: Duration) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let at_most = self.latency.count_between(0, micros);
        self.latency.len().saturating_sub(at_most)
    }

    fn latencies_into(&mut self, into: &mut Histogram<u32>) {
        for bucket in self.latency.iter_recorded() {
            into.saturating_record_n(bucket.value_iterated_to(), bucket.count_at_value() as u32);
        }
    }

    fn add_to_window(&mut self, window: &mut VersionWindow) {
        window.merge(self);
    }
}

/// Primary requests a comparative latency test waits for before fixing its latency: enough
/// for about 20 of them to lie above the quantile.
fn baseline_requests(quantile: f64) -> u64 {
    (20.0 / (1.0 - quantile)).ceil() as u64
}

/// The cumulative evidence of both versions since it (re)started. Its serialised form is kept
/// in the state file (docs/rollouts.md#state-file) and travels between fleet members
/// (docs/fleet.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEvidence {
    /// The primary's requests and failures.
    pub primary: Counts,
    /// The canary's requests and failures.
    pub canary: Counts,
    /// One counter per latency test, in metric order (absolute first, then `max_ratio`).
    pub slow: Vec<SlowCount>,
    /// The count-form external metrics' events, by name, as they were read; absent from
    /// older state files and from members that read none (only the fleet's leader reads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalCount>,
    /// The primary's latencies while a comparative latency is not fixed yet. Local: merging
    /// evidence merges counts, not baselines, and a restart gathers it again.
    #[serde(skip)]
    baseline: Option<Histogram<u32>>,
}

impl StepEvidence {
    /// Empty evidence for these metrics.
    pub fn new(metrics: &[MetricCheck]) -> StepEvidence {
        let mut slow = Vec::new();
        for metric in metrics {
            if let MetricCheck::Duration {
                threshold,
                quantile,
                max_ratio,
            } = metric
            {
                slow.push(SlowCount::new(LatencyTest::Absolute, Some(*threshold)));
                if let Some(max_ratio) = max_ratio {
                    let test = LatencyTest::Ratio {
                        max_ratio: *max_ratio,
                        quantile: *quantile,
                    };
                    slow.push(SlowCount::new(test, None));
                }
            }
        }
        StepEvidence {
            primary: Counts::default(),
            canary: Counts::default(),
            slow,
            external: Vec::new(),
            baseline: None,
        }
    }

    /// Add the events one reading of a count-form external metric counted (negative or
    /// non-finite numbers count nothing; failures never exceed the total).
    pub fn add_external(&mut self, name: &str, failures: f64, total: f64) {
        let whole = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.round() as u64
            } else {
                0
            }
        };
        let total = whole(total);
        let failures = whole(failures).min(total);
        self.external_mut(name).failures += failures;
        self.external_mut(name).total += total;
    }

    /// The events counted for the external metric `name` (none yet: zero).
    pub fn external(&self, name: &str) -> (u64, u64) {
        self.external
            .iter()
            .find(|c| c.name == name)
            .map_or((0, 0), |c| (c.failures, c.total))
    }

    fn external_mut(&mut self, name: &str) -> &mut ExternalCount {
        let at = match self.external.iter().position(|c| c.name == name) {
            Some(at) => at,
            None => {
                self.external.push(ExternalCount {
                    name: name.to_owned(),
                    failures: 0,
                    total: 0,
                });
                self.external.len() - 1
            }
        };
        &mut self.external[at]
    }

    /// Add one drain of both versions.
    pub fn add(&mut self, primary: &mut impl Drained, canary: &mut impl Drained) {
        self.primary.requests += primary.requests();
        self.primary.failures += primary.failures();
        self.canary.requests += canary.requests();
        self.canary.failures += canary.failures();
        let mut unfixed = false;
        for slow in &mut self.slow {
            match slow.above {
                Some(above) => {
                    slow.primary_requests += primary.requests();
                    slow.primary_slow += primary.slower_than(above);
                    slow.canary_requests += canary.requests();
                    slow.canary_slow += canary.slower_than(above);
                }
                None => unfixed = true,
            }
        }
        if unfixed {
            self.fix_comparative_latencies(primary);
        }
    }

    /// Gather primary latencies until each comparative test can fix its latency from them;
    /// counting starts with the next drain, so the requests that fixed it are not judged.
    fn fix_comparative_latencies(&mut self, primary: &mut impl Drained) {
        let baseline = self.baseline.get_or_insert_with(new_latency_histogram);
        primary.latencies_into(baseline);
        for slow in &mut self.slow {
            if let (
                None,
                LatencyTest::Ratio {
                    max_ratio,
                    quantile,
                },
            ) = (slow.above, slow.test)
            {
                if baseline.len() >= baseline_requests(quantile) {
                    let micros = baseline.value_at_quantile(quantile) as f64 * max_ratio;
                    slow.above = Some(Duration::from_micros(micros.round() as u64));
                }
            }
        }
        if self.slow.iter().all(|s| s.above.is_some()) {
            self.baseline = None;
        }
    }

    /// Add another replica's (or another period's) evidence of the same metrics into this one.
    /// Latency counters are added position by position; they count the same test only if both
    /// sides fixed the same `above` (the receiver's is kept).
    pub fn merge(&mut self, other: &StepEvidence) {
        // Saturating: another member's evidence is data, and absurd counts from it must not
        // overflow the sum the leader judges.
        let add = |mine: &mut u64, theirs: u64| *mine = mine.saturating_add(theirs);
        add(&mut self.primary.requests, other.primary.requests);
        add(&mut self.primary.failures, other.primary.failures);
        add(&mut self.canary.requests, other.canary.requests);
        add(&mut self.canary.failures, other.canary.failures);
        for (mine, theirs) in self.slow.iter_mut().zip(&other.slow) {
            if mine.above.is_none() {
                mine.above = theirs.above;
            }
            add(&mut mine.primary_requests, theirs.primary_requests);
            add(&mut mine.primary_slow, theirs.primary_slow);
            add(&mut mine.canary_requests, theirs.canary_requests);
            add(&mut mine.canary_slow, theirs.canary_slow);
        }
        for theirs in &other.external {
            let mine = self.external_mut(&theirs.name);
            mine.failures += theirs.failures;
            mine.total += theirs.total;
        }
    }

    /// Start again (keeping the metrics' tests; comparative latencies are fixed afresh).
    pub fn clear(&mut self) {
        self.primary = Counts::default();
        self.canary = Counts::default();
        for slow in &mut self.slow {
            *slow = SlowCount::new(
                slow.test,
                match slow.test {
                    LatencyTest::Absolute => slow.above,
                    LatencyTest::Ratio { .. } => None,
                },
            );
        }
        self.external.clear();
        self.baseline = None;
    }
}

impl SlowCount {
    fn new(test: LatencyTest, above: Option<Duration>) -> SlowCount {
        SlowCount {
            test,
            above,
            primary_requests: 0,
            primary_slow: 0,
            canary_requests: 0,
            canary_slow: 0,
        }
    }
}

/// `Option<Duration>` as whole microseconds.
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, to: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => to.serialize_some(&u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => to.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(from)?.map(Duration::from_micros))
    }
}
