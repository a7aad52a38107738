//! The real runner — engine, route task, persist task and control task — on tokio's paused
//! clock, fed synthetic outcomes straight into the route's counters: a ten-step rollout with
//! one-minute intervals runs in milliseconds, and the data plane's snapshot is checked to
//! follow every decision. (The state-machine tests beside this one drive `Rollout` alone.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::{self, AnalysisHandle, Params, WATCH_EVERY};
use crate::config::{parse_str, Config, Version};
use crate::control::{Control, ControlHandle};
use crate::metrics::{MetricsRegistry, Outcome};
use crate::routing::Phase;
use crate::simulate::{simulate_once, Behaviour, Latency, RunOutcome, Scenario};
use crate::vitals::Vitals;

pub(super) const INTERVAL: Duration = Duration::from_secs(60);

fn config(dir: &Path) -> Config {
    config_judged_by(dir, "threshold")
}

pub(super) fn config_judged_by(dir: &Path, judge: &str) -> Config {
    scenario(
        dir,
        &format!(
            "judge = \"{judge}\"\nthreshold = 2\nstep_weight = 10\nmax_weight = 100\nmin_requests = 20\n{SUCCESS_RATE}{DURATION}"
        ),
    )
}

/// `request-success-rate` at 99%, as a `[[route.analysis.metrics]]` table.
pub(super) const SUCCESS_RATE: &str =
    "[[route.analysis.metrics]]\nname = \"request-success-rate\"\nthreshold = 99.0\n";

/// `request-duration` at P99 ≤ 500 ms, as a `[[route.analysis.metrics]]` table.
pub(super) const DURATION: &str = "[[route.analysis.metrics]]\nname = \"request-duration\"\nthreshold = \"500ms\"\nquantile = 0.99\n";

/// The scenario every engine test runs: route `shop` from v1 to v2 (its endpoints are never
/// contacted: outcomes are recorded straight into the route's counters), its state file in
/// `dir`, and `[route.analysis]` with a one-minute interval followed by `analysis` (keys, then
/// metric tables).
pub(super) fn scenario(dir: &Path, analysis: &str) -> Config {
    let text = format!(
        r#"
[state]
path = "{}/state.json"

[[route]]
name = "shop"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:9001"]
[route.canary]
revision = "v2"
endpoints = ["127.0.0.1:9002"]
[route.analysis]
interval = "1m"
{analysis}"#,
        dir.display(),
    );
    match parse_str(&text, &dir.join("canaryd.toml")) {
        Ok(config) => config,
        Err(e) => panic!("test config rejected: {e}"),
    }
}

pub(super) struct Running {
    pub(super) registry: Arc<MetricsRegistry>,
    pub(super) control: ControlHandle,
    pub(super) analysis: AnalysisHandle,
}

async fn start(dir: &Path) -> Running {
    start_with(config(dir)).await
}

pub(super) async fn start_with(config: Config) -> Running {
    let prepared = analysis::Prepared::load(&config);
    start_prepared(config, prepared).await
}

/// The control task and the analysis of `config`, as `prepared` (a fleet member's, say).
pub(super) async fn start_prepared(config: Config, prepared: analysis::Prepared) -> Running {
    let (control, running) = start_held(config, prepared).await;
    tokio::spawn(control.run());
    running
}

/// [`start_prepared`] with the control task returned instead of run: until the caller runs
/// it, nothing the analysis decides reaches the data plane.
async fn start_held(config: Config, prepared: analysis::Prepared) -> (Control, Running) {
    let registry = Arc::new(MetricsRegistry::default());
    let (control, handle) = Control::start(config, registry.clone(), prepared.views()).await;
    let config = handle.snapshot().config.clone();
    let analysis = analysis::start(
        prepared,
        config,
        handle.clone(),
        registry.clone(),
        &Vitals::default(),
    );
    (
        control,
        Running {
            registry,
            control: handle,
            analysis,
        },
    )
}

impl Running {
    /// One interval of traffic: 100 requests to each version, the canary failing `errors` of
    /// them, then the clock moved past the next check.
    pub(super) async fn interval(&self, canary_errors: usize) {
        self.traffic(canary_errors);
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    }

    /// 100 requests to each version, the canary failing `errors` of them.
    pub(super) fn traffic(&self, canary_errors: usize) {
        let metrics = self.registry.route("shop");
        for n in 0..100 {
            metrics.record(
                Version::Primary,
                Outcome::Status(200),
                Duration::from_millis(5),
            );
            let status = if n < canary_errors { 500 } else { 200 };
            metrics.record(
                Version::Canary,
                Outcome::Status(status),
                Duration::from_millis(5),
            );
        }
    }

    pub(super) fn status(&self) -> (&'static str, u8) {
        match self.analysis.status("shop") {
            Some(s) => (s.phase, s.weight),
            None => panic!("no status for shop"),
        }
    }

    /// Phase and weight the data plane routes by.
    pub(super) fn routed(&self) -> (Phase, u8) {
        let snapshot = self.control.snapshot();
        match snapshot.table.routes().iter().find(|r| &*r.name == "shop") {
            Some(route) => (route.rollout.phase, route.rollout.weight),
            None => panic!("no route shop in the snapshot"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_canary_walks_ten_steps_and_is_promoted_in_paused_time() {
    let wall = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start(dir.path()).await;
    let mut weights = Vec::new();
    for _ in 0..10 {
        run.interval(0).await;
        let (phase, weight) = run.status();
        assert_eq!(run.routed().1, weight, "the data plane lags the analysis");
        weights.push(weight);
        if phase != "Progressing" {
            break;
        }
    }
    assert_eq!(weights, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    // Promotion, finalising: a few more intervals, whatever the traffic.
    for _ in 0..5 {
        if run.status().0 == "Succeeded" {
            break;
        }
        run.interval(0).await;
    }
    assert_eq!(run.status().0, "Succeeded");
    assert_eq!(run.routed().0, Phase::Succeeded);
    // Fourteen-odd minutes of analysis, in far less than a second of wall time.
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?}",
        wall.elapsed()
    );
}

/// The admin API's status shows a decision only once the data plane routes by it: with the
/// control task held back, a check's new weight stays out of the status until the control task
/// has published it.
#[tokio::test(start_paused = true)]
async fn the_status_never_runs_ahead_of_what_the_data_plane_routes_by() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = config(dir.path());
    let prepared = analysis::Prepared::load(&config);
    let (control, run) = start_held(config, prepared).await;
    // Past the start-up publish's wait for a control task that is not running yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = run.status();
    let routed_before = run.routed();
    run.traffic(0);
    // The check at one minute decides the first step and waits for the control task.
    tokio::time::sleep(INTERVAL - Duration::from_millis(1500)).await;
    assert_eq!(run.routed(), routed_before);
    assert_eq!(
        run.status(),
        before,
        "the status moved on before the data plane did"
    );
    tokio::spawn(control.run());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let after = run.status();
    assert_eq!(after, ("Progressing", before.1 + 10), "from {before:?}");
    assert_eq!(run.routed(), (Phase::Progressing, after.1));
}

#[tokio::test(start_paused = true)]
async fn a_canary_failing_half_its_requests_is_rolled_back_after_threshold_checks() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start(dir.path()).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 10));
    run.interval(50).await;
    assert_eq!(
        run.status(),
        ("Progressing", 10),
        "one failed check holds the weight"
    );
    run.interval(50).await;
    assert_eq!(run.status(), ("Failed", 0));
    assert_eq!(run.routed(), (Phase::Failed, 0));
    // Healthy traffic afterwards does not revive a failed revision.
    run.interval(0).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Failed", 0));
    // And the state file says so, for the next start.
    run.analysis.flush().await;
    let saved = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
    assert!(saved.contains("Failed"), "{saved}");
}

#[tokio::test(start_paused = true)]
async fn the_sequential_judge_rolls_a_burning_canary_back_within_a_second_of_a_60s_interval() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start_with(config_judged_by(dir.path(), "sequential")).await;
    assert_eq!(run.status(), ("Progressing", 10));
    // Let the route task start (it discards what was measured before it).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let metrics = run.registry.route("shop");
    // 20 failing canary requests; the next look (every 250 ms) sees them.
    for _ in 0..20 {
        metrics.record(
            Version::Canary,
            Outcome::Status(503),
            Duration::from_millis(5),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        run.status(),
        ("Failed", 0),
        "rolled back by the watch, not the check"
    );
    assert_eq!(run.routed(), (Phase::Failed, 0));
    let events = run.analysis.events(Some("shop"));
    assert!(
        events.iter().any(|e| e.message
            == "Rolling back shop request-success-rate is worse than allowed (sequential test)"),
        "{events:?}"
    );
}

/// How long after the analysis started `shop` first reached `phase`, polling every
/// millisecond of paused time, while `feed` records each millisecond's traffic.
async fn time_to(run: &Running, phase: &str, mut feed: impl FnMut(u64)) -> Duration {
    let started = tokio::time::Instant::now();
    for ms in 0..600_000 {
        feed(ms);
        if run.status().0 == phase {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("shop never reached {phase}: {:?}", run.status());
}

/// `simulate`'s run of `params` with `rps` requests a second, the canary failing all of
/// them, and the route task fed the same traffic deterministically, reach their decision at
/// the same instant: both are the one runner on the same schedule.
async fn decision_times(judge: &str, rps: u64) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = config_judged_by(dir.path(), judge);
    let params = Params::from_route(&config.routes[0]).unwrap_or_else(|| panic!("no analysis"));
    let healthy = Behaviour {
        error_rate: 0.0,
        latency: Latency::Fixed(Duration::from_millis(5)),
    };
    let scenario = Scenario {
        params,
        rps: rps as f64,
        primary: healthy.clone(),
        canary: Behaviour {
            error_rate: 1.0,
            ..healthy
        },
        horizon: Duration::from_secs(600),
    };
    let simulated = simulate_once(&scenario, 7);
    assert_eq!(simulated.outcome, RunOutcome::RolledBack, "{simulated:?}");

    let run = start_with(config).await;
    let metrics = run.registry.route("shop");
    // The canary's share at weight 10, spread evenly over each second.
    let canary_per_second = rps / 10;
    let proxied = time_to(&run, "Failed", |ms| {
        let due = (ms + 1) * canary_per_second / 1000 - ms * canary_per_second / 1000;
        for _ in 0..due {
            metrics.record(
                Version::Canary,
                Outcome::Status(503),
                Duration::from_millis(5),
            );
        }
        for _ in 0..(rps - canary_per_second) / 1000 {
            metrics.record(
                Version::Primary,
                Outcome::Status(200),
                Duration::from_millis(5),
            );
        }
    })
    .await;
    (simulated.seconds, proxied)
}

/// The route task decided at `simulated` seconds too: `proxied` is the first 1 ms poll that
/// saw the decision.
fn same_instant(simulated: f64, proxied: Duration) {
    let simulated = Duration::from_secs_f64(simulated);
    assert!(
        simulated < proxied && proxied <= simulated + Duration::from_millis(1),
        "simulate decided at {simulated:?}, the route task by {proxied:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn simulate_and_the_route_task_roll_a_burning_canary_back_at_the_same_watch() {
    let (simulated, proxied) = decision_times("sequential", 4000).await;
    // The first watch, 250 ms in, already holds ~100 failed canary requests: both roll back
    // there, not at a second's granularity.
    assert_eq!(simulated, WATCH_EVERY.as_secs_f64());
    same_instant(simulated, proxied);
}

#[tokio::test(start_paused = true)]
async fn simulate_and_the_route_task_roll_back_at_the_same_check_with_the_threshold_judge() {
    let (simulated, proxied) = decision_times("threshold", 4000).await;
    // threshold = 2 failed checks of a 1m interval.
    assert_eq!(simulated, 120.0);
    same_instant(simulated, proxied);
}

#[tokio::test(start_paused = true)]
async fn a_route_task_that_panics_is_restarted_from_its_last_save_and_goes_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start(dir.path()).await;
    run.interval(0).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 20));
    run.analysis.inject_panic("shop");
    // The restart waits a second, so a task that fails at once does not spin.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = run.analysis.events(Some("shop"));
    assert!(
        events
            .iter()
            .any(|e| e.message == "analysis of shop restarted after a panic"),
        "{events:?}"
    );
    assert_eq!(run.status(), ("Progressing", 20), "resumed where it was");
    assert_eq!(run.routed(), (Phase::Progressing, 20));
    // And it still analyses: the next healthy interval advances the weight.
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 30));
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_step_resumes_with_the_sequential_judges_evidence() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = start_with(config_judged_by(dir.path(), "sequential")).await;
    assert_eq!(first.status(), ("Progressing", 10));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let feed = |run: &Running, n: usize| {
        let metrics = run.registry.route("shop");
        for _ in 0..n {
            for version in [Version::Primary, Version::Canary] {
                metrics.record(version, Outcome::Status(200), Duration::from_millis(5));
            }
        }
    };
    // Half the healthy evidence the step needs, then a check: undecided, evidence kept.
    feed(&first, HALF_THE_EVIDENCE);
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(first.status(), ("Progressing", 10), "undecided on half");
    first.analysis.flush().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // A new process on the same state file gets the other half: enough only with the first.
    let second = start_with(config_judged_by(dir.path(), "sequential")).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    feed(&second, HALF_THE_EVIDENCE);
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(
        second.status(),
        ("Progressing", 20),
        "the step's evidence survived"
    );
}

/// Healthy requests of each version that leave the sequential success-rate test undecided,
/// while twice as many accept "good".
const HALF_THE_EVIDENCE: usize = 200;
