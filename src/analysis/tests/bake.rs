//! Bake (docs/rollouts.md#bake) through the real engine on tokio's paused clock: a canary that
//! starts failing after promotion is rolled back during the bake; a healthy one ends the bake
//! Succeeded, and `abort` while Succeeded returns all traffic to the primary; a bake and its
//! rollback survive a restart (state file).

use std::path::Path;
use std::time::Duration;

use super::runner::{start_with, Running, INTERVAL};
use crate::analysis::Command;
use crate::config::{parse_str, Config};
use crate::routing::Phase;

/// Steps 50 → 100, then a bake of three one-minute checks.
fn baked(dir: &Path) -> Config {
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
judge = "threshold"
threshold = 2
step_weights = [50]
min_requests = 20
bake = "3m"
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
"#,
        dir.display(),
    );
    match parse_str(&text, &dir.join("canaryd.toml")) {
        Ok(config) => config,
        Err(e) => panic!("test config rejected: {e}"),
    }
}

/// Healthy intervals until the route bakes.
async fn until_baking(run: &Running) {
    for _ in 0..5 {
        if run.status().0 == "Baking" {
            break;
        }
        run.interval(0).await;
    }
    assert_eq!(run.status(), ("Baking", 100));
    assert_eq!(
        run.routed(),
        (Phase::Baking, 100),
        "the canary has everything"
    );
}

#[tokio::test(start_paused = true)]
async fn a_canary_failing_after_promotion_is_rolled_back_during_the_bake_and_stays_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start_with(baked(dir.path())).await;
    until_baking(&run).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Baking", 100), "a clean bake check goes on");
    // The canary starts failing: one failed check is enough during a bake.
    run.interval(30).await;
    assert_eq!(run.status(), ("Failed", 0));
    assert_eq!(run.routed(), (Phase::Failed, 0));
    let status = run
        .analysis
        .status("shop")
        .unwrap_or_else(|| panic!("no status"));
    assert_eq!(
        status
            .reason
            .as_deref()
            .map(|r| r.starts_with("a check failed during the bake")),
        Some(true),
        "{status:?}"
    );
    run.analysis.flush().await;
    drop(run);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A restart keeps the revision failed.
    let again = start_with(baked(dir.path())).await;
    again.interval(0).await;
    assert_eq!(again.status(), ("Failed", 0));
    assert_eq!(again.routed(), (Phase::Failed, 0));
}

#[tokio::test(start_paused = true)]
async fn a_bake_survives_a_restart_ends_succeeded_and_abort_then_returns_to_the_primary() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start_with(baked(dir.path())).await;
    until_baking(&run).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Baking", 100));
    run.analysis.flush().await;
    drop(run);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // The bake resumes where it was: two more clean checks end it.
    let again = start_with(baked(dir.path())).await;
    assert_eq!(again.status(), ("Baking", 100));
    // Let the route task start (it discards what was measured before it).
    tokio::time::sleep(Duration::from_millis(10)).await;
    again.interval(0).await;
    assert_eq!(again.status(), ("Baking", 100));
    again.interval(0).await;
    assert_eq!(again.status(), ("Succeeded", 100));
    tokio::time::sleep(INTERVAL).await;

    // Succeeded, the primary still configured: abort goes back to it at once.
    let aborted = again.analysis.command("shop", Command::Abort).await;
    assert!(aborted.is_ok(), "{aborted:?}");
    assert_eq!(again.status(), ("Failed", 0));
    assert_eq!(again.routed(), (Phase::Failed, 0));
    again.analysis.flush().await;
    drop(again);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let third = start_with(baked(dir.path())).await;
    assert_eq!(
        third.status(),
        ("Failed", 0),
        "the abort survives a restart"
    );
}

/// The state file and the fleet wire (`state/{route}` carries the same JSON) keep `Baking`
/// and how much of the bake is left.
#[test]
fn a_baking_rollout_round_trips_through_its_json() {
    let mut params = super::seed();
    params.analysis.bake = Some(Duration::from_secs(300));
    let mut run = super::Runner::start(params);
    run.weights(5, &super::healthy());
    run.tick(&super::healthy());
    assert_eq!(run.rollout.phase(), Phase::Baking);
    assert_eq!(
        run.rollout.bake_left(),
        Some(4),
        "five bake checks, one passed"
    );
    let json = serde_json::to_value(&run.rollout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["phase"], "Baking");
    let back: crate::analysis::Rollout =
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.phase(), Phase::Baking);
    assert_eq!(back.bake_left(), Some(4));
    assert_eq!(back.view().weight, 100);
}
