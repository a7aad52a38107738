//! Plain HTTP/1.1 connections served in rounds (`docs/performance.md#memory-per-idle-connection`):
//! one client connection carries bodiless and body-carrying requests, idle gaps and a
//! pipelined pair, and every answer is an ordinary keep-alive answer on that same connection.
//!
//! Each test runs twice: with `release_buffers_after = "0s"`, so a round ends after every
//! bodiless response and every boundary is crossed, and with a short quiet period, so rounds
//! span several requests and end in the idle gaps.
// Each scenario is a helper run once per setting, outside #[test] itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The two ways rounds end: after each response, and after 50 ms without a new request.
const RELEASE_SETTINGS: [&str; 2] = [
    "release_buffers_after = \"0s\"",
    "release_buffers_after = \"50ms\"",
];

#[tokio::test]
async fn one_connection_keeps_serving_across_rounds() {
    for release in RELEASE_SETTINGS {
        one_connection_keeps_serving_across_rounds_with(release).await;
    }
}

async fn one_connection_keeps_serving_across_rounds_with(release: &str) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&(base_config("", release) + &app_route(&up)));
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let plan: [(&str, &str, &'static [u8], u64); 6] = [
        ("GET", "/a", b"", 0),
        ("POST", "/b", b"a body of some bytes", 0),
        ("GET", "/c", b"", 300),
        ("POST", "/d", b"", 0),
        ("PUT", "/e", b"x", 50),
        ("GET", "/f", b"", 0),
    ];
    for (method, path, body, pause_ms) in plan {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        sender.ready().await.unwrap();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "app.test")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
        assert!(
            response.headers().get("connection").is_none(),
            "{method} {path}: {:?}",
            response.headers()
        );
        response.into_body().collect().await.unwrap();
        assert_eq!(up.last_seen().uri, path);
    }
    assert_eq!(up.hits(), 6);
    assert!(!connection.is_finished(), "the proxy closed the connection");
}

#[tokio::test]
async fn pipelined_requests_across_a_round_boundary_are_each_served_once() {
    for release in RELEASE_SETTINGS {
        pipelined_requests_across_a_round_boundary_are_each_served_once_with(release).await;
    }
}

async fn pipelined_requests_across_a_round_boundary_are_each_served_once_with(release: &str) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&(base_config("", release) + &app_route(&up)));
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the proxy closes after the third answer")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(reply.matches("HTTP/1.1 200 ").count(), 3, "{reply}");
    assert_eq!(up.hits(), 3);
    assert_eq!(up.last_seen().uri, "/three");
}

#[tokio::test]
async fn a_partial_head_after_an_idle_gap_still_gets_the_header_read_timeout() {
    for release in RELEASE_SETTINGS {
        a_partial_head_after_an_idle_gap_still_gets_the_header_read_timeout_with(release).await;
    }
}

async fn a_partial_head_after_an_idle_gap_still_gets_the_header_read_timeout_with(release: &str) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(
        &(base_config(
            "",
            &format!("header_read_timeout = \"300ms\"\nidle_timeout = \"30s\"\n{release}"),
        ) + &app_route(&up)),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    // Idle longer than the header timeout: an idle keep-alive connection is not cut by it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream
        .write_all(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "),
        "the connection was cut while idle"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(b"GET /c HTTP/1.1\r\nHo").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "a stalled head was held {waited:?}, not cut at header_read_timeout"
    );
    assert_eq!(up.hits(), 2);
}

/// The first bytes of a connection are read to tell HTTP/2 from HTTP/1 and put back; a head
/// that stalls inside them is still cut at `header_read_timeout`.
#[tokio::test]
async fn a_head_stalled_within_the_protocol_sniff_gets_the_header_read_timeout() {
    for release in RELEASE_SETTINGS {
        a_head_stalled_within_the_protocol_sniff_gets_the_header_read_timeout_with(release).await;
    }
}

async fn a_head_stalled_within_the_protocol_sniff_gets_the_header_read_timeout_with(release: &str) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(
        &(base_config(
            "",
            &format!("header_read_timeout = \"300ms\"\nidle_timeout = \"30s\"\n{release}"),
        ) + &app_route(&up)),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "a stalled first head was held {waited:?}, not cut at header_read_timeout"
    );
    assert_eq!(up.hits(), 0);
}

/// hyper reads a pipelined request while the previous response is still streaming; that round
/// ends after the stream, and the request it had read ahead is served by the next one.
#[tokio::test]
async fn a_request_read_ahead_during_a_streamed_response_is_served_after_it() {
    for release in RELEASE_SETTINGS {
        a_request_read_ahead_during_a_streamed_response_is_served_after_it_with(release).await;
    }
}

async fn a_request_read_ahead_during_a_streamed_response_is_served_after_it_with(release: &str) {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&(base_config("", release) + &app_route(&up)));
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /gated HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    // The first answer's head and first chunk are out before the rest is released.
    let mut head = vec![0u8; 4096];
    let n = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200 "));
    up.release.notify_one();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the proxy closes after the second answer")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("rest"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 200 ").count(), 1, "{reply}");
    assert_eq!(up.hits(), 2);
    assert_eq!(up.last_seen().uri, "/after");
}
