//! Start, new revisions, reloads and restarts (docs/rollouts.md#start, docs/rollouts.md#rollback,
//! "State").

use std::path::Path;

use super::*;
use crate::analysis::FinishOutcome;
use crate::routing::Phase;

fn revision(canary: &str) -> Params {
    Params {
        canary_revision: canary.to_owned(),
        ..seed()
    }
}

/// A rollout of v1.5.0 rolled back by five bad checks.
fn failed_run() -> Runner {
    let mut run = Runner::start(seed());
    run.weights(5, &window(traffic(900, 0, 40), traffic(100, 50, 50)));
    assert_eq!(run.rollout.phase(), Phase::Failed);
    run
}

#[test]
fn canary_revision_equal_to_primary_is_idle() {
    let (rollout, events) = Rollout::start_or_resume(&revision("v1.4.2"), None, at(0));
    assert_eq!(rollout.phase(), Phase::Idle);
    assert_eq!(rollout.view().weight, 0);
    assert!(events.is_empty(), "nothing happened: {events:?}");
}

#[test]
fn new_revision_mid_rollout_restarts_from_the_first_step() {
    let mut run = Runner::start(seed());
    assert_eq!(run.weights(3, &healthy()), [20, 30, 40]);
    run.tick(&window(traffic(900, 0, 40), traffic(100, 50, 50)));
    assert_eq!(run.rollout.failed_checks(), 1);

    // v1.5.1 is deployed to the canary and the config reloaded.
    let events = run.rollout.on_config(&revision("v1.5.1"), run.now());
    assert_eq!(
        events[0].message,
        "New revision detected! Rolling out shop v1.5.1 (primary v1.4.2)"
    );
    assert_eq!(run.rollout.revision(), "v1.5.1");
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(run.rollout.failed_checks(), 0);
    assert!(run.rollout.last_check().is_none());
}

#[test]
fn reload_with_the_same_revision_continues_the_rollout() {
    let mut run = Runner::start(seed());
    run.weights(2, &healthy());
    let before = run.rollout.clone();
    // E.g. only the threshold changed: it applies from the next check, nothing resets.
    let params = tuned(|a| a.threshold = 2);
    assert!(run.rollout.on_config(&params, run.now()).is_empty());
    assert_eq!(run.rollout, before);
}

#[test]
fn a_failed_revision_stays_failed_across_reloads_and_a_new_one_starts_fresh() {
    let mut run = failed_run();
    let now = run.now();

    // Same revision on reload: still Failed, still no traffic.
    assert!(run.rollout.on_config(&seed(), now).is_empty());
    assert_eq!(run.rollout.view().phase, Phase::Failed);
    assert_eq!(run.rollout.view().weight, 0);

    // A new revision starts from scratch.
    run.rollout.on_config(&revision("v1.5.1"), now);
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(run.rollout.failed_checks(), 0);
    let last = run.rollout.last_finished().unwrap();
    assert_eq!(
        (last.revision.as_str(), last.outcome),
        ("v1.5.0", FinishOutcome::Failed)
    );
}

#[test]
fn the_last_failed_revision_coming_back_is_still_failed() {
    // v1.5.0 failed; the operator bounces the canary to v1.4.2 (Idle), then back to v1.5.0.
    let mut run = failed_run();
    run.rollout.on_config(&revision("v1.4.2"), run.now());
    assert_eq!(run.rollout.phase(), Phase::Idle);
    let events = run.rollout.on_config(&seed(), run.now());
    assert_eq!(run.rollout.phase(), Phase::Failed);
    assert_eq!(run.rollout.weight(), 0);
    assert_eq!(
        events[0].message,
        "shop v1.5.0 already failed: no traffic until a new revision or retry"
    );
}

#[test]
fn a_failed_rollout_survives_a_restart() {
    let run = failed_run();
    let json = serde_json::to_string(&run.rollout).unwrap();
    // The file itself says weight 0, not only the view derived from it.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (value["phase"].as_str(), value["weight"].as_u64()),
        (Some("Failed"), Some(0))
    );

    // The state file says Failed; the proxy restarts with the same config.
    let stored: Rollout = serde_json::from_str(&json).unwrap();
    let (rollout, events) = Rollout::start_or_resume(&seed(), Some(stored), at(9999));
    assert!(events.is_empty());
    assert_eq!(rollout.phase(), Phase::Failed);
    assert_eq!(rollout.view().weight, 0);
    assert_eq!(rollout, run.rollout);
}

#[test]
fn state_file_json_is_readable() {
    let mut run = Runner::start(seed());
    run.tick(&healthy());
    let json = serde_json::to_value(&run.rollout).unwrap();
    assert_eq!(json["phase"], "Progressing");
    assert_eq!(json["weight"], 20);
    assert_eq!(json["revision"], "v1.5.0");
    assert_eq!(json["started_at"], T0);
    assert_eq!(json["last_check"]["outcome"], "pass");

    // An unknown phase is a corrupt file, not a guess.
    let mut bad = json.clone();
    bad["phase"] = "Sideways".into();
    assert!(serde_json::from_value::<Rollout>(bad).is_err());
}

#[test]
fn a_progressing_rollout_resumes_where_it_was() {
    let mut run = Runner::start(seed());
    run.weights(2, &healthy());
    let stored: Rollout =
        serde_json::from_str(&serde_json::to_string(&run.rollout).unwrap()).unwrap();
    let (mut rollout, events) = Rollout::start_or_resume(&seed(), Some(stored), at(500));
    assert!(events.is_empty());
    assert_eq!(rollout.weight(), 30);
    let (decision, _) = rollout.check(
        &seed(),
        &healthy(),
        &no_evidence(),
        &GateAnswers::default(),
        at(560),
    );
    assert_eq!(decision, Decision::Advance(40));
}

#[test]
fn succeeded_stays_until_the_primary_catches_up_then_idle() {
    let mut run = Runner::start(seed());
    run.weights(5, &healthy());
    assert_eq!(run.rollout.phase(), Phase::Succeeded);

    // Unrelated reload: still Succeeded, all traffic to the canary.
    assert!(run.rollout.on_config(&seed(), run.now()).is_empty());
    assert_eq!(run.rollout.view().weight, 100);

    // The pipeline deploys v1.5.0 to the primary: Idle, primary serves.
    let promoted = Params {
        primary_revision: "v1.5.0".to_owned(),
        ..seed()
    };
    run.rollout.on_config(&promoted, run.now());
    assert_eq!(run.rollout.phase(), Phase::Idle);
    assert_eq!(run.rollout.view().weight, 0);

    // Next release: a new rollout.
    let next = Params {
        canary_revision: "v1.6.0".to_owned(),
        ..promoted
    };
    run.rollout.on_config(&next, run.now());
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.weight(), 10);
}

#[test]
fn params_from_a_route_config() {
    let text = r#"
[[route]]
name = "shop"
[route.primary]
revision = "v1.4.2"
endpoints = ["127.0.0.1:9001"]
[route.canary]
revision = "v1.5.0"
endpoints = ["127.0.0.1:9002"]
[route.analysis]
interval = "60s"
threshold = 5
step_weight = 10
max_weight = 50
min_requests = 20
inconclusive_limit = 10
judge = "threshold"
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
[[route.webhooks]]
type = "confirm-promotion"
url = "http://127.0.0.1:7000/approve"

[[route]]
name = "plain"
path_prefix = "/plain"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:9003"]
"#;
    let config = crate::config::parse_str(text, Path::new("test.toml")).unwrap();
    let params = Params::from_route(&config.routes[0]).unwrap();
    assert_eq!(
        params,
        Params {
            hooks: Hooks::of([WebhookKind::ConfirmPromotion]),
            ..seed()
        }
    );
    assert!(Params::from_route(&config.routes[1]).is_none());
}

#[test]
fn status_json_has_the_api_fields() {
    let mut run = Runner::start(seed());
    run.tick(&healthy());
    let json = serde_json::to_value(run.rollout.status()).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "failed_checks",
            "inconclusive_checks",
            "iterations",
            "last_check",
            "name",
            "phase",
            "primary_revision",
            "revision",
            "weight"
        ]
    );
    assert_eq!(json["name"], "shop");
    assert_eq!(json["phase"], "Progressing");
    assert_eq!(json["weight"], 20);
    assert_eq!(json["last_check"]["outcome"], "pass");
}
