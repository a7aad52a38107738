//! The real runner — engine, route task, persist task and control task — on tokio's paused
//! clock, fed synthetic outcomes straight into the route's counters: a ten-step rollout with
//! one-minute intervals runs in milliseconds, and the data plane's snapshot is checked to
//! follow every decision. (The state-machine tests beside this one drive `Rollout` alone.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::{self, AnalysisHandle};
use crate::config::{parse_str, Config, Version};
use crate::control::{Control, ControlHandle};
use crate::metrics::{MetricsRegistry, Outcome};
use crate::routing::Phase;

const INTERVAL: Duration = Duration::from_secs(60);

fn config(dir: &Path) -> Config {
    config_judged_by(dir, "threshold")
}

fn config_judged_by(dir: &Path, judge: &str) -> Config {
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
judge = "{judge}"
threshold = 2
step_weight = 10
max_weight = 100
min_requests = 20
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
"#,
        dir.display(),
    );
    match parse_str(&text, &dir.join("canaryd.toml")) {
        Ok(config) => config,
        Err(e) => panic!("test config rejected: {e}"),
    }
}

struct Running {
    registry: Arc<MetricsRegistry>,
    control: ControlHandle,
    analysis: AnalysisHandle,
}

async fn start(dir: &Path) -> Running {
    start_with(config(dir)).await
}

async fn start_with(config: Config) -> Running {
    let registry = Arc::new(MetricsRegistry::default());
    let prepared = analysis::Prepared::load(&config);
    let (control, handle) = Control::start(config, registry.clone(), prepared.views()).await;
    tokio::spawn(control.run());
    let config = handle.snapshot().config.clone();
    let analysis = analysis::start(prepared, config, handle.clone(), registry.clone());
    Running {
        registry,
        control: handle,
        analysis,
    }
}

impl Running {
    /// One interval of traffic: 100 requests to each version, the canary failing `errors` of
    /// them, then the clock moved past the next check.
    async fn interval(&self, canary_errors: usize) {
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
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    }

    fn status(&self) -> (&'static str, u8) {
        match self.analysis.status("shop") {
            Some(s) => (s.phase, s.weight),
            None => panic!("no status for shop"),
        }
    }

    /// Phase and weight the data plane routes by.
    fn routed(&self) -> (Phase, u8) {
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
