//! Count-form external metrics as the sequential judge's evidence
//! (docs/rollouts.md#external-metrics), through the real engine on tokio's paused clock with a
//! real Prometheus-API server on loopback: the business counter's events add up across checks
//! into a test of their own, so a canary whose counter says failure while every HTTP answer is
//! 200 is rolled back, a healthy counter holds a step until it has its own evidence, and a
//! query that fails holds the step, never passes it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

use super::runner::{scenario, start_with, Running, SUCCESS_RATE};
use crate::analysis::runner::external::test_server::{
    prometheus_query, prometheus_sample, MetricsServer,
};
use crate::config::Config;

/// What the business counters say per interval: failed payments, all payments; `None`: the
/// server answers 503.
type Business = Arc<Mutex<Option<(f64, f64)>>>;

/// A Prometheus answering `payments_failed_total` queries with the failures and the others
/// with the total.
async fn prometheus(business: &Business) -> MetricsServer {
    let business = Arc::clone(business);
    MetricsServer::start(Arc::new(move |target: &str| {
        let query = prometheus_query(target).unwrap_or_default();
        match *business.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((failed, _)) if query.contains("payments_failed_total") => {
                (StatusCode::OK, prometheus_sample(failed))
            }
            Some((_, total)) => (StatusCode::OK, prometheus_sample(total)),
            None => (StatusCode::SERVICE_UNAVAILABLE, "{}".to_owned()),
        }
    }))
    .await
}

/// One step of 50%, then promotion; the sequential judge on the success rate and on the
/// `payment-failures` count form (99.5%: good 0.25%, bad 0.75% of payments failing).
fn counted(dir: &Path, prometheus: &MetricsServer) -> Config {
    scenario(
        dir,
        &format!(
            r#"step_weights = [50]
{SUCCESS_RATE}[[route.analysis.metrics]]
name = "payment-failures"
provider = "prometheus"
address = "{}"
failures = 'sum(increase(payments_failed_total{{revision="{{revision}}"}}[{{interval}}]))'
total = 'sum(increase(payments_total{{revision="{{revision}}"}}[{{interval}}]))'
threshold = 99.5
"#,
            prometheus.url(""),
        ),
    )
}

/// The engine on [`counted`], its route task started (it discards what was measured before).
async fn start(dir: &Path, prometheus: &MetricsServer) -> Running {
    let run = start_with(counted(dir, prometheus)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    run
}

/// The `payment-failures` entry of the last check: its evidence's events and count.
fn payments(run: &Running) -> (u64, u64, Option<String>) {
    let status = run
        .analysis
        .status("shop")
        .unwrap_or_else(|| panic!("no status"));
    let check = status.last_check.unwrap_or_else(|| panic!("no check yet"));
    let metric = check
        .metrics
        .iter()
        .find(|m| m.name == "payment-failures")
        .unwrap_or_else(|| panic!("no payment-failures in {:?}", check.metrics));
    let evidence = metric
        .evidence
        .as_ref()
        .unwrap_or_else(|| panic!("a count form without evidence: {metric:?}"));
    (evidence.events, evidence.requests, metric.query.clone())
}

fn reason(run: &Running) -> String {
    run.analysis
        .status("shop")
        .and_then(|s| s.reason)
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_canary_whose_business_counter_fails_is_rolled_back_while_every_answer_is_200() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let business: Business = Arc::new(Mutex::new(Some((3.0, 100.0))));
    let server = prometheus(&business).await;
    let run = start(dir.path(), &server).await;
    assert_eq!(run.status(), ("Progressing", 50));

    // 3% of payments fail (the allowed 0.5%, "bad" 0.75%), every request succeeds: one
    // interval's 100 payments are not enough to decide...
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 50));
    let (failed, payments_seen, query) = payments(&run);
    assert_eq!((failed, payments_seen), (3, 100));
    let query = query.unwrap_or_default();
    assert!(
        query.contains(r#"payments_failed_total{revision="v2"}[60s]"#),
        "{query}"
    );
    // ...the second interval's add to them (a per-check gate would only ever see 3 of 100),
    // and the test accepts "bad" at once: rolled back on the business evidence.
    run.interval(0).await;
    assert_eq!(run.status(), ("Failed", 0));
    let status = run
        .analysis
        .status("shop")
        .unwrap_or_else(|| panic!("no status"));
    assert_eq!(status.failed_checks, 1);
    let why = reason(&run);
    assert!(
        why.starts_with("payment-failures is worse than allowed (sequential test)")
            && why.contains("over 200 events"),
        "{why}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 4, "two queries at each of two checks: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_business_counter_holds_the_step_until_its_own_evidence_passes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let business: Business = Arc::new(Mutex::new(Some((0.0, 100.0))));
    let server = prometheus(&business).await;
    let run = start(dir.path(), &server).await;

    // 100 clean requests an interval pass the request test at the third check (297 needed);
    // 100 clean payments an interval need six (597 at the 0.25%/0.75% of 99.5%).
    for check in 1..=5 {
        run.interval(0).await;
        assert_eq!(run.status(), ("Progressing", 50), "check {check}");
        assert_eq!(payments(&run).1, 100 * check);
    }
    assert!(
        reason(&run).contains("payment-failures failure rate 0.00% over 500 events"),
        "{}",
        reason(&run)
    );
    run.interval(0).await;
    assert_eq!(run.status(), ("Succeeded", 100));
}

#[tokio::test(start_paused = true)]
async fn a_failed_business_query_holds_the_step_and_never_passes_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // 300 clean payments an interval: the count test passes at the second check, the
    // request test at the third.
    let business: Business = Arc::new(Mutex::new(Some((0.0, 300.0))));
    let server = prometheus(&business).await;
    let run = start(dir.path(), &server).await;
    run.interval(0).await;
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 50));

    // Prometheus fails at the check where everything else would pass: held, not promoted.
    *business.lock().unwrap_or_else(|e| e.into_inner()) = None;
    run.interval(0).await;
    assert_eq!(run.status(), ("Progressing", 50));
    assert!(
        reason(&run).starts_with("external metrics inconclusive: payment-failures:"),
        "{}",
        reason(&run)
    );
    // Back: the evidence it had is still there, and the step passes.
    *business.lock().unwrap_or_else(|e| e.into_inner()) = Some((0.0, 300.0));
    run.interval(0).await;
    assert_eq!(run.status(), ("Succeeded", 100));
}
