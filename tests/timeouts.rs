//! Client-side timeouts: a slow request head is cut by `header_read_timeout`, while an idle
//! keep-alive connection lives until `idle_timeout`.

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
    ) + &format!(
        "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n",
        up.addr
    )
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
