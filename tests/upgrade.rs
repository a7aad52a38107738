//! Upgrades through the proxy: a WebSocket-style 101 opens a byte-for-byte tunnel to the chosen
//! version; any other answer is relayed and no tunnel opens; the tunnel counts as one request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use canaryd::config::Version;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw upstream: answers an upgrade request with 101 and then echoes every byte (prefixed
/// with its name once), or refuses upgrades with 400 when `accept` is false.
async fn upgrade_upstream(
    name: &'static str,
    accept: bool,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = heads.send(String::from_utf8_lossy(&head).to_lowercase());
                if !accept {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\n\r\nno upgrade\n",
                        )
                        .await;
                    return;
                }
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await.unwrap();
                s.write_all(format!("<<{name}>>").as_bytes()).await.unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn config(primary: SocketAddr, canary: SocketAddr, weight: u8) -> String {
    base_config("", "version_header = \"x-canaryd-version\"")
        + &format!(
            "[[route]]\nname = \"ws\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{primary}\"]\n[route.canary]\nrevision = \"v2\"\nendpoints = [\"{canary}\"]\nweight = {weight}\n"
        )
}

const UPGRADE_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Read until `needle` shows up (or fail after 5 s).
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_websocket_upgrade_is_tunnelled_byte_for_byte_to_the_chosen_version() {
    let (primary, _) = upgrade_upstream("primary", true).await;
    let (canary, mut canary_heads) = upgrade_upstream("canary", true).await;
    let proxy = Canaryd::start(&config(primary, canary, 100));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(UPGRADE_REQUEST).await.unwrap();
    let answer = read_until(&mut s, "<<canary>>").await.to_lowercase();
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(answer.contains("upgrade: websocket"), "{answer}");
    assert!(answer.contains("connection: upgrade"), "{answer}");
    assert!(answer.contains("x-canaryd-version: canary"), "{answer}");
    // The upstream saw the upgrade request with its Upgrade and Connection headers intact.
    let head = canary_heads.recv().await.unwrap();
    assert!(
        head.contains("upgrade: websocket") && head.contains("connection: upgrade"),
        "{head}"
    );
    assert!(
        head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
        "{head}"
    );

    // Bytes both ways, including bytes that are not HTTP at all.
    for message in [
        &b"\x81\x05hello"[..],
        b"\x00\xff binary \r\n\r\n GET / HTTP/1.1",
    ] {
        s.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    // One request in the metrics, for the version that took the upgrade.
    let metrics = proxy.server().registry().route("ws");
    assert_eq!(metrics.version(Version::Canary).code_class(1), 1);
    assert_eq!(metrics.version(Version::Canary).requests(), 1);
    assert_eq!(metrics.version(Version::Primary).requests(), 0);
}

#[tokio::test]
async fn an_upstream_that_refuses_the_upgrade_is_relayed_and_no_tunnel_opens() {
    let (primary, _) = upgrade_upstream("primary", false).await;
    let (canary, _) = upgrade_upstream("canary", false).await;
    let proxy = Canaryd::start(&config(primary, canary, 0));
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(UPGRADE_REQUEST).await.unwrap();
    let answer = read_until(&mut s, "no upgrade").await.to_lowercase();
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(!answer.contains("upgrade: websocket"), "{answer}");
    // The client connection is still plain HTTP: a normal request on it gets a normal answer.
    s.write_all(b"GET / HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        .await
        .unwrap();
    let again = read_until(&mut s, "no upgrade").await.to_lowercase();
    assert!(again.starts_with("http/1.1 400"), "{again}");
    let metrics = proxy.server().registry().route("ws");
    assert_eq!(metrics.version(Version::Primary).code_class(4), 2);
}
