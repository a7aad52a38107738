//! A canary rolled back because its connections fail says which kind of failure
//! (docs/operations.md#why-a-canary-was-rolled-back): a refused port, a connect that times
//! out, a TLS certificate from a CA canaryd does not trust, a name that does not resolve. Each
//! runs a real rollout against a real loopback socket (or none) and reads the reason where an
//! operator meets it: the status, the events, the `event` and `post-rollout` webhooks, the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pki;
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use pki::{server_config, TestCa};
use support::*;

/// Every message canaryd logs, as formatted (one subscriber for this test binary).
fn logged() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        struct Capture;
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                struct Message(String);
                impl tracing::field::Visit for Message {
                    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                        if f.name() == "message" {
                            self.0 = format!("{v:?}");
                        }
                    }
                }
                let mut message = Message(String::new());
                event.record(&mut message);
                if let Some(log) = LOG.get() {
                    log.lock().unwrap().push(message.0);
                }
            }
        }
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("only this file installs a subscriber");
        Mutex::new(Vec::new())
    })
}

/// Route "shop": primary v1 on `primary`, canary v2 on `canary` (an address or a name), one
/// step of 50%, a check every 300 ms, the first failed check rolls back. `canary_tls` is the
/// body of `[route.canary.tls]`, if any.
fn rollout(primary: &Upstream, canary: &str, canary_tls: &str, hooks: &HookReceiver) -> String {
    let tls = if canary_tls.is_empty() {
        String::new()
    } else {
        format!("[route.canary.tls]\n{canary_tls}")
    };
    base_config("", "retries = 0\nconnect_timeout = \"200ms\"")
        + &format!(
            "\n[[route]]\nname = \"shop\"\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{}\"]\n[route.canary]\nrevision = \"v2\"\nendpoints = [\"{canary}\"]\n\
             {tls}[route.analysis]\njudge = \"threshold\"\ninterval = \"300ms\"\nthreshold = 1\n\
             step_weights = [50]\nmin_requests = 5\ninconclusive_limit = 50\n",
            primary.addr
        )
        + BUILTIN_METRICS
        + &format!(
            "[[route.webhooks]]\ntype = \"post-rollout\"\nurl = \"{}\"\n\
             [[route.webhooks]]\ntype = \"event\"\nurl = \"{}\"\n",
            hooks.url("/done"),
            hooks.url("/event"),
        )
}

/// Roll `canary` out under load until it is rolled back, then check that the status, the
/// events, both webhooks and the log all name `kind`, and that the metrics count the failed
/// connects under `cause` (`canaryd_upstream_connect_failures_total`).
async fn rolled_back_naming(canary: &str, canary_tls: &str, kind: &str, cause: &str) {
    logged();
    let primary = Upstream::start("primary").await;
    let hooks = HookReceiver::start().await;
    let proxy = Canaryd::start(&rollout(&primary, canary, canary_tls, &hooks));
    let load = Load::start(proxy.url("/"), 200);
    let analysis = proxy.server().analysis();
    eventually("rollback", Duration::from_secs(20), || {
        analysis.status("shop").is_some_and(|s| s.phase == "Failed")
    })
    .await;
    load.stop().await;

    let named = format!("canary requests failed to connect: {kind}");
    let reason = analysis.status("shop").unwrap().reason.unwrap_or_default();
    assert!(
        reason.starts_with("failed checks threshold reached 1: ") && reason.ends_with(&named),
        "status reason {reason:?} does not end with {named:?}"
    );

    let messages: Vec<String> = analysis
        .events(Some("shop"))
        .into_iter()
        .map(|e| e.message)
        .collect();
    let rolling_back = format!("Rolling back shop {reason}");
    assert!(messages.contains(&rolling_back), "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Halt shop advancement success rate") && m.ends_with(&named)),
        "no failed check naming {kind:?}: {messages:#?}"
    );

    eventually("post-rollout webhook", Duration::from_secs(5), || {
        !hooks.of_type("post-rollout").is_empty()
    })
    .await;
    assert_eq!(hooks.of_type("post-rollout")[0]["reason"], reason.as_str());
    eventually(
        "the rollback's event webhook",
        Duration::from_secs(5),
        || {
            hooks
                .of_type("event")
                .iter()
                .any(|e| e["message"] == rolling_back.as_str())
        },
    )
    .await;
    assert!(
        logged().lock().unwrap().contains(&rolling_back),
        "the log has no {rolling_back:?}"
    );

    let (_, _, metrics) = get(&client(), &format!("http://{}/metrics", proxy.admin), &[]).await;
    let series = format!(
        "canaryd_upstream_connect_failures_total{{route=\"shop\",version=\"canary\",cause=\"{cause}\"}} "
    );
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|n| n.parse::<f64>().ok());
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "{series}is {counted:?} in\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_port_refuses_connections_is_rolled_back_for_connection_refused() {
    // A port nothing listens on: bound once to find it free, then closed.
    let refused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    rolled_back_naming(&refused.to_string(), "", "connection refused", "refused").await;
}

/// A loopback listener that never accepts, its one-connection queue full: a connect to it
/// hangs (the kernel drops the SYN) until `connect_timeout`. The returned streams hold the
/// queue full.
fn hanging_listener() -> (SocketAddr, socket2::Socket, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    // Fill the accept queue; a connect that does not complete at once means it is full.
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    (addr, socket, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_connects_hang_is_rolled_back_for_connect_timeout() {
    let (hanging, _listener, _held) = hanging_listener();
    rolled_back_naming(&hanging.to_string(), "", "connect timeout", "timeout").await;
}

/// A TLS server whose certificate comes from a CA canaryd was not told to trust.
async fn tls_server_of_another_ca() -> SocketAddr {
    let other = TestCa::new("other ca");
    let config = server_config(&other.server(&["orders.internal"]), &[b"http/1.1"], None);
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            // canaryd refuses the certificate: the handshake ends in an error, nothing is served.
            tokio::spawn(async move { acceptor.accept(stream).await.map(drop) });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_a_certificate_of_an_unknown_ca_is_rolled_back_for_its_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestCa::new("test ca");
    let upstream = tls_server_of_another_ca().await;
    let tls = format!(
        "ca = \"{}\"\nserver_name = \"orders.internal\"\n",
        trusted.write(dir.path(), "ca.pem").display()
    );
    rolled_back_naming(
        &upstream.to_string(),
        &tls,
        "TLS handshake failure (certificate from an unknown issuer)",
        "tls_unknown_issuer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_name_does_not_resolve_is_rolled_back_for_dns() {
    // `.invalid` never resolves (RFC 6761): the system resolver answers NXDOMAIN, or fails.
    rolled_back_naming(
        "canaryd-test-endpoint.invalid:8080",
        "",
        "DNS resolution failure",
        "dns",
    )
    .await;
}
