//! Client-side timeouts: a slow request head is cut by `header_read_timeout`, while an idle
//! keep-alive connection lives until `idle_timeout` — HTTP/1.1 through hyper's timer, HTTP/2
//! through the proxy's own stream-activity watch (hyper has no HTTP/2 idle timeout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: &Upstream) -> String {
    base_config(
        "",
        "header_read_timeout = \"300ms\"\nidle_timeout = \"1500ms\"",
    ) + &app_route(up)
}

/// Read until the peer closes; how long that took.
async fn time_until_closed(s: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("no response")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn slowloris_head_is_cut_by_header_read_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&config(&up));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    // A head that trickles in one byte at a time, never finishing.
    let trickle = tokio::spawn({
        let mut w = TcpStream::connect(proxy.addr).await.unwrap();
        async move {
            for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
            {
                if w.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut buf = [0u8; 64];
            let started = Instant::now();
            let _ = tokio::time::timeout(Duration::from_secs(5), w.read(&mut buf)).await;
            started.elapsed()
        }
    });
    // A connection that sends half a head and stops.
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let closed_after = time_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        closed_after < Duration::from_millis(1200),
        "{closed_after:?}"
    );
    let _ = trickle.await.unwrap();
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn idle_keep_alive_outlives_header_timeout_until_idle_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&config(&up));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle for twice the header timeout: still usable.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Then silent: closed after idle_timeout (1.5 s), not before.
    let closed_after = time_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        closed_after > Duration::from_millis(1200) && closed_after < Duration::from_millis(2500),
        "{closed_after:?}"
    );
    assert_eq!(up.hits(), 2);
}

/// An HTTP/2 (prior knowledge) client connection; the receiver resolves when the proxy closes it.
async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::sync::oneshot::Receiver<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = closed_tx.send(Instant::now());
    });
    (sender, closed)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) -> u16 {
    use http_body_util::BodyExt;
    let request = http::Request::get("http://a/")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&config(&up));
    let (mut sender, closed) = h2_connect(proxy.addr).await;
    assert_eq!(h2_get(&mut sender).await, 200);
    // Requests within idle_timeout of each other keep it open past idle_timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(h2_get(&mut sender).await, 200);
    }
    let last = Instant::now();
    let closed_at = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("HTTP/2 connection still open 5 s after its last stream")
        .unwrap();
    let idle = closed_at - last;
    assert!(
        idle > Duration::from_millis(1200) && idle < Duration::from_millis(2500),
        "closed after {idle:?} idle"
    );
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn an_open_http2_stream_keeps_its_connection_past_idle_timeout() {
    use http_body_util::BodyExt;
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&config(&up));
    let (mut sender, closed) = h2_connect(proxy.addr).await;
    // The head and a first chunk come at once; the rest only when released, 2.5 s later —
    // longer than idle_timeout (1.5 s) with no other stream on the connection.
    let request = http::Request::get("http://a/gated")
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first;");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    up.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"rest");
    let done = Instant::now();
    let closed_at = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("HTTP/2 connection still open 5 s after its last stream")
        .unwrap();
    let idle = closed_at - done;
    assert!(
        idle > Duration::from_millis(1200) && idle < Duration::from_millis(2500),
        "closed after {idle:?} idle"
    );
}
