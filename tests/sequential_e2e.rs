//! The sequential judge end to end, with real upstreams, real traffic and the real clock: a
//! burning canary is at weight 0 within 2 s although the interval is 60 s, a healthy canary is
//! promoted and a bad one rolled back on evidence (`docs/rollouts.md#the-sequential-judge`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

fn phase_and_weight(proxy: &Canaryd) -> (String, u8) {
    proxy
        .server()
        .analysis()
        .status("shop")
        .map(|s| (s.phase.to_owned(), s.weight))
        .unwrap_or_default()
}

/// The seed schedule (interval 60 s, steps 10..50) with the sequential judge's defaults.
fn seed(primary: &Upstream, canary: &str, hooks: &HookReceiver, state: &str) -> String {
    let route = format!(
        "\n[[route]]\nname = \"shop\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n\
         [route.canary]\nrevision = \"v2\"\nendpoints = [\"{canary}\"]\n[route.analysis]\n\
         interval = \"60s\"\nstep_weight = 10\nmax_weight = 50\n",
        primary.addr
    );
    base_config(state, "")
        + &route
        + BUILTIN_METRICS
        + &format!(
            "[[route.webhooks]]\ntype = \"post-rollout\"\nurl = \"{}\"\n",
            hooks.url("/done")
        )
}

/// `connect_cause`: how the reason ends when the canary's requests fail to connect
/// (docs/operations.md#why-a-canary-was-rolled-back).
async fn burning(canary_endpoint: String, canary: Option<Upstream>, connect_cause: Option<&str>) {
    let primary = Upstream::start("primary").await;
    let hooks = HookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = format!("{}/", dir.path().display());
    let proxy = Canaryd::start(&seed(&primary, &canary_endpoint, &hooks, &state));
    assert_eq!(phase_and_weight(&proxy), ("Progressing".to_owned(), 10));
    let started = Instant::now();
    let load = Load::start(proxy.url("/"), 200);
    eventually("weight 0", Duration::from_secs(5), || {
        phase_and_weight(&proxy) == ("Failed".to_owned(), 0)
    })
    .await;
    let took = started.elapsed();
    load.stop().await;
    eprintln!("rolled back after {took:?}");
    assert!(took <= Duration::from_secs(2), "rolled back after {took:?}");

    // Same event, webhook and state as any rollback.
    let events = proxy.server().analysis().events(Some("shop"));
    let rolling_back =
        "Rolling back shop request-success-rate is worse than allowed (sequential test)";
    assert!(
        events.iter().any(|e| match connect_cause {
            None => e.message == rolling_back,
            Some(cause) => e.message.starts_with(rolling_back) && e.message.ends_with(cause),
        }),
        "{events:#?}"
    );
    eventually("post-rollout webhook", Duration::from_secs(5), || {
        !hooks.of_type("post-rollout").is_empty()
    })
    .await;
    assert_eq!(hooks.of_type("post-rollout")[0]["phase"], "Failed");
    proxy.server().analysis().flush().await;
    let saved = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
    assert!(saved.contains("\"Failed\""), "{saved}");
    if let Some(canary) = canary {
        let before = canary.hits();
        let counts = tally(&client(), &proxy.url("/"), 30, &[]).await;
        assert_eq!(counts.get("primary"), Some(&30));
        assert_eq!(canary.hits(), before, "a Failed canary gets nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_500_to_everything_is_at_weight_0_within_2s_with_interval_60s() {
    let canary = Upstream::start("canary").await;
    canary.fail_every.store(1, Ordering::SeqCst);
    burning(canary.addr.to_string(), Some(canary), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_refuses_connections_is_at_weight_0_within_2s_with_interval_60s() {
    // A port nobody listens on: every canary request is a connect failure (502, or retried on
    // the primary and still counted against the canary).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let cause = "canary requests failed to connect: connection refused";
    burning(addr.to_string(), None, Some(cause)).await;
}

fn quick(primary: &Upstream, canary: &Upstream, state: &str) -> String {
    base_config(state, "")
        + &analysed_route(
            primary,
            canary,
            "interval = \"300ms\"\nstep_weights = [25, 50]\nmax_step_duration = \"30s\"",
        )
        + BUILTIN_METRICS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_once_the_evidence_suffices() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Canaryd::start(&quick(
        &primary,
        &canary,
        &format!("{}/", dir.path().display()),
    ));
    let load = Load::start(proxy.url("/"), 200);
    eventually("promotion", Duration::from_secs(20), || {
        phase_and_weight(&proxy).0 == "Succeeded"
    })
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 100);
    // The last check passed on evidence: at least the 297 clean requests ln(20)/ln(0.995/0.985)
    // asks for, every test accepted "good".
    let check = status.last_check.expect("a check ran");
    for metric in &check.metrics {
        let evidence = metric.evidence.as_ref().expect("sequential evidence");
        assert_eq!(evidence.verdict, "pass", "{check:?}");
        assert!(evidence.requests >= 297, "{check:?}");
        assert!(evidence.llr <= evidence.pass_bound);
    }
    let events = proxy.server().analysis().events(Some("shop"));
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("of the evidence needed to pass")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_one_request_in_ten_is_rolled_back_on_evidence() {
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    canary.fail_every.store(10, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Canaryd::start(&quick(
        &primary,
        &canary,
        &format!("{}/", dir.path().display()),
    ));
    let load = Load::start(proxy.url("/"), 200);
    eventually("rollback", Duration::from_secs(20), || {
        phase_and_weight(&proxy).0 == "Failed"
    })
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 0);
    let check = status.last_check.expect("a check ran");
    let rate = check
        .metrics
        .iter()
        .find(|m| m.name == "request-success-rate")
        .and_then(|m| m.evidence.clone())
        .expect("success-rate evidence");
    assert_eq!(rate.verdict, "rollback");
    assert!(rate.llr >= rate.rollback_bound);
    assert!(rate.p_value <= 0.01 / 2.0, "{rate:?}");
    let events = proxy.server().analysis().events(Some("shop"));
    assert!(
        events.iter().any(
            |e| e.message.starts_with("Halt shop advancement: error rate")
                && e.message
                    .ends_with("100% of the evidence needed to roll back")
        ),
        "{events:#?}"
    );
}
