//! Tests for webhook calls against a real receiver on 127.0.0.1.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    host: Option<String>,
    content_type: Option<String>,
    json: serde_json::Value,
}

/// A webhook receiver: records every request, then answers `status` after `delay`.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(status: u16, delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .map(|v| v.to_str().unwrap().to_string())
                            };
                            let seen = Received {
                                method: req.method().to_string(),
                                target: req.uri().to_string(),
                                host: header("host"),
                                content_type: header("content-type"),
                                json: serde_json::Value::Null,
                            };
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&body).unwrap();
                            log.lock().unwrap().push(Received { json, ..seen });
                            tokio::time::sleep(delay).await;
                            let mut response = Response::new(Full::new(Bytes::from("ok")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            if (300..400).contains(&status) {
                                // Points at this same receiver: following it would show up as a
                                // second recorded request.
                                response
                                    .headers_mut()
                                    .insert("location", "/redirected".parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, received }
    }

    async fn answering(status: u16) -> Receiver {
        Self::start(status, Duration::ZERO).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn hook(kind: WebhookKind, url: &str, timeout: Duration) -> WebhookConfig {
    let mut metadata = BTreeMap::new();
    metadata.insert("suite".to_string(), "smoke".to_string());
    WebhookConfig {
        kind,
        url: url.parse().unwrap(),
        timeout,
        metadata,
        format: crate::config::WebhookFormat::Generic,
        severity: crate::config::WebhookSeverity::Info,
        headers: http::HeaderMap::new(),
        retries: 0,
        roots: None,
        status_page: None,
    }
}

fn payload() -> WebhookPayload {
    WebhookPayload {
        route: "shop".to_string(),
        phase: Phase::Progressing,
        revision: "v1.5.0".to_string(),
        primary_revision: "v1.4.2".to_string(),
        weight: 20,
        failed_checks: 1,
        message: None,
        reason: None,
        severity: Severity::Info,
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn reason(answer: WebhookAnswer) -> String {
    match answer {
        WebhookAnswer::No { reason } => reason,
        WebhookAnswer::Yes => panic!("expected No, got Yes"),
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn two_hundred_is_yes_and_payload_has_exactly_the_spec_fields() {
    let receiver = Receiver::answering(200).await;
    let hook = hook(
        WebhookKind::ConfirmPromotion,
        &receiver.url("/gate?team=web"),
        SECOND,
    );
    assert_eq!(call(&hook, &payload()).await, WebhookAnswer::Yes);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let seen = &received[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/gate?team=web");
    assert_eq!(
        seen.host.as_deref(),
        Some(receiver.addr.to_string().as_str())
    );
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen.json,
        serde_json::json!({
            "route": "shop",
            "type": "confirm-promotion",
            "phase": "Progressing",
            "revision": "v1.5.0",
            "primary_revision": "v1.4.2",
            "weight": 20,
            "failed_checks": 1,
            "metadata": {"suite": "smoke"}
        })
    );
}

#[test]
fn body_keeps_spec_field_order_and_adds_message_only_when_set() {
    let hook = hook(WebhookKind::Event, "http://127.0.0.1:1/", SECOND);
    let mut payload = payload();
    payload.phase = Phase::WaitingPromotion;
    let json = String::from_utf8(payload.to_json(&hook)).unwrap();
    assert_eq!(
        json,
        r#"{"route":"shop","type":"event","phase":"WaitingPromotion","revision":"v1.5.0","primary_revision":"v1.4.2","weight":20,"failed_checks":1,"metadata":{"suite":"smoke"}}"#
    );
    payload.message = Some("Advance shop canary weight 20".to_string());
    let value: serde_json::Value = serde_json::from_slice(&payload.to_json(&hook)).unwrap();
    assert_eq!(value["message"], "Advance shop canary weight 20");
}

#[tokio::test]
async fn dns_name_works_and_default_path_is_slash() {
    let receiver = Receiver::answering(204).await;
    let url = format!("http://localhost:{}", receiver.addr.port());
    let hook = hook(WebhookKind::Rollout, &url, SECOND);
    assert_eq!(call(&hook, &payload()).await, WebhookAnswer::Yes);
    let seen = &receiver.received()[0];
    assert_eq!(seen.target, "/");
    assert_eq!(
        seen.host.as_deref(),
        Some(format!("localhost:{}", receiver.addr.port()).as_str())
    );
}

#[tokio::test]
async fn five_hundred_is_no() {
    let receiver = Receiver::answering(500).await;
    let hook = hook(WebhookKind::Rollout, &receiver.url("/"), SECOND);
    let reason = reason(call(&hook, &payload()).await);
    assert!(reason.contains("500"), "{reason}");
}

#[tokio::test]
async fn redirect_is_no_and_not_followed() {
    let receiver = Receiver::answering(302).await;
    let hook = hook(WebhookKind::Rollout, &receiver.url("/hook"), SECOND);
    let reason = reason(call(&hook, &payload()).await);
    assert!(reason.contains("302"), "{reason}");
    // Give a (wrongly) followed redirect time to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].target, "/hook");
}

#[tokio::test]
async fn timeout_is_no_within_the_timeout() {
    let receiver = Receiver::start(200, Duration::from_secs(10)).await;
    let timeout = Duration::from_millis(300);
    let hook = hook(WebhookKind::Rollout, &receiver.url("/"), timeout);
    let started = Instant::now();
    let reason = reason(call(&hook, &payload()).await);
    let took = started.elapsed();
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(500), "{took:?}");
    assert!(reason.contains("within"), "{reason}");
    assert_eq!(receiver.received().len(), 1, "the request itself was sent");
}

#[tokio::test]
async fn connection_refused_is_no() {
    let addr = closed_port().await;
    let hook = hook(WebhookKind::Rollout, &format!("http://{addr}/"), SECOND);
    let reason = reason(call(&hook, &payload()).await);
    assert!(reason.contains("connect"), "{reason}");
}

#[tokio::test]
async fn non_http_url_is_no_without_connecting() {
    let hook = hook(WebhookKind::Rollout, "ftp://127.0.0.1:1/", SECOND);
    let reason = reason(call(&hook, &payload()).await);
    assert!(reason.contains("http://"), "{reason}");
}

#[tokio::test]
async fn fire_and_forget_returns_at_once_even_when_the_receiver_hangs() {
    let receiver = Receiver::start(200, Duration::from_secs(30)).await;
    let hook = hook(
        WebhookKind::PostRollout,
        &receiver.url("/done"),
        Duration::from_secs(20),
    );
    let started = Instant::now();
    let handle = Webhooks::spawn_fire_and_forget(&hook, &payload(), None).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    // The call does happen in the background.
    for _ in 0..100 {
        if !receiver.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received().len(), 1);
    assert!(!handle.is_finished(), "the receiver is still hanging");
    handle.abort();
}

#[tokio::test]
async fn fire_and_forget_reports_the_answer() {
    let receiver = Receiver::answering(500).await;
    let hook = hook(WebhookKind::Event, &receiver.url("/"), SECOND);
    let handle = Webhooks::spawn_fire_and_forget(&hook, &payload(), None).unwrap();
    assert!(!handle.await.unwrap().is_yes());
}

#[test]
fn fire_and_forget_outside_a_runtime_does_not_panic() {
    let hook = hook(WebhookKind::Event, "http://127.0.0.1:1/", SECOND);
    assert!(Webhooks::spawn_fire_and_forget(&hook, &payload(), None).is_none());
}

#[tokio::test]
async fn ask_with_no_hook_of_that_kind_is_yes() {
    let receiver = Receiver::answering(500).await;
    let hooks = [hook(WebhookKind::Rollback, &receiver.url("/"), SECOND)];
    let answer = Webhooks::ask(&hooks, WebhookKind::ConfirmRollout, &payload()).await;
    assert_eq!(answer, WebhookAnswer::Yes);
    assert!(receiver.received().is_empty(), "other kinds are not called");
    assert_eq!(
        Webhooks::ask(&[], WebhookKind::Rollout, &payload()).await,
        WebhookAnswer::Yes
    );
}

#[tokio::test]
async fn ask_is_yes_only_if_every_hook_says_yes() {
    let yes = Receiver::answering(200).await;
    let no = Receiver::answering(503).await;
    let mut second = hook(WebhookKind::PreRollout, &yes.url("/b"), SECOND);
    second
        .metadata
        .insert("suite".to_string(), "load".to_string());
    let hooks = [
        hook(WebhookKind::PreRollout, &yes.url("/a"), SECOND),
        second.clone(),
    ];
    assert_eq!(
        Webhooks::ask(&hooks, WebhookKind::PreRollout, &payload()).await,
        WebhookAnswer::Yes
    );
    // Each hook got its own metadata and the right type.
    let mut seen: Vec<(String, serde_json::Value)> = yes
        .received()
        .into_iter()
        .map(|r| (r.target, r.json["metadata"]["suite"].clone()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("/a".to_string(), serde_json::json!("smoke")),
            ("/b".to_string(), serde_json::json!("load"))
        ]
    );
    assert!(yes
        .received()
        .iter()
        .all(|r| r.json["type"] == "pre-rollout"));

    let hooks = [
        hook(WebhookKind::PreRollout, &yes.url("/a"), SECOND),
        hook(WebhookKind::PreRollout, &no.url("/c"), SECOND),
        second,
    ];
    let reason = reason(Webhooks::ask(&hooks, WebhookKind::PreRollout, &payload()).await);
    assert!(reason.contains("503"), "{reason}");
    assert!(reason.contains("pre-rollout"), "{reason}");
    assert_eq!(no.received().len(), 1);
}

#[tokio::test]
async fn ask_calls_hooks_concurrently() {
    let slow_a = Receiver::start(200, Duration::from_millis(400)).await;
    let slow_b = Receiver::start(200, Duration::from_millis(400)).await;
    let hooks = [
        hook(WebhookKind::Rollout, &slow_a.url("/"), 5 * SECOND),
        hook(WebhookKind::Rollout, &slow_b.url("/"), 5 * SECOND),
    ];
    let started = Instant::now();
    let answer = Webhooks::ask(&hooks, WebhookKind::Rollout, &payload()).await;
    let took = started.elapsed();
    assert_eq!(answer, WebhookAnswer::Yes);
    assert!(
        took < Duration::from_millis(750),
        "sequential would be ≥ 800 ms: {took:?}"
    );
}

#[tokio::test]
async fn ask_counts_a_timeout_as_no() {
    let yes = Receiver::answering(200).await;
    let hang = Receiver::start(200, Duration::from_secs(10)).await;
    let hooks = [
        hook(WebhookKind::ConfirmTrafficIncrease, &yes.url("/"), SECOND),
        hook(
            WebhookKind::ConfirmTrafficIncrease,
            &hang.url("/"),
            Duration::from_millis(200),
        ),
    ];
    let started = Instant::now();
    let answer = Webhooks::ask(&hooks, WebhookKind::ConfirmTrafficIncrease, &payload()).await;
    assert!(!answer.is_yes());
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
}

#[test]
fn target_and_log_form_of_a_url() {
    let uri: Uri = "http://user:secret@[::1]:8080/hook?token=abc"
        .parse()
        .unwrap();
    let target = Target::from_uri(&uri).unwrap();
    assert_eq!(target.connect_host, "::1");
    assert_eq!(target.port, 8080);
    assert_eq!(
        target.authority, "[::1]:8080",
        "no userinfo in the host header"
    );
    assert_eq!(target.path_and_query, "/hook?token=abc");
    assert_eq!(
        redacted(&uri),
        "http://[::1]:8080/hook",
        "no secrets in logs"
    );

    let target = Target::from_uri(&"http://hooks.example".parse().unwrap()).unwrap();
    assert_eq!(target.port, 80);
    assert_eq!(target.authority, "hooks.example");
    assert_eq!(target.path_and_query, "/");
}
