//! The upstream keep-alive pool's bounds, seen from a real upstream socket: how many connections
//! the upstream accepted and how many canaryd closed, for `proxy.pool_max_idle_per_endpoint` and
//! `proxy.pool_idle_timeout` (docs/configuration.md#keys-and-defaults).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{base_config, client, eventually, get, Canaryd};

/// An upstream that answers every request after `delay`, and counts the TCP connections it
/// accepted and the ones that ended (the peer, canaryd, closed them: this side never does).
struct CountingUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
}

impl CountingUpstream {
    async fn start(delay: Duration) -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                    });
                    // keep-alive on, no timeouts: the connection ends only when canaryd closes it
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        CountingUpstream {
            addr,
            accepted,
            closed,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }
}

/// One worker, so that the per-worker bound is the whole process's.
fn config(up: &CountingUpstream, pool_keys: &str) -> String {
    let base = base_config("", &format!("workers = 1\n{pool_keys}")).replace("workers = 2\n", "");
    format!(
        "{base}[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n",
        up.addr
    )
}

/// `n` requests at once, each on its own client connection, so canaryd needs `n` upstream
/// connections at the same time; all must answer 200 "ok".
async fn concurrent_requests(proxy: &Canaryd, n: usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = proxy.url("/");
        tasks.push(tokio::spawn(async move {
            // a client of its own: one connection per request
            let (status, _, body) = get(&client(), &url, &[]).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn idle_connections_beyond_the_bound_are_closed() {
    let up = CountingUpstream::start(Duration::from_millis(300)).await;
    let proxy = Canaryd::start(&config(&up, "pool_max_idle_per_endpoint = 2"));
    concurrent_requests(&proxy, 6).await;
    assert_eq!(
        up.accepted(),
        6,
        "six requests at once need six upstream connections"
    );
    eventually(
        "canaryd closes the 4 connections beyond the bound",
        Duration::from_secs(5),
        || up.closed() == 4,
    )
    .await;
    // and keeps the other two: nothing else closes within a while, and they are reused
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        up.closed(),
        4,
        "the two connections within the bound stay open"
    );
    concurrent_requests(&proxy, 2).await;
    assert_eq!(
        up.accepted(),
        6,
        "the two kept connections served the next two requests"
    );
}

#[tokio::test]
async fn without_a_lower_bound_the_same_connections_all_stay_idle() {
    // The control for the test above: with the default bound the same traffic closes nothing,
    // so the closes counted there are the bound's doing.
    let up = CountingUpstream::start(Duration::from_millis(300)).await;
    let proxy = Canaryd::start(&config(&up, ""));
    concurrent_requests(&proxy, 6).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!((up.accepted(), up.closed()), (6, 0));
    concurrent_requests(&proxy, 6).await;
    assert_eq!(up.accepted(), 6, "all six were pooled and reused");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = CountingUpstream::start(Duration::from_millis(200)).await;
    let proxy = Canaryd::start(&config(&up, "pool_idle_timeout = \"1500ms\""));
    concurrent_requests(&proxy, 3).await;
    assert_eq!(up.accepted(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.closed(), 0, "closed long before the idle timeout");
    eventually(
        "the three idle connections are closed after the idle timeout",
        Duration::from_secs(6),
        || up.closed() == 3,
    )
    .await;
    // the next request opens a new connection
    concurrent_requests(&proxy, 1).await;
    assert_eq!(up.accepted(), 4);
}

#[tokio::test]
async fn a_zero_bound_keeps_no_idle_connection() {
    let up = CountingUpstream::start(Duration::ZERO).await;
    let proxy = Canaryd::start(&config(&up, "pool_max_idle_per_endpoint = 0"));
    for round in 1..=3 {
        concurrent_requests(&proxy, 1).await;
        assert_eq!(up.accepted(), round, "every request opens a connection");
        eventually(
            "the connection is closed after its response",
            Duration::from_secs(5),
            || up.closed() == round,
        )
        .await;
    }
}

/// An HTTP/1.1 upstream that answers the first request on each connection and then, having
/// read the second, closes without a word: an upstream closing an idle connection just as a
/// request arrives.
struct ClosingUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    heads: Arc<AtomicU64>,
}

impl ClosingUpstream {
    async fn start() -> ClosingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = ClosingUpstream {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            heads: Arc::default(),
        };
        let (accepted, heads) = (up.accepted.clone(), up.heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let heads = heads.clone();
                tokio::spawn(async move {
                    for answer in [true, false] {
                        if !read_head(&mut stream).await {
                            return;
                        }
                        heads.fetch_add(1, Ordering::SeqCst);
                        if answer {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            stream.write_all(ok).await.unwrap();
                        }
                    }
                    // dropped: closed with the second request read and unanswered
                });
            }
        });
        up
    }
}

/// Read one request head (these requests have no body); false when the peer closed first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn an_idempotent_request_on_a_pooled_connection_closed_unanswered_is_sent_again() {
    let up = ClosingUpstream::start().await;
    let base = base_config("", "workers = 1").replace("workers = 2\n", "");
    let proxy = Canaryd::start(&format!(
        "{base}[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n",
        up.addr
    ));
    let client = client();
    let (status, _, body) = get(&client, &proxy.url("/first"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    // the pooled connection reads this one and closes: sent again on a new connection
    let (status, _, body) = get(&client, &proxy.url("/second"), &[]).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "ok"),
        "a GET the upstream closed on unanswered is sent again, not answered 502"
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        up.heads.load(Ordering::SeqCst),
        3,
        "the GET reached it twice"
    );
    let resent = "canaryd_upstream_resends_total{route=\"app\",version=\"primary\"} 1";
    let metrics = format!("http://{}/metrics", proxy.admin);
    let (_, _, text) = get(&client, &metrics, &[]).await;
    assert!(
        text.lines().any(|l| l == resent),
        "no `{resent}` in:\n{text}"
    );
    // a POST is not sent twice, even without a body: the upstream may have acted on it
    let posting = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let request = hyper::Request::post(proxy.url("/order"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let status = posting.request(request).await.unwrap().status();
    assert_eq!(status.as_u16(), 502, "a POST closed on unanswered is a 502");
    assert_eq!(
        up.heads.load(Ordering::SeqCst),
        4,
        "the POST reached it once"
    );
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "and no new connection"
    );
    let (_, _, text) = get(&client, &metrics, &[]).await;
    assert!(
        text.lines().any(|l| l == resent),
        "the POST was not counted as sent again"
    );
}
