//! What a client connection holds until it closes — its place under `proxy.max_connections`,
//! the drain's count and `canaryd_active_connections` — is given back when it closes, on every
//! path (`docs/performance.md#memory-per-idle-connection`: the connection's task carries them in
//! its `Client`, with no wrapper around its future to release them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn active(proxy: &Canaryd) -> i64 {
    proxy
        .server()
        .registry()
        .process
        .active_connections
        .load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_closed_connection_gives_back_its_slot_on_every_path() {
    let up = Upstream::start("app").await;
    // One slot for the two workers of `base_config`: whichever worker the kernel hands each
    // client to must be able to use it.
    let proxy = Canaryd::start(&(base_config("", "max_connections = 1") + &app_route(&up)));
    // The fast path, a hyper round (a body), and an HTTP/2 connection (h2c by prior knowledge)
    // each take a slot in turn and must give it back when they close.
    let fast = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n".as_slice();
    let round = b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi".as_slice();
    for (path, request) in [("fast path", fast), ("hyper round", round)] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        raw_exchange(&mut stream, request).await;
        assert_eq!(active(&proxy), 1, "{path}: counted while open");
        drop(stream);
        eventually(
            &format!("{path}: the slot back"),
            Duration::from_secs(5),
            || active(&proxy) == 0,
        )
        .await;
    }

    let h2 = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, connection) = h2
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driven = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/", proxy.addr))
        .header("host", "app.test")
        .body(http_body_util::Empty::new())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), send.send_request(request))
        .await
        .expect("an HTTP/2 answer within 5 s")
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(active(&proxy), 1, "HTTP/2: counted while open");
    // The answer's stream, the request handle and the connection's task all keep hyper's
    // client connection open: drop every one of them.
    drop((answer, send));
    driven.abort();
    eventually("HTTP/2: the slot back", Duration::from_secs(5), || {
        active(&proxy) == 0
    })
    .await;

    // And the one slot serves a new client.
    let mut last = TcpStream::connect(proxy.addr).await.unwrap();
    raw_exchange(&mut last, fast).await;
}

#[tokio::test]
async fn a_client_beyond_max_connections_waits_until_a_slot_frees() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&(base_config("", "max_connections = 1") + &app_route(&up)));
    let request = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n".as_slice();
    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    raw_exchange(&mut first, request).await;

    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the second client was served while the first held the only slot"
    );
    assert_eq!(up.hits(), 1);

    drop(first);
    read_app_answer(&mut second).await;
}
