//! One simulated rollout: the route task's [`RolloutRunner`] on a virtual clock.

use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};

use super::latency::{binomial, Latency};
use super::{Behaviour, Scenario};
use crate::analysis::ExternalReading;
use crate::analysis::{Drained, Due, Now, Rollout, RolloutRunner, VersionWindow, Window};
use crate::config::JudgeKind;
use crate::routing::{CanaryShare, Phase};

/// How a simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Succeeded.
    Promoted,
    /// Failed.
    RolledBack,
    /// Still undecided at the horizon.
    Undecided,
}

/// One simulated rollout's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Virtual time until it ended (the horizon if undecided).
    pub seconds: f64,
    /// Requests the canary served (its exposure).
    pub canary_requests: u64,
}

/// One version's drawn period, as the runner reads a drain of the data plane.
struct Drawn<'a> {
    requests: u64,
    failures: u64,
    latency: &'a Latency,
    /// Whether the check window gets latencies: only a judge that reads them from it
    /// (threshold) needs them, and drawing them is most of a simulation's cost.
    window_latencies: bool,
    rng: &'a mut SmallRng,
}

impl Drained for Drawn<'_> {
    fn requests(&self) -> u64 {
        self.requests
    }

    fn failures(&self) -> u64 {
        self.failures
    }

    fn slower_than(&mut self, latency: Duration) -> u64 {
        self.latency.slower_than(self.requests, latency, self.rng)
    }

    fn latencies_into(&mut self, into: &mut Histogram<u32>) {
        self.latency.sample(self.requests, self.rng, |micros, n| {
            into.saturating_record_n(micros, u32::try_from(n).unwrap_or(u32::MAX));
        });
    }

    fn add_to_window(&mut self, window: &mut VersionWindow) {
        window.requests += self.requests;
        window.failures += self.failures;
        if self.window_latencies {
            self.latency.sample(self.requests, self.rng, |micros, n| {
                window.latency.saturating_record_n(micros, n);
            });
        }
    }
}

/// The simulation's fixed epoch: the rollout's clock reads only this plus virtual time.
const EPOCH: u64 = 1_800_000_000;

/// Simulate one rollout of `scenario` with a generator seeded by `seed`: the route task's
/// [`RolloutRunner`] on a virtual clock, woken when it asks to be (every check, and with the
/// sequential judge every watch), with the traffic of the time between drawn at once.
pub fn simulate_once(scenario: &Scenario, seed: u64) -> RunResult {
    let params = &scenario.params;
    let mut rng = SmallRng::seed_from_u64(seed);
    let clock = |at: Duration| Now {
        at,
        wall: UNIX_EPOCH + Duration::from_secs(EPOCH) + at,
    };
    // A count-form external metric is a sequential test of events nobody can draw: it is left
    // out, so the run shows what canaryd's own metrics decide (docs/rollouts.md#external-metrics).
    let mut params = params.clone();
    params.analysis.external.retain(|m| !m.counted());
    let params = &params;
    let (rollout, _) = Rollout::start_or_resume(params, None, clock(Duration::ZERO).wall);
    let mut runner = RolloutRunner::new(
        params.clone(),
        rollout,
        empty_window(),
        clock(Duration::ZERO),
    );
    let window_latencies = params.analysis.judge != JudgeKind::Sequential;
    let mut now = Duration::ZERO;
    let mut canary_requests = 0;

    while now < scenario.horizon {
        let wake = runner.next_wake();
        let period = wake.saturating_sub(now);
        now = wake;
        // The share only changes at a decision, and decisions only happen at wake-ups: the
        // whole period ran at the share it began with.
        let share = canary_share(runner.rollout());
        // No traffic at all (`--rps 0`) is a scenario too: `Poisson` refuses a zero rate.
        let total = Poisson::new(scenario.rps * period.as_secs_f64())
            .map_or(0, |d| d.sample(&mut rng) as u64);
        let canary_n = binomial(total, share, &mut rng);
        canary_requests += canary_n;
        let primary = draw(&scenario.primary, total - canary_n, &mut rng);
        let canary = draw(&scenario.canary, canary_n, &mut rng);
        // Each version's latency draws come from a generator of its own, so the two can be
        // lent to the runner at once.
        let (mut primary_rng, mut canary_rng) = (
            SmallRng::seed_from_u64(primary.2),
            SmallRng::seed_from_u64(canary.2),
        );
        runner.on_drain(
            &mut Drawn {
                requests: primary.0,
                failures: primary.1,
                latency: &scenario.primary.latency,
                window_latencies,
                rng: &mut primary_rng,
            },
            &mut Drawn {
                requests: canary.0,
                failures: canary.1,
                latency: &scenario.canary.latency,
                window_latencies,
                rng: &mut canary_rng,
            },
        );
        match runner.due(now) {
            Some(Due::Check) => {
                // External values cannot be drawn: they are taken to pass, so the run shows
                // what canaryd's own metrics decide (docs/rollouts.md#external-metrics).
                let assumed = runner
                    .params()
                    .analysis
                    .external
                    .iter()
                    .map(ExternalReading::assumed_passing)
                    .collect();
                runner.on_readings(assumed);
                runner.check_unattended(clock(now));
            }
            Some(Due::Watch) => {
                runner.on_watch(clock(now));
            }
            None => {}
        }
        match runner.rollout().phase() {
            Phase::Succeeded => return result(RunOutcome::Promoted, now, canary_requests),
            Phase::Failed => return result(RunOutcome::RolledBack, now, canary_requests),
            Phase::Idle
            | Phase::Static
            | Phase::Waiting
            | Phase::Progressing
            | Phase::Paused
            | Phase::WaitingPromotion
            | Phase::Baking => {}
        }
    }
    result(RunOutcome::Undecided, now, canary_requests)
}

fn result(outcome: RunOutcome, now: Duration, canary_requests: u64) -> RunResult {
    RunResult {
        outcome,
        seconds: now.as_secs_f64(),
        canary_requests,
    }
}

fn empty_window() -> Window {
    // The bounds are constants; `Window::new` fails only if they were invalid.
    match Window::new() {
        Ok(w) => w,
        Err(e) => unreachable!("constant histogram bounds: {e}"),
    }
}

/// The share of the route's requests the canary gets in the rollout's current view (weighted
/// steps; match rules and mirroring are not modelled).
fn canary_share(rollout: &Rollout) -> f64 {
    let view = rollout.view();
    match view.phase.traffic().share {
        CanaryShare::Nothing => 0.0,
        CanaryShare::Weighted => f64::from(view.weight) / 100.0,
        CanaryShare::Everything => 1.0,
    }
}

/// `(requests, failures, seed for this second's latency draws)`.
fn draw(behaviour: &Behaviour, n: u64, rng: &mut SmallRng) -> (u64, u64, u64) {
    let failures = binomial(n, behaviour.error_rate, rng);
    (n, failures, rand::Rng::random(rng))
}
