//! The external metrics' client against a metrics server on a real loopback socket: http-json
//! values parsed, bad JSON / a missing path / a 500 / a dead server inconclusive; a
//! Prometheus-shaped answer read; the query actually sent, with its placeholders filled, seen
//! by the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::analysis::judge::external::{judge_external, ExternalVerdict};

/// What the server saw of one request: target, authorization header, body.
type Seen = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

/// A metrics server: each path answers a fixed status and body; every request is kept.
struct MetricsServer {
    addr: SocketAddr,
    seen: Seen,
}

fn answer(path: &str) -> (StatusCode, &'static str) {
    match path {
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
    }
}

impl MetricsServer {
    async fn start() -> MetricsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let target = request.uri().to_string();
                            let path = request.uri().path().to_owned();
                            let auth = request
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push((
                                target,
                                auth,
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            let (status, body) = answer(&path);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MetricsServer { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
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
    let server = MetricsServer::start().await;
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
    let seen = server.seen.lock().unwrap().clone();
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
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen[1].2, r#"{"route":"shop"}"#,
        "a body is POSTed, placeholders filled"
    );
}

#[tokio::test]
async fn bad_json_a_missing_path_a_500_or_no_server_is_inconclusive_never_a_pass() {
    let server = MetricsServer::start().await;
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
    let server = MetricsServer::start().await;
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
    let seen = server.seen.lock().unwrap().clone();
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
