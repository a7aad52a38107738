//! Hostile input on the proxy listener (docs/security.md#hostile-input-on-the-proxy-listener): raw TCP clients write exact
//! bytes at a running canaryd whose routes lead to recording upstreams. For every case the test
//! checks the status line canaryd answers, whether it closes the connection, that no upstream saw
//! the hostile request, and that the proxy still serves a normal request on a new connection.
//!
//! Where RFC 9112 lets a recipient choose (`Content-Length` with `Transfer-Encoding`, a bare
//! LF), the tests pin what canaryd does, as `docs/security.md` states it; more of those cases,
//! with byte-recording upstreams, are in `tests/protocol_conformance.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canaryd::config::Version;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One route without hosts to `up`, plus `extra_proxy` lines in `[proxy]`.
fn one_route(up: &Upstream, extra_proxy: &str) -> String {
    base_config("", extra_proxy) + &app_route(up)
}

/// A route named `name` with optional `hosts` and `path_prefix` lines to `up`.
fn route(name: &str, hosts: &str, prefix: &str, up: &Upstream) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\n{hosts}\n{prefix}\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n",
        up.addr
    )
}

/// What came back on a raw connection.
#[derive(Debug)]
struct Reply {
    text: String,
    /// The proxy closed (or reset) the connection before `wait` ran out.
    closed: bool,
    /// When the close was seen, from the first write.
    after: Duration,
}

impl Reply {
    fn status_lines(&self) -> Vec<&str> {
        self.text
            .split('\n')
            .filter(|l| l.starts_with("HTTP/1."))
            .collect()
    }

    fn assert_only_status(&self, code: u16) {
        let lines = self.status_lines();
        assert_eq!(lines.len(), 1, "exactly one response expected: {self:?}");
        assert!(
            lines[0].starts_with(&format!("HTTP/1.1 {code} ")),
            "expected {code}: {self:?}"
        );
    }
}

/// Read from `s` until the proxy closes the connection or `wait` has passed.
async fn read_all(s: &mut TcpStream, start: Instant, wait: Duration) -> Reply {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    let deadline = start + wait;
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Reply {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
        after: start.elapsed(),
    }
}

/// Write `bytes` on a new connection and read the answer (see [`read_all`]).
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    // The proxy may answer and close before it read everything; a failed write is fine.
    let _ = s.write_all(bytes).await;
    read_all(&mut s, start, wait).await
}

const WAIT: Duration = Duration::from_secs(3);

/// A refused request: exactly one `code` response, the connection closed, no upstream hit.
async fn assert_refused(proxy: &Canaryd, ups: &[&Upstream], bytes: &[u8], code: u16) -> Reply {
    let reply = exchange(proxy.addr, bytes, WAIT).await;
    reply.assert_only_status(code);
    assert!(reply.closed, "connection left open: {reply:?}");
    // Give a request that slipped through time to arrive before checking nothing did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for up in ups {
        assert_eq!(
            up.hits(),
            0,
            "{} saw {:?}",
            up.name,
            up.seen.lock().unwrap()
        );
    }
    reply
}

/// The proxy is unharmed: a normal request on a new connection gets 200 from `up`.
async fn assert_healthy(proxy: &Canaryd, up: &Upstream, host: &str) {
    let (status, _, body) = get(&client(), &proxy.url("/health-check"), &[("host", host)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, up.name);
}

async fn single() -> (Upstream, Canaryd) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, ""));
    (up, proxy)
}

// ---------------------------------------------------------------- message framing

#[tokio::test]
async fn conflicting_content_lengths_are_400_and_never_reach_the_upstream() {
    let (up, proxy) = single().await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    )
    .await;
    // The same conflict as one comma-separated field.
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

/// `Content-Length` + `Transfer-Encoding: chunked` (RFC 9112 §6.1's "process as chunked and
/// close"): the chunked framing wins, `Content-Length` is dropped, and the connection is closed
/// after the response, so
/// bytes smuggled behind the body (as a Content-Length-framed reader would see them) are never
/// read as a request.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_framed_as_chunked_and_the_connection_closed() {
    let (up, proxy) = single().await;
    let reply = exchange(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        WAIT,
    )
    .await;
    reply.assert_only_status(200);
    assert!(reply.closed, "connection left open: {reply:?}");
    assert!(reply.text.ends_with("\r\n\r\n5"), "{reply:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 1);
    let seen = up.last_seen();
    assert_eq!(seen.uri, "/upload");
    assert_eq!(seen.body_len, 5);
    assert!(!seen.headers.contains_key("content-length"), "{seen:?}");
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn transfer_encoding_not_ending_in_chunked_is_400() {
    let (up, proxy) = single().await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    )
    .await;
    // Transfer-Encoding on HTTP/1.0 is refused too.
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn chunked_applied_twice_is_400() {
    let (up, proxy) = single().await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

/// Bad chunk sizes: the body is hyper's to decode after the head was handed to canaryd, so the
/// proxy must not have started an upstream request it cannot finish, and must not charge the
/// client's error to the version as a 5xx.
async fn assert_bad_chunk_refused(body: &[u8]) {
    let (up, proxy) = single().await;
    let mut bytes = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    bytes.extend_from_slice(body);
    assert_refused(&proxy, &[&up], &bytes, 400).await;
    let m = proxy.server().registry().route("app");
    assert_eq!(m.version(Version::Primary).code_class(5), 0);
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn invalid_chunk_size_is_400_and_never_reaches_the_upstream() {
    assert_bad_chunk_refused(b"zz\r\nhello\r\n0\r\n\r\n").await;
}

#[tokio::test]
async fn overflowing_chunk_size_is_400_and_never_reaches_the_upstream() {
    assert_bad_chunk_refused(b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n").await;
}

/// What holds today for a bad first chunk size: an error answer (never 2xx), the connection
/// closed, no request delivered to the upstream, and the proxy still serving.
#[tokio::test]
async fn bad_first_chunk_size_closes_the_connection_before_any_upstream_request() {
    let (up, proxy) = single().await;
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        &b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"[..],
        &b"-1\r\nhello\r\n0\r\n\r\n"[..],
    ] {
        let mut bytes =
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(body);
        let reply = exchange(proxy.addr, &bytes, WAIT).await;
        let lines = reply.status_lines();
        assert_eq!(lines.len(), 1, "{reply:?}");
        assert!(
            lines[0].starts_with("HTTP/1.1 4") || lines[0].starts_with("HTTP/1.1 5"),
            "{reply:?}"
        );
        assert!(reply.closed, "{reply:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 0, "{:?}", up.seen.lock().unwrap());
    assert_healthy(&proxy, &up, "a").await;
}

// ---------------------------------------------------------------- header syntax

#[tokio::test]
async fn obs_fold_is_400() {
    let (up, proxy) = single().await;
    for fold in [
        &b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"[..],
        &b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n"[..],
    ] {
        assert_refused(&proxy, &[&up], fold, 400).await;
    }
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn whitespace_between_header_name_and_colon_is_400() {
    let (up, proxy) = single().await;
    assert_refused(&proxy, &[&up], b"GET /x HTTP/1.1\r\nHost : a\r\n\r\n", 400).await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn bare_cr_in_a_header_value_is_400() {
    let (up, proxy) = single().await;
    assert_refused(
        &proxy,
        &[&up],
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\rX-B: two\r\n\r\n",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

/// A bare LF that does not start a valid header line is refused.
#[tokio::test]
async fn bare_lf_followed_by_a_non_header_is_400() {
    let (up, proxy) = single().await;
    assert_refused(
        &proxy,
        &[&up],
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\n two three\r\n\r\n",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "a").await;
}

#[tokio::test]
async fn oversized_head_is_431_and_the_connection_closed() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "max_header_bytes = 16384"));
    let big = "a".repeat(20_000);
    let head = format!("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    assert_refused(&proxy, &[&up], head.as_bytes(), 431).await;
    // Many small headers adding up to the same size.
    let mut head = String::from("GET /x HTTP/1.1\r\nHost: a\r\n");
    for i in 0..90 {
        head.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(200)));
    }
    head.push_str("\r\n");
    assert_refused(&proxy, &[&up], head.as_bytes(), 431).await;
    assert_healthy(&proxy, &up, "a").await;
}

// ---------------------------------------------------------------- slow clients

#[tokio::test]
async fn slowloris_head_is_cut_by_header_read_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up, "header_read_timeout = \"500ms\""));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms, never the end of the head, for up to 5 s.
    let dripper = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), dripper).await;
    let reply = read_all(&mut s, start, Duration::from_millis(500)).await;
    assert!(reply.closed, "slowloris connection still open: {reply:?}");
    assert!(
        reply.status_lines().iter().all(|l| !l.contains(" 200 ")),
        "{reply:?}"
    );
    // Closed well before the 5 s of dripping ended (the timeout is 500 ms from accept).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "closed only after {:?}",
        start.elapsed()
    );
    assert_eq!(up.hits(), 0);
    assert_healthy(&proxy, &up, "a").await;
}

/// A client that sends a head with `Content-Length: 100`, then 10 bytes, then nothing: hyper has
/// no body read timeout of its own; the request must still be cut (client and upstream connection
/// released) by canaryd's timeouts rather than held forever.
#[tokio::test]
async fn slow_body_is_cut_by_request_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(
        &up,
        "header_read_timeout = \"500ms\"\nrequest_timeout = \"1s\"",
    ));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let reply = read_all(&mut s, start, Duration::from_secs(5)).await;
    // request_timeout runs from sending the request until the upstream's response head; this
    // upstream waits for the whole body first, so the timeout fires while the upstream waits
    // for the client: the stall is the client's, 408 and close at ~1 s.
    reply.assert_only_status(408);
    assert!(reply.closed, "stalled upload still open: {reply:?}");
    assert!(
        reply.after >= Duration::from_millis(900) && reply.after < Duration::from_secs(3),
        "{reply:?}"
    );
    // The upstream's side ends too: its body read fails and it records the request.
    eventually(
        "upstream connection released",
        Duration::from_secs(3),
        || !up.seen.lock().unwrap().is_empty(),
    )
    .await;
    assert!(up.last_seen().body_len < 100);
    // Nothing counts against the version: the client was slow, not the upstream.
    let m = proxy.server().registry().route("app");
    assert_eq!(m.version(Version::Primary).requests(), 0);
    assert_healthy(&proxy, &up, "a").await;
}

// ---------------------------------------------------------------- pipelining / smuggling

/// Two routes bound to `app.test`, so any other host gets canaryd's own 404.
async fn host_bound() -> (Upstream, Canaryd) {
    let up = Upstream::start("app").await;
    let toml = base_config("", "") + &route("app", "hosts = [\"app.test\"]", "", &up);
    let proxy = Canaryd::start(&toml);
    (up, proxy)
}

#[tokio::test]
async fn request_hidden_in_the_body_of_a_404_is_never_processed() {
    let (up, proxy) = host_bound().await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    // Content-Length body.
    let mut bytes = format!(
        "POST /x HTTP/1.1\r\nHost: other.test\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    bytes.extend_from_slice(smuggled);
    let reply = exchange(proxy.addr, &bytes, Duration::from_secs(1)).await;
    reply.assert_only_status(404);
    // Chunked body.
    let mut bytes = format!(
        "POST /x HTTP/1.1\r\nHost: other.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        smuggled.len()
    )
    .into_bytes();
    bytes.extend_from_slice(smuggled);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    let reply = exchange(proxy.addr, &bytes, Duration::from_secs(1)).await;
    reply.assert_only_status(404);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 0, "{:?}", up.seen.lock().unwrap());
    assert_healthy(&proxy, &up, "app.test").await;
}

#[tokio::test]
async fn request_pipelined_behind_a_400_is_never_processed() {
    let (up, proxy) = host_bound().await;
    assert_refused(
        &proxy,
        &[&up],
        b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
    )
    .await;
    assert_refused(
        &proxy,
        &[&up],
        b"GET /x HTTP/1.1\r\nHost : app.test\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
    )
    .await;
    assert_healthy(&proxy, &up, "app.test").await;
}

/// Plain pipelining behind a 404 is legitimate: the second request is served as itself, in
/// order, and nothing else reaches the upstream.
#[tokio::test]
async fn request_pipelined_behind_a_404_is_served_in_order_as_itself() {
    let (up, proxy) = host_bound().await;
    let reply = exchange(
        proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: other.test\r\n\r\nGET /second HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let lines = reply.status_lines();
    assert_eq!(lines.len(), 2, "{reply:?}");
    assert!(lines[0].starts_with("HTTP/1.1 404 "), "{reply:?}");
    assert!(lines[1].starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert!(reply.closed);
    assert_eq!(up.hits(), 1);
    assert_eq!(up.last_seen().uri, "/second");
}

// ---------------------------------------------------------------- forwarding headers

#[tokio::test]
async fn connection_naming_x_forwarded_for_keeps_the_proxys_own() {
    let (up, proxy) = single().await;
    let reply = exchange(
        proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host\r\n\
          X-Forwarded-For: 6.6.6.6\r\n\r\n",
        WAIT,
    )
    .await;
    reply.assert_only_status(200);
    let seen = up.last_seen();
    let xff: Vec<_> = seen.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["127.0.0.1"], "{seen:?}");
    assert_eq!(seen.headers["x-forwarded-host"], "a");
}

// ---------------------------------------------------------------- authority

/// `a.test` → upstream A, `b.test` → upstream B.
async fn two_hosts() -> (Upstream, Upstream, Canaryd) {
    let a = Upstream::start("A").await;
    let b = Upstream::start("B").await;
    let toml = base_config("", "")
        + &route("a", "hosts = [\"a.test\"]", "", &a)
        + &route("b", "hosts = [\"b.test\"]", "", &b);
    let proxy = Canaryd::start(&toml);
    (a, b, proxy)
}

/// With an absolute-form target the URI's authority is the request's (RFC 9112 3.2.2: the Host
/// header is ignored). The request must go to that authority's route and arrive there with
/// `Host` and `X-Forwarded-Host` naming the same authority.
#[tokio::test]
async fn absolute_form_authority_wins_over_host_for_routing_and_forwarding() {
    let (a, b, proxy) = two_hosts().await;
    let reply = exchange(
        proxy.addr,
        b"GET http://b.test/p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    reply.assert_only_status(200);
    assert_eq!(a.hits(), 0, "{:?}", a.seen.lock().unwrap());
    assert_eq!(b.hits(), 1);
    let seen = b.last_seen();
    assert_eq!(seen.uri, "/p");
    assert_eq!(seen.headers["host"], "b.test", "{seen:?}");
    assert_eq!(seen.headers["x-forwarded-host"], "b.test", "{seen:?}");
    assert_healthy(&proxy, &a, "a.test").await;
}

/// The routing half of the case above, which holds today: absolute-form picks the route.
#[tokio::test]
async fn absolute_form_authority_picks_the_route() {
    let (a, b, proxy) = two_hosts().await;
    let reply = exchange(
        proxy.addr,
        b"GET http://b.test/p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    reply.assert_only_status(200);
    assert!(reply.text.ends_with("B"), "{reply:?}");
    assert_eq!(a.hits(), 0);
    assert_eq!(b.hits(), 1);
    assert_eq!(b.last_seen().uri, "/p");
    assert_eq!(b.last_seen().headers["x-forwarded-host"], "b.test");
}

/// HTTP/2 with a `Host` header that disagrees with `:authority`: either refused as malformed
/// (RFC 9113 8.3.1 says a server SHOULD) with no upstream hit, or routed and forwarded on
/// `:authority` alone.
#[tokio::test]
async fn h2_authority_and_host_disagreeing_route_and_forward_on_one_authority() {
    let (a, b, proxy) = two_hosts().await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("http://b.test/h2")
        .header("host", "a.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    if status == 400 {
        assert_eq!(a.hits() + b.hits(), 0);
    } else {
        assert_eq!(status, 200);
        assert_eq!(a.hits(), 0, "{:?}", a.seen.lock().unwrap());
        assert_eq!(b.hits(), 1);
        let seen = b.last_seen();
        let hosts: Vec<_> = seen.headers.get_all("host").iter().collect();
        assert_eq!(hosts, ["b.test"], "{seen:?}");
        assert_eq!(seen.headers["x-forwarded-host"], "b.test", "{seen:?}");
    }
    assert_healthy(&proxy, &a, "a.test").await;
}

// ---------------------------------------------------------------- paths

/// `/public` → A, everything else → B. Each path must be routed on exactly the path that is
/// forwarded: it arrives byte for byte as sent, and at A only if it starts with `/public`.
#[tokio::test]
async fn dot_segments_and_encoded_slashes_are_routed_on_the_forwarded_path() {
    let a = Upstream::start("A").await;
    let b = Upstream::start("B").await;
    let toml = base_config("", "")
        + &route("public", "", "path_prefix = \"/public\"", &a)
        + &route("rest", "", "", &b);
    let proxy = Canaryd::start(&toml);
    for (path, expect) in [
        ("/public/../admin", "A"),
        ("/public/%2e%2e/admin", "A"),
        ("/public/%2E%2E/admin", "A"),
        ("/public%2F..%2Fadmin", "A"),
        ("/public/..%2Fadmin", "A"),
        ("//public/x", "B"),
        ("/./public/x", "B"),
        ("/%70ublic/x", "B"),
        ("/admin/../public/x", "B"),
        ("/%2Fpublic", "B"),
    ] {
        let before = (a.hits(), b.hits());
        let reply = exchange(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        reply.assert_only_status(200);
        let up = if expect == "A" { &a } else { &b };
        assert!(reply.text.ends_with(expect), "{path}: {reply:?}");
        let seen = up.last_seen();
        assert_eq!(seen.uri, path, "{path} forwarded rewritten");
        assert_eq!(
            seen.uri.starts_with("/public"),
            expect == "A",
            "{path}: routed on a path other than the one forwarded"
        );
        let after = (a.hits(), b.hits());
        assert_eq!(
            after.0 + after.1,
            before.0 + before.1 + 1,
            "{path} reached more than one upstream"
        );
    }
}
