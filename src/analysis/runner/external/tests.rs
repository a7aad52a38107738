//! The external metrics' client against a metrics server on a real loopback socket: http-json
//! values parsed, bad JSON / a missing path / a 500 / a dead server inconclusive; a
//! Prometheus-shaped answer read; the query actually sent, with its placeholders filled, seen
//! by the server; an https server verified against the metric's `ca`, and one signed by
//! another CA inconclusive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};

use super::test_server::{Answer, MetricsServer};
use super::*;
use crate::analysis::judge::external::{judge_external, ExternalVerdict};
use crate::analysis::runner::test_pki::TestPki;

/// Each path answers a fixed status and body.
fn answers() -> Answer {
    Arc::new(|target: &str| {
        let path = target.split('?').next().unwrap_or(target);
        let (status, body) = match path {
            "/ok" => (
                StatusCode::OK,
                r#"{"data":{"value":0.25,"list":[1,"7.5"]}}"#,
            ),
            "/bad-json" => (StatusCode::OK, "<html>not json</html>"),
            "/missing" => (StatusCode::OK, r#"{"data":{}}"#),
            "/text" => (StatusCode::OK, r#"{"data":{"value":"n/a"}}"#),
            "/error" => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"data":{"value":0}}"#),
            "/api/v1/query" => (
                StatusCode::OK,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"3.5"]}]}}"#,
            ),
            _ => (StatusCode::NOT_FOUND, "{}"),
        };
        (status, body.to_owned())
    })
}

fn values() -> Placeholders {
    Placeholders {
        route: "shop".to_owned(),
        revision: "v1.5.0".to_owned(),
        primary_revision: "v1.4.2".to_owned(),
        interval: promql_duration(Duration::from_secs(60)),
    }
}

fn json_metric(url: String, path: Vec<JsonStep>, body: Option<String>) -> ExternalMetric {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer t0k3n"));
    ExternalMetric {
        name: "checkout-errors".to_owned(),
        source: MetricSource::HttpJson {
            url,
            body,
            path: JsonPath(path),
        },
        min: None,
        max: Some(0.5),
        headers,
        roots: None,
        timeout: Duration::from_secs(2),
        dry_run: false,
    }
}

fn value_path() -> Vec<JsonStep> {
    vec![
        JsonStep::Key("data".to_owned()),
        JsonStep::Key("value".to_owned()),
    ]
}

#[tokio::test]
async fn an_http_json_value_is_read_at_its_path_and_judged_by_max() {
    let server = MetricsServer::start(answers()).await;
    let metric = json_metric(server.url("/ok?rev={revision}"), value_path(), None);
    let reading = read(&metric, &values()).await;
    assert_eq!(reading.result, Ok(Reading::Value(0.25)));
    assert_eq!(
        reading.query,
        server.url("/ok?rev=v1.5.0"),
        "placeholders filled"
    );
    let (verdict, report) = judge_external(&metric, Some(&reading));
    assert_eq!(verdict, ExternalVerdict::Pass);
    assert_eq!(report.value, Some(0.25));
    assert_eq!(report.query.as_deref(), Some(reading.query.as_str()));
    let seen = server.seen();
    assert_eq!(seen[0].0, "/ok?rev=v1.5.0");
    assert_eq!(
        seen[0].1.as_deref(),
        Some("Bearer t0k3n"),
        "headers are sent"
    );

    // Above max: a failure naming what was read and allowed.
    let strict = ExternalMetric {
        max: Some(0.1),
        ..metric.clone()
    };
    let (verdict, _) = judge_external(&strict, Some(&reading));
    assert_eq!(verdict, ExternalVerdict::Fail("0.25 > max 0.1".to_owned()));

    // Indexed steps, and numbers written as strings.
    let indexed = json_metric(
        server.url("/ok"),
        vec![
            JsonStep::Key("data".to_owned()),
            JsonStep::Key("list".to_owned()),
            JsonStep::Index(1),
        ],
        Some(r#"{"route":"{route}"}"#.to_owned()),
    );
    assert_eq!(
        read(&indexed, &values()).await.result,
        Ok(Reading::Value(7.5))
    );
    let seen = server.seen();
    assert_eq!(
        seen[1].2, r#"{"route":"shop"}"#,
        "a body is POSTed, placeholders filled"
    );
}

#[tokio::test]
async fn bad_json_a_missing_path_a_500_or_no_server_is_inconclusive_never_a_pass() {
    let server = MetricsServer::start(answers()).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/ok")
    };
    for (url, why) in [
        (server.url("/bad-json"), "not JSON"),
        (server.url("/missing"), "nothing at $.data.value"),
        (server.url("/text"), "not a number"),
        (server.url("/error"), "500"),
        (dead, "connect"),
    ] {
        let metric = json_metric(url.clone(), value_path(), None);
        let reading = read(&metric, &values()).await;
        let error = reading.result.clone().expect_err(&url);
        assert!(error.contains(why), "{url}: {error}");
        let (verdict, report) = judge_external(&metric, Some(&reading));
        assert!(
            matches!(verdict, ExternalVerdict::Inconclusive(_)),
            "{url}: {verdict:?}"
        );
        assert!(!report.passed);
        assert_eq!(report.value, None);
        assert!(report.error.unwrap().contains(why));
    }
    // Nothing read at all is no pass either.
    let metric = json_metric(server.url("/ok"), value_path(), None);
    assert!(matches!(
        judge_external(&metric, None).0,
        ExternalVerdict::Inconclusive(_)
    ));
}

#[tokio::test]
async fn a_prometheus_instant_vector_is_read_and_the_query_sent_url_encoded() {
    let server = MetricsServer::start(answers()).await;
    let metric = ExternalMetric {
        source: MetricSource::Prometheus {
            address: server.url("").parse().unwrap(),
            query: PromQuery::Value(
                r#"sum(rate(errors_total{revision="{revision}"}[{interval}]))"#.to_owned(),
            ),
        },
        ..json_metric(String::new(), Vec::new(), None)
    };
    let reading = read(&metric, &values()).await;
    assert_eq!(reading.result, Ok(Reading::Value(3.5)));
    assert_eq!(
        reading.query,
        r#"sum(rate(errors_total{revision="v1.5.0"}[60s]))"#
    );
    let seen = server.seen();
    assert!(
        seen[0].0.starts_with("/api/v1/query?query=sum%28rate%28errors%5Ftotal%7Brevision%3D%22v1%2E5%2E0%22%7D%5B60s%5D%29%29"),
        "{}",
        seen[0].0
    );
}

#[test]
fn intervals_are_promql_durations() {
    assert_eq!(promql_duration(Duration::from_secs(60)), "60s");
    assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
}

/// The route's external metrics as `canaryd check` builds them from `metrics` (TOML of
/// `[[route.analysis.metrics]]` tables), with the files they name in `dir`.
fn metrics_from_config(dir: &std::path::Path, metrics: &str) -> Vec<ExternalMetric> {
    let text = format!(
        r#"
[[route]]
name = "shop"
[route.primary]
revision = "v1.4.2"
endpoints = ["127.0.0.1:1"]
[route.canary]
revision = "v1.5.0"
endpoints = ["127.0.0.1:2"]
[route.analysis]
interval = "1m"
step_weights = [50]
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
{metrics}
"#
    );
    let config = crate::config::parse_str(&text, &dir.join("canaryd.toml")).unwrap();
    config.routes[0]
        .analysis
        .as_ref()
        .map(|a| a.external.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_https_source_verified_against_its_ca_is_read_and_an_unknown_ca_is_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = MetricsServer::start_tls(answers(), pki.acceptor.clone()).await;
    // Another CA's certificate: the server's does not chain to it.
    let other = tempfile::tempdir().unwrap();
    let _ = TestPki::new(other.path());
    std::fs::copy(other.path().join("ca.pem"), dir.path().join("other-ca.pem")).unwrap();
    let metrics = metrics_from_config(
        dir.path(),
        &format!(
            r#"
[[route.analysis.metrics]]
name = "errors"
provider = "prometheus"
address = "{prometheus}"
query = 'sum(rate(errors_total{{revision="{{revision}}"}}[{{interval}}]))'
max = 5
ca = "ca.pem"
[[route.analysis.metrics]]
name = "lag"
provider = "http-json"
url = "{json}"
path = "$.data.value"
max = 1
ca = "ca.pem"
[[route.analysis.metrics]]
name = "untrusted"
provider = "prometheus"
address = "{prometheus}"
query = "up"
max = 5
ca = "other-ca.pem"
"#,
            prometheus = server.url(""),
            json = server.url("/ok"),
        ),
    );
    assert!(server.url("").starts_with("https://127.0.0.1:"));
    let readings = read_all(&metrics, &values()).await;

    assert_eq!(readings[0].result, Ok(Reading::Value(3.5)), "{readings:?}");
    assert_eq!(
        readings[0].query,
        r#"sum(rate(errors_total{revision="v1.5.0"}[60s]))"#
    );
    assert_eq!(readings[1].result, Ok(Reading::Value(0.25)), "{readings:?}");
    assert_eq!(
        judge_external(&metrics[0], Some(&readings[0])).0,
        ExternalVerdict::Pass
    );

    // The wrong CA: no value, inconclusive with the reason, never a pass.
    let error = readings[2]
        .result
        .clone()
        .expect_err("an unverified server was trusted");
    assert!(error.contains("TLS handshake"), "{error}");
    let (verdict, report) = judge_external(&metrics[2], Some(&readings[2]));
    assert!(
        matches!(&verdict, ExternalVerdict::Inconclusive(why) if why.contains("TLS handshake")),
        "{verdict:?}"
    );
    assert!(!report.passed);
    assert_eq!(report.value, None);
    // Only the two trusted metrics' requests reached the server.
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|(target, _, _)| !target.contains("query=up")));
}
