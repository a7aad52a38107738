//! Forwarding through a running canaryd: headers both ways, streaming bodies, the statuses the
//! proxy makes itself, retries and failover, and h2c.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use canaryd::config::Version;
use canaryd::metrics::UpstreamErrorKind;
use canaryd::upstream::ConnectFailure;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(upstream: &Upstream, extra_proxy: &str) -> String {
    base_config("", extra_proxy) + &app_route(upstream)
}

/// An address nothing listens on.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_set() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "version_header = \"x-canaryd-version\""));
    // Raw HTTP/1.1 so the exact request headers are ours.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /a?b=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Secret, X-Forwarded-For\r\n\
          X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Request-Id: rid-1\r\nX-Keep: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let response = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains("x-canaryd-version: primary"),
        "{response}"
    );

    let seen = up.last_seen();
    let h = &seen.headers;
    assert_eq!(seen.uri, "/a?b=1");
    for gone in ["connection", "x-secret", "keep-alive", "proxy-connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h:?}");
    }
    // The proxy relays trailers, so a client's `TE: trailers` goes on as the proxy's own
    // (docs/routing.md#grpc); any other transfer coding in `TE` would not.
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-keep"], "1");
    assert_eq!(h["host"], "shop.test");
    // Untrusted peer: its X-Forwarded-* are replaced, and Connection naming XFF cannot delete ours.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.test");
    assert_eq!(h["x-request-id"], "rid-1");
}

#[tokio::test]
async fn trusted_proxy_extends_forwarded_for_and_request_id_is_generated() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "trusted_proxies = [\"127.0.0.0/8\"]"));
    let client = client();
    get(
        &client,
        &proxy.url("/"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let h = up.last_seen().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-request-id"].len(), 36);
}

#[tokio::test]
async fn two_mib_bodies_stream_both_ways_without_buffering() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, ""));
    let client = client();

    // Download: 2 MiB arrives intact.
    let (status, _, body) = get(&client, &proxy.url("/big/2097152"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 2 * 1024 * 1024);

    // Download streaming: the first chunk arrives while the upstream still holds the rest.
    let resp = client
        .request(
            Request::get(proxy.url("/gated"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    let first = first
        .expect("first chunk not streamed")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    up.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"rest");

    // Upload streaming: the upstream sees the first chunk before the client sends the rest,
    // then gets all 2 MiB.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let request = Request::post(proxy.url("/upload"))
        .body(http_body_util::combinators::BoxBody::new(StreamBody::new(
            ReceiverStream::new(rx),
        )))
        .unwrap();
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request(request).await }
    });
    tx.send(Ok(Frame::data(Bytes::from(vec![1u8; 65536]))))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), up.first_upload_chunk.notified())
        .await
        .expect("upload was buffered instead of streamed");
    for _ in 1..32 {
        tx.send(Ok(Frame::data(Bytes::from(vec![2u8; 65536]))))
            .await
            .unwrap();
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"2097152");
}

#[tokio::test]
async fn connect_failure_is_502_and_counted_for_the_version() {
    let dead = dead_addr().await;
    let toml = base_config("", "connect_timeout = \"500ms\"")
        + &format!("[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{dead}\"]\n");
    let proxy = Canaryd::start(&toml);
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body, "upstream connect failed\n");
    let metrics = proxy.server().registry().route("app");
    let primary = metrics.version(Version::Primary);
    assert_eq!(primary.code_class(5), 1);
    assert_eq!(
        primary.upstream_errors(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
        1
    );
}

#[tokio::test]
async fn slow_upstream_is_504_after_request_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "request_timeout = \"300ms\""));
    let started = Instant::now();
    let (status, _, body) = get(&client(), &proxy.url("/hang"), &[]).await;
    assert_eq!(status, 504);
    assert_eq!(body, "upstream timeout\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let metrics = proxy.server().registry().route("app");
    assert_eq!(
        metrics
            .version(Version::Primary)
            .upstream_errors(UpstreamErrorKind::Timeout),
        1
    );
}

#[tokio::test]
async fn oversized_request_head_is_431_and_never_reaches_the_upstream() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "max_header_bytes = 16384"));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let big = "a".repeat(20_000);
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn upstream_5xx_is_relayed_and_counted_as_failure() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, ""));
    let (status, _, _) = get(&client(), &proxy.url("/status/503"), &[]).await;
    assert_eq!(status, 503);
    let (status, _, _) = get(&client(), &proxy.url("/status/404"), &[]).await;
    assert_eq!(status, 404);
    let m = proxy.server().registry().route("app");
    assert_eq!(m.version(Version::Primary).code_class(5), 1);
    assert_eq!(m.version(Version::Primary).code_class(4), 1);
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_endpoint_for_idempotent_methods() {
    let up = Upstream::start("app").await;
    let dead = dead_addr().await;
    let toml = base_config("", "retries = 1")
        + &format!(
            "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{dead}\", \"{}\"]\nload_balancing = \"round-robin\"\n",
            up.addr
        );
    let proxy = Canaryd::start(&toml);
    let client = client();
    // A POST is not retried: the ones round-robin sends to the dead endpoint get 502 (until the
    // endpoint is ejected after consecutive failures).
    let mut bad_gateway = 0;
    for _ in 0..4 {
        let req = Request::post(proxy.url("/"))
            .body(Default::default())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        bad_gateway += usize::from(resp.status() == 502);
    }
    assert_eq!(
        bad_gateway, 2,
        "POST was retried, or round-robin skipped the dead endpoint"
    );
    // GETs are retried on the other endpoint: none fails, before or after the ejection.
    for _ in 0..10 {
        let (status, _, _) = get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn canary_that_cannot_connect_fails_over_to_primary_and_counts_against_canary() {
    let primary = Upstream::start("primary").await;
    let dead = dead_addr().await;
    let toml = base_config("", "failover_to_primary = true\nretries = 0")
        + &format!(
            "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n[route.canary]\nrevision = \"v2\"\nendpoints = [\"{dead}\"]\nweight = 100\n",
            primary.addr
        );
    let proxy = Canaryd::start(&toml);
    let counts = tally(&client(), &proxy.url("/"), 5, &[]).await;
    assert_eq!(counts.get("primary"), Some(&5));
    let m = proxy.server().registry().route("app");
    assert_eq!(
        m.version(Version::Canary)
            .upstream_errors(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
        5
    );

    // Without failover the client gets the 502.
    let toml = toml.replace("failover_to_primary = true", "failover_to_primary = false");
    let proxy = Canaryd::start(&toml);
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status, 502);
}

/// A loopback listener that never accepts, its one-connection queue full: a connect to it
/// hangs (the kernel drops the SYN) until the connecting side gives up. The returned streams
/// hold the queue full.
fn hanging_listener() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
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

#[tokio::test]
async fn a_canary_failed_over_after_a_slow_connect_is_charged_the_time_it_took() {
    let primary = Upstream::start("primary").await;
    let (hanging, _listener, _held) = hanging_listener();
    let toml = base_config(
        "",
        "failover_to_primary = true\nretries = 0\nconnect_timeout = \"300ms\"",
    ) + &format!(
        "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n[route.canary]\nrevision = \"v2\"\nendpoints = [\"{hanging}\"]\nweight = 100\n",
        primary.addr
    );
    let proxy = Canaryd::start(&toml);
    let counts = tally(&client(), &proxy.url("/"), 3, &[]).await;
    assert_eq!(counts.get("primary"), Some(&3));
    let canary = proxy.server().registry().route("app");
    let latency = canary.version(Version::Canary).duration().snapshot();
    assert_eq!(latency.count, 3);
    // Bucket 7 is le=0.25 s: every failover waited out the 300 ms connect timeout, and is
    // recorded so, not as an instant (which would pull the canary's p99 down).
    assert_eq!(latency.cumulative[7], 0, "{latency:?}");
    assert!(latency.sum_seconds >= 3.0 * 0.29, "{latency:?}");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_and_forwarded_to_http1() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, ""));
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("http://shop.test:8080/h2?x=1")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"app");
    }
    let seen = up.last_seen();
    assert_eq!(seen.uri, "/h2?x=1");
    assert_eq!(seen.headers["host"], "shop.test:8080");
    assert_eq!(up.hits(), 3);
    // Close the client side while this runtime can still answer h2's shutdown handshake.
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "").replace("workers = 2", "workers = 1"));
    let client = client();
    for _ in 0..50 {
        get(&client, &proxy.url("/"), &[]).await;
    }
    // One client connection, one worker: the proxy needs one upstream connection, not fifty.
    let ports: std::collections::HashSet<_> = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.headers.get("x-request-id").cloned())
        .collect();
    assert_eq!(ports.len(), 50, "request ids are unique");
    assert_eq!(up.connections(), 1, "upstream connections were not reused");
}
