//! Bake (docs/rollouts.md#bake) through the real engine on tokio's paused clock: a canary that
//! starts failing after promotion is rolled back during the bake (with the sequential judge
//! within a watch, on the evidence the last step ended with); a healthy one ends the bake
//! Succeeded, and `abort` while Succeeded returns all traffic to the primary; a bake, its
//! evidence and its rollback survive a restart (state file).

use std::path::Path;
use std::time::Duration;

use super::runner::{scenario, start_with, Running, INTERVAL, SUCCESS_RATE};
use crate::analysis::Command;
use crate::config::{Config, Version};
use crate::metrics::Outcome;
use crate::routing::Phase;

/// Steps 50 → 100, then a bake of three one-minute checks, judged by the threshold judge.
fn baked(dir: &Path) -> Config {
    baked_by(dir, "threshold")
}

/// [`baked`] judged by `judge`.
fn baked_by(dir: &Path, judge: &str) -> Config {
    scenario(
        dir,
        &format!(
            "judge = \"{judge}\"\nthreshold = 2\nstep_weights = [50]\nmin_requests = 20\nbake = \"3m\"\n{SUCCESS_RATE}"
        ),
    )
}

/// Healthy intervals until the route bakes.
async fn until_baking(run: &Running) {
    for _ in 0..6 {
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

/// The canary requests the last check's first test counted since its evidence began.
fn evidence_requests(run: &Running) -> Option<u64> {
    let status = run.analysis.status("shop")?;
    let check = status.last_check?;
    Some(check.metrics.first()?.evidence.as_ref()?.requests)
}

#[tokio::test(start_paused = true)]
async fn a_canary_failing_30s_into_the_bake_is_rolled_back_within_a_watch_on_the_last_steps_evidence(
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = start_with(baked_by(dir.path(), "sequential")).await;
    // 100 clean canary requests an interval: the step passes on 300 (297 needed).
    until_baking(&run).await;
    assert_eq!(evidence_requests(&run), Some(300));
    run.analysis.flush().await;
    drop(run);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // A restart during the bake resumes it with the evidence it carried.
    let again = start_with(baked_by(dir.path(), "sequential")).await;
    assert_eq!(again.status(), ("Baking", 100));
    // Let the route task start (it discards what was measured before it).
    tokio::time::sleep(Duration::from_millis(10)).await;
    // 30 s after promotion the canary starts failing every request.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let metrics = again.registry.route("shop");
    for _ in 0..20 {
        metrics.record(
            Version::Canary,
            Outcome::Status(503),
            Duration::from_millis(5),
        );
    }
    // The next look (every 250 ms), not the next check 30 s later, rolls it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(again.status(), ("Failed", 0));
    assert_eq!(
        again.routed(),
        (Phase::Failed, 0),
        "all traffic to the primary"
    );
    // Judged on the last step's 300 clean requests plus the bake's 20 failures.
    assert_eq!(evidence_requests(&again), Some(320));
    let reason = again
        .analysis
        .status("shop")
        .and_then(|s| s.reason)
        .unwrap_or_default();
    assert!(
        reason.starts_with("a check failed during the bake: error rate 6.25% over 320 requests"),
        "{reason}"
    );
    again.analysis.flush().await;
    drop(again);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let third = start_with(baked_by(dir.path(), "sequential")).await;
    assert_eq!(
        third.status(),
        ("Failed", 0),
        "the rollback survives a restart"
    );
    assert_eq!(third.routed(), (Phase::Failed, 0));
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
