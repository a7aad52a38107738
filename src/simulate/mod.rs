//! `canaryd simulate` (`docs/rollouts.md#checking-a-config-with-canaryd-simulate`): the real
//! rollout and judge code — [`crate::analysis::Rollout`], [`crate::analysis::StepEvidence`], the
//! judges — on a virtual clock, with each second's outcomes drawn at random, many times over.
//!
//! No sockets and no timers: the route task's own [`crate::analysis::RolloutRunner`] runs on a
//! virtual clock, woken when it asks to be (a check every interval; with the sequential judge a
//! watch every [`crate::analysis::WATCH_EVERY`], 250 ms, as in the proxy), and each wake-up
//! draws the period's request counts (Poisson), failures (binomial) and slow requests (binomial
//! on the latency distribution's tail) into it, as the route task drains the data plane's.
//! Timing and resets are the runner's, so they cannot differ from the proxy's. `run.rs` is one
//! rollout, `latency.rs` the latency models, `horizon.rs` how long a run is given and why a
//! run may stay undecided.

mod horizon;
mod latency;
mod run;
mod summary;

pub use horizon::{clean_requests_to_pass, Horizon};
pub use latency::{Latency, LatencyError};
pub use run::{simulate_once, RunOutcome, RunResult};
pub use summary::Summary;

use std::time::Duration;

use crate::analysis::Params;

/// How one version behaves in the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Share of requests that fail, 0..=1.
    pub error_rate: f64,
    /// How long requests take.
    pub latency: Latency,
}

/// What is simulated: one route's traffic and both versions' behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The route's analysis (from its config).
    pub params: Params,
    /// Requests per second to the whole route (Poisson).
    pub rps: f64,
    /// The primary.
    pub primary: Behaviour,
    /// The canary.
    pub canary: Behaviour,
    /// Virtual time after which an unfinished rollout counts as undecided.
    pub horizon: Duration,
}

impl Scenario {
    /// The default horizon: every step may take its `max_step_duration`, plus one interval.
    pub fn default_horizon(params: &Params) -> Duration {
        let steps = match &params.analysis.steps {
            crate::config::Steps::Weights(w) => w.len(),
            crate::config::Steps::Iterations(n) => *n as usize,
        };
        let per_step = params
            .analysis
            .sequential
            .max_step_duration
            .max(params.interval());
        per_step
            .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
            .saturating_add(params.interval())
    }
}

/// Run `runs` rollouts of `scenario`; run `i` draws from a generator seeded with `seed` and
/// `i`, so a summary is reproducible and independent of how the runs are scheduled.
pub fn simulate(scenario: &Scenario, runs: u32, seed: u64) -> Summary {
    let results = (0..runs)
        .map(|i| simulate_once(scenario, run_seed(seed, i)))
        .collect::<Vec<_>>();
    Summary::of(&results)
}

fn run_seed(seed: u64, run: u32) -> u64 {
    // SplitMix64's increment: spreads consecutive run numbers over the seed space.
    seed ^ u64::from(run).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
