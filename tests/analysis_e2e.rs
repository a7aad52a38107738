//! Rollouts end to end, with real upstreams, real traffic and real (short) intervals:
//! promotion, rollback, rollback held across a restart, webhooks carrying the outcome, and a
//! corrupt state file. Deterministic step-by-step scenarios live in `src/analysis/tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

/// A route under analysis: checks every 300 ms, steps 25 → 50, two failed checks roll back.
fn analysed(primary: &Upstream, canary: &Upstream, hooks: &HookReceiver, state: &str) -> String {
    let analysis =
        "judge = \"threshold\"\ninterval = \"300ms\"\nthreshold = 2\nstep_weights = [25, 50]\n\
                    min_requests = 5\ninconclusive_limit = 20";
    base_config(state, "")
        + &analysed_route(primary, canary, analysis)
        + BUILTIN_METRICS
        + &format!(
            "[[route.webhooks]]\ntype = \"post-rollout\"\nurl = \"{}\"\n\
             [[route.webhooks]]\ntype = \"event\"\nurl = \"{}\"\n",
            hooks.url("/done"),
            hooks.url("/event"),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_every_step() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let hooks = HookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    let proxy = Canaryd::start(&analysed(&primary, &canary, &hooks, &state));
    let load = Load::start(proxy.url("/"), 200);

    eventually("promotion", Duration::from_secs(15), || {
        proxy.phase("shop") == "Succeeded"
    })
    .await;
    load.stop().await;

    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 100);
    assert_eq!(status.failed_checks, 0);
    let messages: Vec<String> = proxy
        .server()
        .analysis()
        .events(Some("shop"))
        .into_iter()
        .map(|e| e.message)
        .collect();
    let position = |needle: &str| {
        messages
            .iter()
            .position(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("no event {needle:?} in {messages:#?}"))
    };
    assert!(position("Advance shop canary weight 25") < position("Advance shop canary weight 50"));
    assert!(
        position("Advance shop canary weight 50")
            < position("Promotion completed! shop is now serving v2")
    );

    // Promoted: every request goes to the canary.
    let counts = tally(&client(), &proxy.url("/"), 50, &[]).await;
    assert_eq!(counts.get("canary"), Some(&50), "{counts:?}");

    // The pipeline hears the outcome and the revision (the GitOps caveat).
    eventually("post-rollout webhook", Duration::from_secs(5), || {
        !hooks.of_type("post-rollout").is_empty()
    })
    .await;
    let done = &hooks.of_type("post-rollout")[0];
    assert_eq!(done["route"], "shop");
    assert_eq!(done["phase"], "Succeeded");
    assert_eq!(done["revision"], "v2");
    assert_eq!(done["primary_revision"], "v1");
    assert!(!hooks.of_type("event").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_and_stays_rolled_back_across_a_restart() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    canary.fail_every.store(2, Ordering::SeqCst); // 50% errors
    let hooks = HookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    let toml = analysed(&primary, &canary, &hooks, &state);
    let proxy = Canaryd::start(&toml);
    let load = Load::start(proxy.url("/"), 200);
    eventually("rollback", Duration::from_secs(15), || {
        proxy.phase("shop") == "Failed"
    })
    .await;
    load.stop().await;

    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 0);
    assert_eq!(status.failed_checks, 2);
    let events = proxy.server().analysis().events(Some("shop"));
    assert!(
        events.iter().any(|e| e
            .message
            .contains("Rolling back shop failed checks threshold reached 2")),
        "{events:#?}"
    );
    eventually("post-rollout webhook", Duration::from_secs(5), || {
        !hooks.of_type("post-rollout").is_empty()
    })
    .await;
    assert_eq!(hooks.of_type("post-rollout")[0]["phase"], "Failed");
    assert_eq!(
        hooks.of_type("post-rollout")[0]["reason"],
        "failed checks threshold reached 2"
    );

    // A Failed revision gets no traffic.
    let before = canary.hits();
    let counts = tally(&client(), &proxy.url("/"), 50, &[]).await;
    assert_eq!(counts.get("primary"), Some(&50));
    assert_eq!(canary.hits(), before);

    // Restart on the same state file: still Failed, still no canary traffic.
    drop(proxy);
    let proxy = Canaryd::start(&toml);
    assert_eq!(proxy.phase("shop"), "Failed");
    let counts = tally(&client(), &proxy.url("/"), 50, &[]).await;
    assert_eq!(counts.get("primary"), Some(&50));
    assert_eq!(canary.hits(), before);

    // A new revision starts a fresh rollout.
    proxy
        .reload_with(&toml.replace("revision = \"v2\"", "revision = \"v3\""))
        .await
        .unwrap();
    eventually("the new revision's rollout", Duration::from_secs(5), || {
        proxy.phase("shop") == "Progressing"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_moved_aside_and_the_proxy_still_serves() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let hooks = HookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        b"{\"version\": 1, \"routes\": {\"shop\": [tru",
    )
    .unwrap();
    let state = format!("{}/", dir.path().display());
    let proxy = Canaryd::start(&analysed(&primary, &canary, &hooks, &state));
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status, 200);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "corrupt file not moved aside");
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"version\": 1, \"routes\": {\"shop\": [tru",
        "the corrupt file is kept as it was"
    );
    // The rollout starts again from its first step.
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 25);
    assert_eq!(status.phase, "Progressing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_nobody_receives_is_a_warning_event_and_a_metric() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    // A port nothing listens on: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    let toml = base_config(&state, "")
        + &analysed_route(
            &primary,
            &canary,
            "judge = \"threshold\"\ninterval = \"300ms\"\nthreshold = 2\nstep_weights = [50]\n\
             min_requests = 5\ninconclusive_limit = 20",
        )
        + BUILTIN_METRICS
        + &format!(
            "[[route.webhooks]]\ntype = \"post-rollout\"\nurl = \"http://{dead}/done?token=abc\"\n\
             retries = 0\ntimeout = \"1s\"\n"
        );
    let proxy = Canaryd::start(&toml);
    let load = Load::start(proxy.url("/"), 200);
    eventually("promotion", Duration::from_secs(15), || {
        proxy.phase("shop") == "Succeeded"
    })
    .await;
    load.stop().await;

    eventually("undelivered event", Duration::from_secs(5), || {
        proxy
            .server()
            .analysis()
            .events(Some("shop"))
            .iter()
            .any(|e| e.message.starts_with("Webhook post-rollout"))
    })
    .await;
    let events = proxy.server().analysis().events(Some("shop"));
    let event = events
        .iter()
        .find(|e| e.message.starts_with("Webhook post-rollout"))
        .unwrap();
    assert_eq!(event.severity, canaryd::analysis::Severity::Warning);
    assert!(
        event.message.starts_with(&format!(
            "Webhook post-rollout http://{dead}/done not delivered after 1 attempts: connect to {dead} failed"
        )),
        "{event:?}"
    );
    assert!(
        !event.message.contains("token"),
        "no query string: {event:?}"
    );

    let (_, _, metrics) = get(&client(), &format!("http://{}/metrics", proxy.admin), &[]).await;
    assert!(
        metrics
            .contains("canaryd_webhook_failures_total{route=\"shop\",type=\"post-rollout\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_starts_failing_after_promotion_is_rolled_back_during_the_bake() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let hooks = HookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    // A long bake (100 checks): only a rollback ends it within the test.
    let toml = analysed(&primary, &canary, &hooks, &state).replace(
        "inconclusive_limit = 20",
        "inconclusive_limit = 20\nbake = \"30s\"",
    );
    let proxy = Canaryd::start(&toml);
    let load = Load::start(proxy.url("/"), 200);
    eventually("the bake", Duration::from_secs(15), || {
        proxy.phase("shop") == "Baking"
    })
    .await;
    // Baking: everything goes to the canary, and nobody was told the rollout finished.
    let counts = tally(&client(), &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("canary"), Some(&20));
    assert!(hooks.of_type("post-rollout").is_empty());

    canary.fail_every.store(2, Ordering::SeqCst); // 50% errors from now on
    eventually(
        "a rollback during the bake",
        Duration::from_secs(15),
        || proxy.phase("shop") == "Failed",
    )
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 0);
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("a check failed during the bake"),
        "{status:?}"
    );
    // All traffic back on the primary, which kept running.
    let counts = tally(&client(), &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("primary"), Some(&20));
    eventually("post-rollout webhook", Duration::from_secs(5), || {
        !hooks.of_type("post-rollout").is_empty()
    })
    .await;
    assert_eq!(hooks.of_type("post-rollout")[0]["phase"], "Failed");
}
