//! CI-only: external metrics against a real Prometheus server (`docs/rollouts.md#external-metrics`).
//! Prometheus scrapes two business backends (primary v1, canary v2) that answer every request
//! 200 and count checkouts and checkout errors by revision; canaryd judges the canary on that
//! count through Prometheus: a canary whose counter says failure is rolled back although every
//! HTTP answer was 200, a healthy one is promoted while a `dry_run` metric that would fail
//! decides nothing, and with Prometheus stopped mid-rollout the checks are inconclusive and
//! nothing is promoted. With the sequential judge the count form's events are evidence of a
//! test of their own: the failing canary is rolled back on them.
//!
//! Needs `prometheus` on `PATH` (Debian/Ubuntu: `apt-get install prometheus`), or its path in
//! `PROMETHEUS`. Run with `cargo test --test external_metrics_ci -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{base_config, eventually, Canaryd, Load, Prometheus};
use tokio::net::TcpListener;

/// A backend that answers every request 200 and counts checkouts by revision; while
/// `failing`, every fifth checkout is a business failure (still a 200).
#[derive(Clone)]
struct Business {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
}

impl Business {
    async fn start(revision: &'static str) -> Business {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let flag = Arc::clone(&failing);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (flag, total, errors) =
                    (Arc::clone(&flag), Arc::clone(&total), Arc::clone(&errors));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let body = if request.uri().path() == "/metrics" {
                            format!(
                                "# TYPE checkout_total counter\ncheckout_total{{revision=\"{revision}\"}} {}\n\
                                 # TYPE checkout_errors_total counter\ncheckout_errors_total{{revision=\"{revision}\"}} {}\n",
                                total.load(Ordering::SeqCst),
                                errors.load(Ordering::SeqCst)
                            )
                        } else {
                            let n = total.fetch_add(1, Ordering::SeqCst);
                            if flag.load(Ordering::SeqCst) && n % 5 == 0 {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                            "ok".to_owned()
                        };
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Business { addr, failing }
    }
}

/// Route "shop" judged every second on the checkout count form through `prometheus`, plus
/// `extra` metric tables; two failed checks roll back; steps 50 → promote.
fn config(primary: &Business, canary: &Business, prometheus: &str, extra: &str) -> String {
    base_config("", "")
        + &format!(
            r#"
[[route]]
name = "shop"
[route.primary]
revision = "v1"
endpoints = ["{}"]
[route.canary]
revision = "v2"
endpoints = ["{}"]
[route.analysis]
judge = "threshold"
interval = "1s"
threshold = 2
step_weights = [50]
min_requests = 5
inconclusive_limit = 1000
[[route.analysis.metrics]]
name = "checkout-success"
provider = "prometheus"
address = "{prometheus}"
failures = 'sum(increase(checkout_errors_total{{revision="{{revision}}"}}[5s]))'
total = 'sum(increase(checkout_total{{revision="{{revision}}"}}[5s]))'
threshold = 99.0
timeout = "1s"
{extra}"#,
            primary.addr, canary.addr
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus)"]
async fn a_canary_whose_business_counter_fails_is_rolled_back_though_every_answer_is_200() {
    let (primary, canary) = (Business::start("v1").await, Business::start("v2").await);
    canary.failing.store(true, Ordering::SeqCst);
    let prometheus = Prometheus::start("business", &[primary.addr, canary.addr]);
    let proxy = Canaryd::start(&config(&primary, &canary, &prometheus.address, ""));
    let load = Load::start(proxy.url("/"), 100);
    eventually("rollback", Duration::from_secs(60), || {
        proxy.phase("shop") == "Failed"
    })
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    let check = status.last_check.unwrap();
    assert_eq!(
        check.canary.success_rate,
        Some(100.0),
        "every answer was a 200"
    );
    let metric = check
        .metrics
        .iter()
        .find(|m| m.name == "checkout-success")
        .unwrap();
    assert!(metric.value.unwrap() < 99.0, "{metric:?}");
    assert!(metric.query.as_ref().unwrap().contains(r#"revision="v2""#));
    assert_eq!(status.weight, 0, "all traffic back on the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus)"]
async fn the_sequential_judge_rolls_back_on_the_business_counters_events() {
    let (primary, canary) = (Business::start("v1").await, Business::start("v2").await);
    canary.failing.store(true, Ordering::SeqCst);
    let prometheus = Prometheus::start("business", &[primary.addr, canary.addr]);
    // The sequential judge (the default), each check counting the events since the last one.
    let text = config(&primary, &canary, &prometheus.address, "")
        .replace(
            "judge = \"threshold\"\ninterval = \"1s\"",
            "interval = \"3s\"",
        )
        .replace("[5s]", "[{interval}]");
    assert!(!text.contains("judge ="), "{text}");
    let proxy = Canaryd::start(&text);
    let load = Load::start(proxy.url("/"), 100);
    eventually("rollback", Duration::from_secs(60), || {
        proxy.phase("shop") == "Failed"
    })
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    let reason = status.reason.unwrap_or_default();
    assert!(
        reason.starts_with("checkout-success is worse than allowed (sequential test)"),
        "{reason}"
    );
    let check = status.last_check.unwrap();
    assert_eq!(
        check.canary.success_rate,
        Some(100.0),
        "every answer was a 200"
    );
    let metric = check
        .metrics
        .iter()
        .find(|m| m.name == "checkout-success")
        .unwrap();
    let evidence = metric.evidence.as_ref().unwrap();
    assert!(
        evidence.events > 0 && evidence.requests > evidence.events,
        "{metric:?}"
    );
    assert_eq!(evidence.verdict, "rollback");
    assert!(
        metric.query.as_ref().unwrap().contains(r#"[3s]"#),
        "{metric:?}"
    );
    eprintln!(
        "rolled back on {} failed of {} checkouts",
        evidence.events, evidence.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus)"]
async fn a_healthy_canary_is_promoted_and_a_dry_run_metric_decides_nothing() {
    let (primary, canary) = (Business::start("v1").await, Business::start("v2").await);
    let prometheus = Prometheus::start("business", &[primary.addr, canary.addr]);
    // Would fail every check: the canary sells more than nothing.
    let dry_run = format!(
        "[[route.analysis.metrics]]\nname = \"checkouts\"\nprovider = \"prometheus\"\naddress = \"{}\"\n\
         query = 'sum(checkout_total{{revision=\"{{revision}}\",job=\"business\"}})'\nmax = -1\ndry_run = true\n",
        prometheus.address
    );
    let proxy = Canaryd::start(&config(&primary, &canary, &prometheus.address, &dry_run));
    let load = Load::start(proxy.url("/"), 100);
    eventually("promotion", Duration::from_secs(60), || {
        proxy.phase("shop") == "Succeeded"
    })
    .await;
    load.stop().await;
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.failed_checks, 0);
    let check = status.last_check.unwrap();
    let dry = check
        .metrics
        .iter()
        .find(|m| m.name == "checkouts")
        .unwrap();
    assert!(dry.dry_run);
    assert!(!dry.passed, "{dry:?}");
    assert!(dry.value.is_some(), "its value is shown: {dry:?}");
    let events = proxy.server().analysis().events(None);
    assert!(
        events
            .iter()
            .any(|e| e.message.starts_with("Dry run metric checkouts of shop: ")),
        "evented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus)"]
async fn with_prometheus_stopped_mid_rollout_checks_are_inconclusive_and_nothing_is_promoted() {
    let (primary, canary) = (Business::start("v1").await, Business::start("v2").await);
    let prometheus = Prometheus::start("business", &[primary.addr, canary.addr]);
    let address = prometheus.address.clone();
    // Many steps: the rollout is still going when Prometheus stops.
    let text = config(&primary, &canary, &address, "").replace(
        "step_weights = [50]",
        "step_weights = [10, 20, 30, 40, 50, 60, 70, 80, 90]",
    );
    let proxy = Canaryd::start(&text);
    let load = Load::start(proxy.url("/"), 100);
    eventually("a first advance", Duration::from_secs(60), || {
        proxy
            .server()
            .analysis()
            .status("shop")
            .is_some_and(|s| s.weight >= 20)
    })
    .await;
    drop(prometheus);
    // Let the checks meet the dead server a few times.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = proxy.server().analysis().status("shop").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.stop().await;
    let after = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(after.phase, "Progressing");
    assert_eq!(after.weight, before.weight, "no advance without data");
    assert!(after.inconclusive_checks >= 3, "{after:?}");
    let metric = after
        .last_check
        .unwrap()
        .metrics
        .into_iter()
        .find(|m| m.name == "checkout-success")
        .unwrap();
    assert!(!metric.passed);
    assert!(
        metric.error.unwrap().contains("connect"),
        "the error is shown"
    );
}
