//! Tests for notices (docs/rollouts.md#notifications) against a real HTTPS receiver on
//! 127.0.0.1 whose certificate is signed by a test CA: chat formats, retries with backoff, the
//! token header sent and never logged, and the hooks built from a real config file.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::analysis::runner::test_pki::TestPki;

/// The token the hooks send; it must reach the receiver and never a log line.
const TOKEN: &str = "Bearer s3cr3t-t0ken-4242";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    authorization: Option<String>,
    content_type: Option<String>,
    json: serde_json::Value,
}

/// An HTTPS webhook receiver: answers 503 to the first `down_for` requests, then 200.
struct HttpsReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl HttpsReceiver {
    async fn start(pki: &TestPki, down_for: usize) -> HttpsReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&received);
        let acceptor = pki.acceptor.clone();
        let seen = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let log = Arc::clone(&log);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        let seen = Arc::clone(&seen);
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .map(|v| v.to_str().unwrap().to_owned())
                            };
                            let authorization = header("authorization");
                            let content_type = header("content-type");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(Received {
                                authorization,
                                content_type,
                                json: serde_json::from_slice(&body).unwrap(),
                            });
                            let status = if seen.fetch_add(1, Ordering::SeqCst) < down_for {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            };
                            let mut response = Response::new(Full::new(Bytes::from("ok")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpsReceiver { addr, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The route's hooks as `canaryd check` would build them from `hooks` (TOML of
/// `[[route.webhooks]]` tables), with `ca.pem` and the token file in `dir`.
fn hooks_from_config(dir: &Path, hooks: &str) -> Vec<WebhookConfig> {
    std::fs::write(dir.join("hook-token"), format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[admin]
public_url = "https://canaryd.example.com/"

[[route]]
name = "shop"
hosts = ["shop.example"]
[route.primary]
revision = "v1.4.2"
endpoints = ["127.0.0.1:1"]
[route.canary]
revision = "v1.5.0"
endpoints = ["127.0.0.1:2"]
{hooks}
"#
    );
    let config = crate::config::parse_str(&text, &dir.join("canaryd.toml")).unwrap();
    config.routes[0].webhooks.clone()
}

fn failed_payload() -> WebhookPayload {
    WebhookPayload {
        route: "shop".to_owned(),
        phase: Phase::Failed,
        revision: "v1.5.0".to_owned(),
        primary_revision: "v1.4.2".to_owned(),
        weight: 0,
        failed_checks: 1,
        message: Some("shop v1.5.0 Failed".to_owned()),
        reason: Some(
            "request-success-rate is worse than allowed (sequential test): error rate 2.10% over 1,000 requests, 100% of the evidence needed to roll back"
                .to_owned(),
        ),
        severity: Severity::Info,
    }
}

const FAST: Backoff = Backoff {
    first: Duration::from_millis(20),
    max: Duration::from_millis(40),
};

#[tokio::test]
async fn slack_notice_over_https_reads_like_an_alert_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let receiver = HttpsReceiver::start(&pki, 0).await;
    let hooks = hooks_from_config(
        dir.path(),
        &format!(
            r#"[[route.webhooks]]
type = "post-rollout"
url = "https://localhost:{}/services/T0/B0/x"
format = "slack"
ca = "ca.pem"
headers = {{ Authorization = "file:hook-token" }}
"#,
            receiver.addr.port()
        ),
    );
    let (answer, attempts) = deliver(&hooks[0], &failed_payload(), FAST).await;
    assert_eq!(answer, WebhookAnswer::Yes);
    assert_eq!(attempts, 1);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let seen = &received[0];
    assert_eq!(
        seen.authorization.as_deref(),
        Some(TOKEN),
        "newline trimmed"
    );
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    let body = &seen.json;
    assert_eq!(body["text"], "shop v1.5.0 rolled back");
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "danger");
    assert_eq!(attachment["title"], "shop");
    assert_eq!(attachment["title_link"], "https://canaryd.example.com/");
    assert_eq!(attachment["text"], failed_payload().reason.unwrap());
    let fields: Vec<(String, String)> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_owned(),
                f["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = failed_payload().reason.unwrap();
    let expected = [
        ("Route", "shop"),
        ("Canary", "v1.5.0"),
        ("Primary", "v1.4.2"),
        ("Weight", "0%"),
        ("Phase", "Failed"),
        ("Failed checks", "1"),
        ("Reason", reason.as_str()),
    ];
    assert_eq!(
        fields,
        expected
            .iter()
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_unknown_ca_is_refused_and_not_retried_into_success() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let receiver = HttpsReceiver::start(&pki, 0).await;
    // Another CA's file: the receiver's certificate does not chain to it.
    let other = tempfile::tempdir().unwrap();
    let _ = TestPki::new(other.path());
    std::fs::copy(other.path().join("ca.pem"), dir.path().join("other-ca.pem")).unwrap();
    let hooks = hooks_from_config(
        dir.path(),
        &format!(
            r#"[[route.webhooks]]
type = "event"
url = "https://127.0.0.1:{}/hook"
ca = "other-ca.pem"
retries = 1
"#,
            receiver.addr.port()
        ),
    );
    let (answer, attempts) = deliver(&hooks[0], &failed_payload(), FAST).await;
    let WebhookAnswer::No { reason } = answer else {
        panic!("an unverified server was trusted");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert_eq!(attempts, 2);
    assert!(receiver.received().is_empty(), "no request without trust");
}

#[tokio::test]
async fn receiver_down_twice_then_up_gets_the_notice_once_on_the_third_try() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let receiver = HttpsReceiver::start(&pki, 2).await;
    let hooks = hooks_from_config(
        dir.path(),
        &format!(
            r#"[[route.webhooks]]
type = "event"
url = "https://127.0.0.1:{}/hook"
ca = "ca.pem"
retries = 5
"#,
            receiver.addr.port()
        ),
    );
    let started = std::time::Instant::now();
    let (answer, attempts) = deliver(&hooks[0], &failed_payload(), FAST).await;
    assert_eq!(answer, WebhookAnswer::Yes);
    assert_eq!(attempts, 3);
    // Two waits of at least half of 20 ms and 40 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "{:?}",
        started.elapsed()
    );
    // Three requests arrived, two answered 503: the notice was delivered once.
    assert_eq!(receiver.received().len(), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.received().len(), 3, "nothing after the delivery");
}

#[test]
fn backoff_doubles_with_jitter_up_to_its_cap() {
    for _ in 0..100 {
        let first = Backoff::NOTICES.wait(1);
        assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first));
        let third = Backoff::NOTICES.wait(3);
        assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&third));
        let late = Backoff::NOTICES.wait(40);
        assert!((Duration::from_secs(30)..=Duration::from_secs(60)).contains(&late));
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test process, at every level. Global rather than a thread-local
/// default: `tracing` caches per call site whether anyone listens, and a test running on
/// another thread without a subscriber would otherwise make this one miss lines.
fn captured_logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

#[tokio::test]
async fn the_token_is_sent_but_never_logged_and_a_final_failure_is_reported() {
    let logs = captured_logs();

    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    // Down for longer than the hook retries: the notice finally fails.
    let receiver = HttpsReceiver::start(&pki, 10).await;
    let hooks = hooks_from_config(
        dir.path(),
        &format!(
            r#"[[route.webhooks]]
type = "post-rollout"
url = "https://localhost:{}/hook"
ca = "ca.pem"
retries = 1
headers = {{ Authorization = "file:hook-token", X-Team = "web" }}
"#,
            receiver.addr.port()
        ),
    );
    assert!(
        !format!("{hooks:?}").contains("s3cr3t"),
        "Debug of the config shows no header value: {hooks:?}"
    );

    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&failures);
    let undelivered: OnUndelivered = Arc::new(move |hook: &WebhookConfig, reason: &str| {
        seen.lock()
            .unwrap()
            .push(format!("{} {reason}", hook.kind.as_str()));
    });
    let handle =
        Webhooks::spawn_fire_and_forget(&hooks[0], &failed_payload(), Some(undelivered)).unwrap();
    assert!(!handle.await.unwrap().is_yes());

    let received = receiver.received();
    assert_eq!(received.len(), 2, "one try and one retry");
    assert!(received
        .iter()
        .all(|r| r.authorization.as_deref() == Some(TOKEN)));
    assert_eq!(
        *failures.lock().unwrap(),
        ["post-rollout localhost answered 503 Service Unavailable".to_owned()]
            .iter()
            .map(|s| s.replace("localhost", &format!("localhost:{}", receiver.addr.port())))
            .collect::<Vec<_>>()
    );

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let ours = format!("localhost:{}/hook", receiver.addr.port());
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&ours)).collect();
    assert!(
        lines.iter().any(|l| l.contains("webhook failed")),
        "the failure is logged: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("retrying")),
        "the retry is logged: {lines:?}"
    );
    // Any line of any test: the token appears nowhere.
    assert!(
        !logs.contains("s3cr3t"),
        "the token leaked into the logs: {logs}"
    );
}

#[tokio::test]
async fn an_event_hook_gets_only_events_at_or_above_its_severity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let receiver = HttpsReceiver::start(&pki, 0).await;
    let hooks = hooks_from_config(
        dir.path(),
        &format!(
            r#"[[route.webhooks]]
type = "event"
url = "https://127.0.0.1:{}/hook"
ca = "ca.pem"
severity = "warning"
format = "discord"
"#,
            receiver.addr.port()
        ),
    );
    let nobody: OnUndelivered = Arc::new(|_: &WebhookConfig, _: &str| {});
    let mut payload = failed_payload();
    payload.phase = Phase::Progressing;
    payload.reason = None;
    payload.message = Some("Advance shop canary weight 20".to_owned());
    Webhooks::notify(&hooks, WebhookKind::Event, &payload, &nobody);
    payload.severity = Severity::Warning;
    payload.message = Some("Halt shop advancement success rate 97.00% < 99%".to_owned());
    Webhooks::notify(&hooks, WebhookKind::Event, &payload, &nobody);
    for _ in 0..200 {
        if !receiver.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let embed = &received[0].json["embeds"][0];
    assert_eq!(
        embed["title"],
        "Halt shop advancement success rate 97.00% < 99%"
    );
    assert_eq!(embed["color"], 0xD40E0D);
    assert_eq!(embed["url"], "https://canaryd.example.com/");
}

#[test]
fn teams_card_carries_the_facts_and_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = hooks_from_config(
        dir.path(),
        r#"[[route.webhooks]]
type = "post-rollout"
url = "http://127.0.0.1:1/hook"
format = "msteams"
"#,
    );
    let mut payload = failed_payload();
    payload.phase = Phase::Succeeded;
    payload.weight = 100;
    payload.failed_checks = 0;
    payload.reason = Some("every check passed".to_owned());
    let card: serde_json::Value = serde_json::from_slice(&payload.to_json(&hooks[0])).unwrap();
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["themeColor"], "2EB886");
    assert_eq!(card["summary"], "shop v1.5.0 promoted");
    let section = &card["sections"][0];
    assert_eq!(section["activitySubtitle"], "every check passed");
    assert_eq!(section["facts"][3]["name"], "Weight");
    assert_eq!(section["facts"][3]["value"], "100%");
    assert_eq!(
        card["potentialAction"][0]["targets"][0]["uri"],
        "https://canaryd.example.com/"
    );
}
