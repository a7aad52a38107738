//! Upstreams that misbehave: one that dies mid-response gives the client an aborted response
//! (never a truncated "complete" one) and counts as a failure; one that answers with invalid
//! framing gets a 502 and its connection is not reused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use canaryd::config::Version;
use canaryd::metrics::UpstreamErrorKind;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw upstream that reads a request head, writes `answer`, then closes; counts connections.
async fn raw_upstream(answer: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
                // Dropping the socket closes it mid-response.
            });
        }
    });
    (addr, connections)
}

fn one_route(addr: std::net::SocketAddr) -> String {
    base_config("", "retries = 0")
        + &format!("[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{addr}\"]\n")
}

#[tokio::test]
async fn an_upstream_dying_mid_body_aborts_the_client_response_and_counts_as_a_failure() {
    let (addr, _) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly ten b").await;
    let proxy = Canaryd::start(&one_route(addr));
    let client = client();
    let resp = client
        .request(
            http::Request::get(proxy.url("/"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the head was already on its way");
    let body = resp.into_body().collect().await;
    assert!(
        body.is_err(),
        "a truncated body must not look complete: {body:?}"
    );
    let m = proxy.server().registry().route("app");
    eventually(
        "the failure to be recorded",
        std::time::Duration::from_secs(2),
        || {
            m.version(Version::Primary)
                .upstream_errors(UpstreamErrorKind::Reset)
                == 1
        },
    )
    .await;
    assert_eq!(m.version(Version::Primary).code_class(5), 1);
    assert_eq!(m.version(Version::Primary).code_class(2), 0);
}

#[tokio::test]
async fn invalid_framing_from_the_upstream_is_502_and_the_connection_is_not_reused() {
    let (addr, connections) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!")
            .await;
    let proxy = Canaryd::start(&one_route(addr).replace("workers = 2", "workers = 1"));
    let client = client();
    for attempt in 1..=3 {
        let (status, _, body) = get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(status, 502, "attempt {attempt}: {body}");
    }
    // Each attempt needed a new upstream connection: a connection with broken framing is never
    // put back in the pool.
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    let m = proxy.server().registry().route("app");
    assert_eq!(
        m.version(Version::Primary)
            .upstream_errors(UpstreamErrorKind::Reset),
        3
    );
}

#[tokio::test]
async fn an_endpoint_answering_5xx_in_a_row_is_ejected_and_the_others_take_its_traffic() {
    let bad = Upstream::start("bad").await;
    bad.fail_every.store(1, Ordering::SeqCst); // every answer is 500
    let good = Upstream::start("good").await;
    let toml = base_config("", "retries = 0")
        + &format!(
            "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\", \"{}\"]\nload_balancing = \"round-robin\"\n",
            bad.addr, good.addr
        );
    let proxy = Canaryd::start(&toml.replace("workers = 2", "workers = 1"));
    let client = client();
    // Round-robin alternates until the bad endpoint has failed FAILURES_TO_EJECT times in a row.
    let mut errors = 0;
    for _ in 0..2 * canaryd::upstream::FAILURES_TO_EJECT {
        let (status, _, _) = get(&client, &proxy.url("/"), &[]).await;
        errors += usize::from(status == 500);
    }
    assert_eq!(errors, canaryd::upstream::FAILURES_TO_EJECT as usize);
    let bad_hits = bad.hits();
    // Ejected: everything goes to the good endpoint for the back-off (5 s).
    let counts = tally(&client, &proxy.url("/"), 30, &[]).await;
    assert_eq!(counts.get("good"), Some(&30), "{counts:?}");
    assert_eq!(bad.hits(), bad_hits);
}
