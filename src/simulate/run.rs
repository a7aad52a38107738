//! One simulated rollout: the route task's protocol on a virtual clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};

use super::latency::{binomial, Latency};
use super::{Behaviour, Scenario};
use crate::analysis::{
    Decision, Drained, GateAnswers, Params, Rollout, StepEvidence, VersionWindow, Window,
};
use crate::config::{JudgeKind, WebhookKind};
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

/// One version's drawn second, as the evidence reads a drain of the data plane.
struct Drawn<'a> {
    requests: u64,
    failures: u64,
    latency: &'a Latency,
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
}

/// The simulation's fixed epoch: the rollout's clock reads only this plus virtual time.
const EPOCH: u64 = 1_800_000_000;

/// Simulate one rollout of `scenario` with a generator seeded by `seed`.
pub fn simulate_once(scenario: &Scenario, seed: u64) -> RunResult {
    let params = &scenario.params;
    let mut rng = SmallRng::seed_from_u64(seed);
    let at = |t: Duration| UNIX_EPOCH + Duration::from_secs(EPOCH) + t;
    let (mut rollout, _) = Rollout::start_or_resume(params, None, at(Duration::ZERO));
    let mut window = empty_window();
    let mut evidence = StepEvidence::new(&params.analysis.metrics);
    let interval = params.interval();
    // The route task drains once a second and at every check; with a shorter interval, at
    // every check.
    let tick = interval.min(Duration::from_secs(1));
    let sequential = params.analysis.judge == JudgeKind::Sequential;
    // No traffic at all (`--rps 0`) is a scenario too: `Poisson` refuses a zero rate.
    let arrivals = Poisson::new(scenario.rps * tick.as_secs_f64()).ok();
    let mut now = Duration::ZERO;
    let mut next_check = interval;
    let mut canary_requests = 0;

    while now < scenario.horizon {
        now += tick;
        let share = canary_share(&rollout);
        let total = arrivals.map_or(0, |d| d.sample(&mut rng) as u64);
        let canary_n = binomial(total, share, &mut rng);
        canary_requests += canary_n;
        let primary = draw(&scenario.primary, total - canary_n, &mut rng);
        let canary = draw(&scenario.canary, canary_n, &mut rng);
        window.duration += tick;
        record(
            &mut window.primary,
            &primary,
            !sequential,
            &scenario.primary,
            &mut rng,
        );
        record(
            &mut window.canary,
            &canary,
            !sequential,
            &scenario.canary,
            &mut rng,
        );
        // Each version's latency draws come from a generator of its own, so the two can be
        // lent to the evidence at once.
        let (mut primary_rng, mut canary_rng) = (
            SmallRng::seed_from_u64(primary.2),
            SmallRng::seed_from_u64(canary.2),
        );
        evidence.add(
            &mut Drawn {
                requests: primary.0,
                failures: primary.1,
                latency: &scenario.primary.latency,
                rng: &mut primary_rng,
            },
            &mut Drawn {
                requests: canary.0,
                failures: canary.1,
                latency: &scenario.canary.latency,
                rng: &mut canary_rng,
            },
        );

        let mut decision = None;
        if sequential && now < next_check {
            decision = rollout
                .watch(params, &window, &evidence, at(now))
                .map(|(d, _)| d);
        }
        if now >= next_check {
            next_check += interval;
            decision = Some(check(&mut rollout, params, &window, &evidence, at(now)));
        }
        if let Some(decision) = decision {
            if decision.concludes_window() {
                window.clear();
            }
            if decision.restarts_evidence(params.analysis.sequential.evidence) {
                evidence.clear();
            }
        }
        match rollout.phase() {
            Phase::Succeeded => return result(RunOutcome::Promoted, now, canary_requests),
            Phase::Failed => return result(RunOutcome::RolledBack, now, canary_requests),
            Phase::Idle
            | Phase::Static
            | Phase::Waiting
            | Phase::Progressing
            | Phase::Paused
            | Phase::WaitingPromotion => {}
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

/// Add the drawn second to the window; latencies only when a judge reads them from it.
fn record(
    window: &mut VersionWindow,
    drawn: &(u64, u64, u64),
    latencies: bool,
    behaviour: &Behaviour,
    rng: &mut SmallRng,
) {
    window.requests += drawn.0;
    window.failures += drawn.1;
    if latencies {
        behaviour.latency.sample(drawn.0, rng, |micros, n| {
            window.latency.saturating_record_n(micros, n);
        });
    }
}

/// One check, with every gate and confirm webhook saying the harmless thing (yes; `rollback`
/// no), as the route task's `check` does with real answers.
fn check(
    rollout: &mut Rollout,
    params: &Params,
    window: &Window,
    evidence: &StepEvidence,
    now: SystemTime,
) -> Decision {
    let mut answers = GateAnswers::default();
    for kind in rollout.gates(params) {
        answers.set(kind, kind != WebhookKind::Rollback);
    }
    let (mut decision, _) = rollout.check(params, window, evidence, &answers, now);
    while let Decision::Confirm(_) = decision {
        match rollout.confirm(true, now) {
            Ok((next, _)) => decision = next,
            Err(_) => break,
        }
    }
    decision
}
