//! CI-only checks of `/metrics` against the real Prometheus tools: `promtool check metrics` on
//! the rendered text, and a real Prometheus server scraping a running canaryd under traffic.
//!
//! Needs `promtool` and `prometheus` on `PATH` (Debian/Ubuntu: `apt-get install prometheus`), or
//! their paths in `PROMTOOL` / `PROMETHEUS`. Run with `cargo test --test prometheus_ci --
//! --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canaryd::config::Version;
use canaryd::metrics::{
    render, ExpositionInput, LastCheckInput, MetricsRegistry, Outcome, RouteInput,
    UpstreamErrorKind, VersionCheck,
};
use canaryd::routing::Phase;
use http_body_util::{BodyExt, Empty};
use support::{base_config, client, split_route, Canaryd, Load, Prometheus, Upstream};

const NEEDS: &str = "needs promtool and prometheus (Debian package prometheus)";

fn tool(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// An exposition with every family of docs/operations.md#series in it.
fn full_exposition() -> String {
    let registry = MetricsRegistry::default();
    let shop = registry.route("shop");
    for i in 0..100u64 {
        let version = if i % 10 == 0 {
            Version::Canary
        } else {
            Version::Primary
        };
        let outcome = if i % 25 == 0 {
            Outcome::Status(503)
        } else {
            Outcome::Status(200)
        };
        shop.record(version, outcome, Duration::from_micros(300 + i * 997));
    }
    shop.record(
        Version::Canary,
        Outcome::UpstreamError(UpstreamErrorKind::Reset),
        Duration::from_millis(40),
    );
    let site = registry.route("static-site");
    site.record(
        Version::Primary,
        Outcome::Status(304),
        Duration::from_micros(80),
    );
    registry.process.reload_result(true);
    render(&ExpositionInput {
        routes: vec![
            RouteInput {
                name: "shop".into(),
                metrics: shop,
                has_canary: true,
                phase: Phase::Progressing,
                weight: 30,
                failed_checks: 2,
                last_check: Some(LastCheckInput {
                    primary: VersionCheck {
                        success_rate: Some(97.5),
                        p50_ms: Some(4.2),
                        p99_ms: Some(88.0),
                    },
                    canary: VersionCheck {
                        success_rate: Some(99.0),
                        p50_ms: Some(5.0),
                        p99_ms: Some(91.5),
                    },
                    evidence: vec![("request-success-rate".to_owned(), 0.42)],
                    external: Vec::new(),
                }),
            },
            RouteInput {
                name: "static-site".into(),
                metrics: site,
                has_canary: false,
                phase: Phase::Idle,
                weight: 0,
                failed_checks: 0,
                last_check: None,
            },
        ],
        process: &registry.process,
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[test]
#[ignore = "needs promtool and prometheus (Debian package prometheus)"]
fn promtool_accepts_the_exposition() {
    let text = full_exposition();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.prom");
    std::fs::write(&path, &text).unwrap();

    // `promtool check metrics` reads the exposition on stdin.
    let output = Command::new(tool("PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({NEEDS}): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!(
        "promtool exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nexposition:\n{text}",
        output.status.code()
    );
    // Exit 0: parsed and lint-clean (3 would be lint findings, anything else a parse failure).
    // The analysis gauges carry a `metric` label, not the `quantile` the linter reserves for
    // summaries, so nothing is expected.
    assert_eq!(output.status.code(), Some(0), "promtool objected\n{report}");
}

/// The suite's Prometheus (`support::Prometheus`) with the HTTP API calls it makes.
struct PrometheusServer(Prometheus);

impl PrometheusServer {
    /// Start Prometheus scraping `target` (`host:port`) every second.
    fn start(target: &str) -> PrometheusServer {
        PrometheusServer(Prometheus::start("canaryd", &[target.parse().unwrap()]))
    }

    fn log(&self) -> String {
        self.0.log()
    }

    /// `GET` a path of the HTTP API as JSON; `None` while the server is not answering.
    async fn api(&self, path_and_query: &str) -> Option<serde_json::Value> {
        let url = format!("{}{path_and_query}", self.0.address);
        let request = http::Request::get(&url)
            .body(Empty::<Bytes>::new().boxed())
            .ok()?;
        let response = client().request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        self.api(&path)
            .await
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Poll `promql` every 250 ms until `done` accepts its result, or panic after `limit`.
    async fn wait_for(
        &self,
        promql: &str,
        limit: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let result = self.query(promql).await;
            if done(&result) {
                return result;
            }
            if Instant::now() > deadline {
                let targets = self.api("/api/v1/targets").await;
                panic!(
                    "timed out waiting for `{promql}`; last result {result:?}\ntargets: \
                     {targets:#?}\nprometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Percent-encode a PromQL expression for a query string (everything but unreserved chars).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The sample value of one result element.
fn sample_value(result: &serde_json::Value) -> f64 {
    result["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool and prometheus (Debian package prometheus)"]
async fn prometheus_scrapes_weight_and_per_version_rates() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let canaryd =
        Canaryd::start(&(base_config("", "") + &split_route("shop", &primary, &canary, 20)));
    let load = Load::start(canaryd.url("/"), 200);

    let prometheus = PrometheusServer::start(&canaryd.admin.to_string());

    // Scraped successfully at least once: the target is up.
    prometheus
        .wait_for(r#"up{job="canaryd"}"#, Duration::from_secs(30), |r| {
            r.len() == 1 && sample_value(&r[0]) == 1.0
        })
        .await;

    let weight = prometheus
        .wait_for(
            r#"canaryd_canary_weight{route="shop"}"#,
            Duration::from_secs(10),
            |r| r.len() == 1,
        )
        .await;
    assert_eq!(sample_value(&weight[0]), 20.0);

    let phase = prometheus
        .wait_for(
            r#"canaryd_canary_phase{route="shop",phase="Static"}"#,
            Duration::from_secs(10),
            |r| r.len() == 1,
        )
        .await;
    assert_eq!(sample_value(&phase[0]), 1.0);

    // A rate needs two scrapes inside the range with traffic between them.
    let rates = prometheus
        .wait_for(
            r#"sum by (version) (rate(canaryd_requests_total{route="shop"}[10s]))"#,
            Duration::from_secs(30),
            |r| r.len() == 2 && r.iter().all(|s| sample_value(s) > 0.0),
        )
        .await;
    let rate_of = |version: &str| {
        rates
            .iter()
            .find(|s| s["metric"]["version"] == version)
            .map(sample_value)
            .unwrap_or_else(|| panic!("no {version} rate in {rates:?}"))
    };
    let (p, c) = (rate_of("primary"), rate_of("canary"));
    let share = c / (p + c);
    assert!(
        (0.10..=0.30).contains(&share),
        "canary share {share:.3} of {:.1} req/s is not about 20%",
        p + c
    );

    load.stop().await;
    drop(prometheus);
}
