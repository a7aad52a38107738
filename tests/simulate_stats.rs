//! The sequential judge's error rates, measured through `canaryd simulate`'s engine (the real
//! `Rollout`, `StepEvidence` and judges on a virtual clock) for every cell of the target table
//! in `docs/rollouts.md#what-the-judge-guarantees`, with fixed seeds.
//!
//! How the limits are chosen: a correct judge has P(event) ≤ p (α = 1% for false rollbacks,
//! β = 5% for false promotions, by Ville's inequality on the likelihood-ratio martingale). For
//! `n` independent runs the Chernoff bound on the binomial tail gives
//! P(count ≥ n·q) ≤ exp(−n·KL(q‖p)) for q > p. [`limit`] picks the smallest q with
//! exp(−n·KL(q‖p)) ≤ 10⁻⁶, so a correct judge fails a cell with probability below 10⁻⁶ (for a
//! seed drawn at random; with the fixed seeds here the outcome is reproducible), while a judge
//! whose error rate is a few times too high fails it.

use std::time::Duration;

use canaryd::analysis::Params;
use canaryd::config::parse_str;
use canaryd::simulate::{simulate, Behaviour, Latency, Scenario, Summary};

/// The seed settings: interval 60 s, steps 10..50, success rate ≥ 99%, P99 ≤ 500 ms.
const SEED: &str = r#"
[[route]]
name = "shop"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:9001"]
[route.canary]
revision = "v2"
endpoints = ["127.0.0.1:9002"]
[route.analysis]
interval = "60s"
step_weight = 10
max_weight = 50
EXTRA
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = SUCCESS
MAXDROP
[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
"#;

fn params(extra: &str, success: &str, max_drop: &str) -> Params {
    let text = SEED
        .replace("EXTRA", extra)
        .replace("SUCCESS", success)
        .replace("MAXDROP", max_drop);
    let config = parse_str(&text, std::path::Path::new("seed.toml"))
        .unwrap_or_else(|e| panic!("seed config rejected: {e}"));
    Params::from_route(&config.routes[0]).unwrap_or_else(|| panic!("no analysis"))
}

fn seed_params() -> Params {
    params("", "99.0", "")
}

const FAST: Latency = Latency::Fixed(Duration::from_millis(20));

fn scenario(params: Params, rps: f64, canary_errors: f64, canary_latency: Latency) -> Scenario {
    Scenario {
        horizon: Scenario::default_horizon(&params),
        params,
        rps,
        primary: Behaviour {
            error_rate: 0.0,
            latency: FAST,
        },
        canary: Behaviour {
            error_rate: canary_errors,
            latency: canary_latency,
        },
    }
}

/// Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p).
fn kl(q: f64, p: f64) -> f64 {
    q * (q / p).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln()
}

/// The count a correct judge (event probability ≤ `p`) reaches in `n` runs with probability
/// below 10⁻⁶ (Chernoff).
fn limit(n: u32, p: f64) -> u32 {
    let needed = (1e6f64).ln() / f64::from(n);
    let mut q = p;
    while kl(q, p) < needed {
        q += 1e-4;
    }
    (q * f64::from(n)).ceil() as u32
}

/// Runs per cell: enough for a limit a few times the bound, few enough for a debug build.
fn runs(rps: f64) -> u32 {
    if rps >= 10.0 {
        600
    } else {
        300
    }
}

fn at_most(summary: &Summary, what: &str, count: u32, p: f64) {
    let max = limit(summary.runs, p);
    assert!(
        count < max,
        "{what}: {count} of {} runs (limit {max} for a true rate of at most {p}): {summary:?}",
        summary.runs
    );
}

#[test]
fn chernoff_limits_are_what_the_module_doc_says() {
    // 600 runs at p = 1%: fewer than 23 (3.8%); at p = 5%: fewer than 62 (10.3%). 300 runs:
    // fewer than 16 (5.3%) and 39 (12.9%).
    assert_eq!(limit(600, 0.01), 23);
    assert_eq!(limit(600, 0.05), 62);
    assert_eq!(limit(300, 0.01), 16);
    assert_eq!(limit(300, 0.05), 39);
    assert!((-600.0 * kl(23.0 / 600.0, 0.01)).exp() <= 1e-6);
    assert!((-600.0 * kl(22.0 / 600.0, 0.01)).exp() > 1e-6);
}

#[test]
fn failure_rate_half_the_allowed_is_rarely_rolled_back_at_100_10_and_1_rps() {
    for (i, rps) in [100.0, 10.0, 1.0].into_iter().enumerate() {
        let s = simulate(
            &scenario(seed_params(), rps, 0.005, FAST),
            runs(rps),
            100 + i as u64,
        );
        at_most(
            &s,
            &format!("false rollbacks at {rps} req/s"),
            s.rolled_back,
            0.01,
        );
    }
}

#[test]
fn failure_rate_one_and_a_half_the_allowed_is_rarely_promoted_at_100_10_and_1_rps() {
    for (i, rps) in [100.0, 10.0, 1.0].into_iter().enumerate() {
        let s = simulate(
            &scenario(seed_params(), rps, 0.015, FAST),
            runs(rps),
            200 + i as u64,
        );
        at_most(
            &s,
            &format!("false promotions at {rps} req/s"),
            s.promoted,
            0.05,
        );
    }
}

#[test]
fn twice_the_allowed_failure_rate_is_rolled_back_sooner_than_by_the_threshold_judge() {
    let sequential = simulate(&scenario(seed_params(), 100.0, 0.02, FAST), 300, 300);
    let threshold = simulate(
        &scenario(
            params("judge = \"threshold\"", "99.0", ""),
            100.0,
            0.02,
            FAST,
        ),
        300,
        301,
    );
    at_most(&sequential, "promotions at 2x", sequential.promoted, 0.05);
    assert_eq!(sequential.rolled_back, 300, "{sequential:?}");
    let (Some(fast), Some(today)) = (
        sequential.median_rollback_seconds,
        threshold.median_rollback_seconds,
    ) else {
        panic!("no rollbacks: {sequential:?} {threshold:?}");
    };
    assert!(fast <= today, "sequential {fast} s, threshold {today} s");
}

#[test]
fn a_canary_without_traffic_is_never_promoted() {
    let s = simulate(&scenario(seed_params(), 0.0, 0.0, FAST), 20, 400);
    assert_eq!(
        (s.promoted, s.rolled_back, s.undecided),
        (0, 0, 20),
        "{s:?}"
    );
    assert_eq!(s.median_canary_requests, 0);
}

#[test]
fn slow_share_half_and_one_and_a_half_of_one_minus_quantile() {
    let mix = |share| Latency::Mix {
        fast: Duration::from_millis(20),
        slow: Duration::from_millis(900),
        share,
    };
    for (i, rps) in [100.0, 10.0, 1.0].into_iter().enumerate() {
        let good = simulate(
            &scenario(seed_params(), rps, 0.0, mix(0.005)),
            runs(rps),
            500 + i as u64,
        );
        at_most(
            &good,
            &format!("false rollbacks (latency) at {rps} req/s"),
            good.rolled_back,
            0.01,
        );
        let bad = simulate(
            &scenario(seed_params(), rps, 0.0, mix(0.015)),
            runs(rps),
            510 + i as u64,
        );
        at_most(
            &bad,
            &format!("false promotions (latency) at {rps} req/s"),
            bad.promoted,
            0.05,
        );
    }
}

#[test]
fn comparative_failures_half_and_one_and_a_half_of_max_drop_above_the_primary() {
    // The absolute test allows 10% so that only `max_drop = 1` (point) decides: with the
    // primary at 1%, "good" is 1.5% and "bad" 2.5%.
    let comparative = || params("", "90.0", "max_drop = 1.0");
    for (i, rps) in [100.0, 10.0, 1.0].into_iter().enumerate() {
        let mut good = scenario(comparative(), rps, 0.015, FAST);
        good.primary.error_rate = 0.01;
        let s = simulate(&good, runs(rps), 600 + i as u64);
        at_most(
            &s,
            &format!("false rollbacks (max_drop) at {rps} req/s"),
            s.rolled_back,
            0.01,
        );
        let mut bad = scenario(comparative(), rps, 0.025, FAST);
        bad.primary.error_rate = 0.01;
        let s = simulate(&bad, runs(rps), 610 + i as u64);
        at_most(
            &s,
            &format!("false promotions (max_drop) at {rps} req/s"),
            s.promoted,
            0.05,
        );
    }
}

#[test]
fn a_healthy_canary_at_100_rps_is_promoted_and_a_bad_one_rolled_back_not_left_undecided() {
    // Power, not only error rates: a judge that never decides would pass the cells above.
    let healthy = simulate(&scenario(seed_params(), 100.0, 0.005, FAST), 300, 700);
    assert!(healthy.promoted >= 290, "{healthy:?}");
    let bad = simulate(&scenario(seed_params(), 100.0, 0.015, FAST), 300, 701);
    assert!(bad.rolled_back >= 290, "{bad:?}");
}
