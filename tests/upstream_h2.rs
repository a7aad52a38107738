//! HTTP/2 to the upstreams (`protocol = "http2"`, h2c by prior knowledge) against real hyper
//! HTTP/2 servers: a peer's `SETTINGS_MAX_CONCURRENT_STREAMS` is never exceeded (more
//! connections instead), a GOAWAY mid-load loses no request the peer did not process,
//! HTTP/1.1 clients reach the HTTP/2 upstream (the proxy translates), a client's body that
//! breaks on the way is the client's fault, not the version's, and a request that gives up
//! resets the upstream stream its body was still streaming to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use support::*;

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    served: AtomicU64,
    /// The most streams any one connection had open at once.
    max_streams: AtomicU64,
}

/// An h2c upstream: at most `max_streams` concurrent streams per connection; each answer
/// waits `delay`; with `goaway_after`, each connection is shut down gracefully (GOAWAY) once it
/// has taken that many requests.
async fn h2_upstream(
    max_streams: u32,
    delay: Duration,
    goaway_after: Option<u64>,
) -> (SocketAddr, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let shared = counters.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let counters = shared.clone();
            tokio::spawn(async move {
                let open = Arc::new(AtomicU64::new(0));
                let taken = Arc::new(AtomicU64::new(0));
                let shut_down = Arc::new(Notify::new());
                let (open2, taken2, shut2, counters2) = (
                    open.clone(),
                    taken.clone(),
                    shut_down.clone(),
                    counters.clone(),
                );
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (open, counters) = (open2.clone(), counters2.clone());
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    counters.max_streams.fetch_max(now, Ordering::SeqCst);
                    if goaway_after.is_some_and(|n| taken2.fetch_add(1, Ordering::SeqCst) + 1 == n)
                    {
                        shut2.notify_one();
                    }
                    let version = format!("{:?}", request.version());
                    async move {
                        tokio::time::sleep(delay).await;
                        counters.served.fetch_add(1, Ordering::SeqCst);
                        open.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version))))
                    }
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.max_concurrent_streams(max_streams);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = shut_down.notified() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
    });
    (addr, counters)
}

fn h2_route(addr: SocketAddr) -> String {
    base_config("", "").replace("workers = 2", "workers = 1")
        + &format!(
            "[[route]]\nname = \"h2\"\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{addr}\"]\nprotocol = \"http2\"\n"
        )
}

async fn burst(proxy: &Canaryd, n: usize) -> Vec<(u16, String)> {
    let client = client();
    let calls = (0..n).map(|_| {
        let (client, url) = (client.clone(), proxy.url("/"));
        tokio::spawn(async move {
            let (status, _, body) = get(&client, &url, &[]).await;
            (status.as_u16(), body)
        })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_reach_an_http2_upstream_over_one_shared_connection() {
    let (addr, counters) = h2_upstream(100, Duration::from_millis(50), None).await;
    let proxy = Canaryd::start(&h2_route(addr));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "HTTP/2.0"));
    let answers = burst(&proxy, 20).await;
    assert!(
        answers.iter().all(|(s, b)| *s == 200 && b == "HTTP/2.0"),
        "{answers:?}"
    );
    assert_eq!(
        counters.connections.load(Ordering::SeqCst),
        1,
        "one worker, one multiplexed connection"
    );
    assert!(
        counters.max_streams.load(Ordering::SeqCst) > 1,
        "streams were multiplexed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_allowing_two_streams_gets_more_connections_never_more_streams() {
    let (addr, counters) = h2_upstream(2, Duration::from_millis(300), None).await;
    let proxy = Canaryd::start(&h2_route(addr));
    // One call first, so the peer's SETTINGS are known.
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status.as_u16(), 200);
    for _ in 0..2 {
        let answers = burst(&proxy, 8).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    }
    assert!(
        counters.max_streams.load(Ordering::SeqCst) <= 2,
        "more streams than allowed"
    );
    assert!(
        counters.connections.load(Ordering::SeqCst) >= 4,
        "8 calls at once over connections of 2 streams need at least 4, got {}",
        counters.connections.load(Ordering::SeqCst)
    );
}

/// A burst on a cold pool: the requests that find no connection wait for the one the first of
/// them is opening instead of each opening one (one worker: one connection, as the peer allows
/// 100 streams), and with a limit of 4 streams, 20 requests at once open ceil(20/4) = 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_cold_pool_opens_only_the_connections_its_streams_need() {
    let (addr, counters) = h2_upstream(100, Duration::from_millis(200), None).await;
    let proxy = Canaryd::start(&h2_route(addr));
    let answers = burst(&proxy, 20).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(
        counters.connections.load(Ordering::SeqCst),
        1,
        "20 requests at once on a cold pool: one worker, one connection"
    );

    let (addr, counters) = h2_upstream(4, Duration::from_millis(200), None).await;
    let proxy = Canaryd::start(&h2_route(addr));
    // One call first: until a response arrives, a new connection is held to h2's guess of 100.
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status.as_u16(), 200);
    let answers = burst(&proxy, 20).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(counters.max_streams.load(Ordering::SeqCst) <= 4);
    assert_eq!(
        counters.connections.load(Ordering::SeqCst),
        5,
        "20 requests at once over connections of 4 streams need 5"
    );
}

/// An upstream that accepts TCP and closes it 200 ms later without a word, so the TLS
/// handshake fails: the requests that waited for the connection being opened get its failure
/// (502) without each trying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_connection_that_fails_share_its_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            // Held a moment, so the burst's other requests find the connection still opening.
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(stream);
        }
    });
    let proxy = Canaryd::start(&(h2_route(addr) + "[route.primary.tls]\nverify = false\n"));
    let answers = burst(&proxy, 10).await;
    assert!(answers.iter().all(|(s, _)| *s == 502), "{answers:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "10 requests at once, one connect attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_mid_load_loses_no_request_the_peer_did_not_process() {
    let (addr, counters) = h2_upstream(100, Duration::from_millis(20), Some(15)).await;
    let proxy = Canaryd::start(&h2_route(addr));
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.extend(burst(&proxy, 10).await);
    }
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 100 failed: {failed:?}",
        failed.len()
    );
    assert!(
        counters.connections.load(Ordering::SeqCst) >= 5,
        "connections were shut down and replaced"
    );
    assert_eq!(
        counters.served.load(Ordering::SeqCst),
        100,
        "every request served exactly once"
    );
}

/// What the frame-level upstream saw.
#[derive(Default)]
struct FrameCounters {
    connections: AtomicU64,
    /// Requests answered; each request is answered once.
    answered: AtomicU64,
    /// Streams the first connection's GOAWAY left out: received, never processed.
    left_out: AtomicU64,
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// `200` with the body `served`: the header block is HPACK's static entry 8 (`:status: 200`).
fn answer(stream: u32) -> Vec<u8> {
    let mut bytes = frame(HEADERS, END_HEADERS, stream, &[0x88]);
    bytes.extend(frame(DATA, END_STREAM, stream, b"served"));
    bytes
}

/// An h2c upstream spoken frame by frame, because no server library lets a test choose which
/// streams its GOAWAY leaves out (hyper's and h2's report every stream whose head arrived as
/// processed). Its first connection answers its first request, then waits until `burst` more
/// requests are open on it, answers the first of those and sends a GOAWAY (`NO_ERROR`) whose
/// last stream id is that one's: the others were never processed (RFC 9113 §6.8), so the proxy
/// may send them again (§8.7). With `burst` 0 the first connection processes nothing: its first
/// request gets a GOAWAY whose last stream id is 0. Later connections answer every request.
async fn goaway_upstream(burst: u64) -> (SocketAddr, Arc<FrameCounters>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(FrameCounters::default());
    let shared = counters.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let first = shared.connections.fetch_add(1, Ordering::SeqCst) == 0;
            let counters = shared.clone();
            tokio::spawn(async move {
                let _ = serve_frames(stream, first, burst, &counters).await;
            });
        }
    });
    (addr, counters)
}

async fn serve_frames(
    mut stream: tokio::net::TcpStream,
    first: bool,
    burst: u64,
    counters: &FrameCounters,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut preface = [0u8; 24];
    stream.read_exact(&mut preface).await?;
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
    let mut warmed_up = false;
    let mut waiting = Vec::new();
    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            PING if flags & ACK == 0 => stream.write_all(&frame(PING, ACK, 0, &payload)).await?,
            HEADERS if first && burst == 0 => {
                stream.write_all(&frame(GOAWAY, 0, 0, &[0; 8])).await?;
                counters.left_out.fetch_add(1, Ordering::SeqCst);
            }
            HEADERS if !first || !warmed_up => {
                warmed_up = true;
                stream.write_all(&answer(id)).await?;
                counters.answered.fetch_add(1, Ordering::SeqCst);
            }
            HEADERS => {
                waiting.push(id);
                if waiting.len() as u64 == burst {
                    stream.write_all(&answer(waiting[0])).await?;
                    counters.answered.fetch_add(1, Ordering::SeqCst);
                    let mut go_away = waiting[0].to_be_bytes().to_vec();
                    go_away.extend_from_slice(&0u32.to_be_bytes()); // NO_ERROR
                    stream.write_all(&frame(GOAWAY, 0, 0, &go_away)).await?;
                    counters.left_out.fetch_add(burst - 1, Ordering::SeqCst);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_goaway_leaves_out_are_sent_again_on_another_connection() {
    let (addr, counters) = goaway_upstream(3).await;
    let proxy = Canaryd::start(&h2_route(addr));
    // The shared connection is open before the burst, so the burst's requests all ride on it.
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "served"));
    let answers = tokio::time::timeout(Duration::from_secs(10), burst(&proxy, 3))
        .await
        .expect("the burst is answered");
    assert_eq!(
        counters.left_out.load(Ordering::SeqCst),
        2,
        "the GOAWAY left two streams out (the test reached the resend path)"
    );
    assert_eq!(
        answers,
        vec![(200, "served".to_string()); 3],
        "no request the peer did not process is lost"
    );
    assert_eq!(
        counters.answered.load(Ordering::SeqCst),
        4,
        "each request answered once: the left-out ones on a new connection"
    );
    assert!(counters.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        resends(&proxy, "h2").await,
        2,
        "each left-out stream counted as sent again"
    );
}

/// `canaryd_upstream_resends_total` of the route's primary, from the admin listener.
async fn resends(proxy: &Canaryd, route: &str) -> u64 {
    let (status, _, text) = get(&client(), &format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    let series =
        format!("canaryd_upstream_resends_total{{route=\"{route}\",version=\"primary\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_out_by_a_new_connections_goaway_is_sent_again() {
    let (addr, counters) = goaway_upstream(0).await;
    let proxy = Canaryd::start(&h2_route(addr));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(counters.left_out.load(Ordering::SeqCst), 1);
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "served"),
        "the request the new connection's peer did not process went to another connection"
    );
    assert_eq!(counters.answered.load(Ordering::SeqCst), 1);
    assert_eq!(counters.connections.load(Ordering::SeqCst), 2);
}

/// A client's body that breaks on its way to an HTTP/2 upstream (a chunk size that is not hex,
/// after a good chunk the upstream already has) is the client's fault: the stream is reset as
/// the proxy's own, the client gets 400, and nothing counts against the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_body_breaking_on_its_way_to_an_http2_upstream_is_a_400_not_a_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, _) = h2_upstream(100, Duration::from_millis(300), None).await;
    let proxy = Canaryd::start(&h2_route(addr));
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    socket
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    let metrics = proxy.server().registry().route("h2");
    let primary = metrics.version(canaryd::config::Version::Primary);
    assert_eq!(primary.code_class(5), 0, "counted against the version");
}

/// An h2c client whose request body stalls after its first chunk, to an HTTP/2 upstream that
/// reads the whole body before answering: when `request_timeout` ends the wait, the upstream's
/// stream is reset at once (its body read fails), not left open for as long as the client's
/// stream stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_gives_up_resets_its_streaming_body_upstream() {
    use http_body_util::{BodyExt, StreamBody};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (read_ended, mut body_outcome) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let read_ended = read_ended.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let read_ended = read_ended.clone();
                async move {
                    let read = request.into_body().collect().await;
                    let _ = read_ended.send(read.is_ok());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("read"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let config = h2_route(addr).replace("workers = 1", "workers = 1\nrequest_timeout = \"500ms\"");
    let proxy = Canaryd::start(&config);

    // The client: h2c with prior knowledge, a body that sends one chunk and then nothing.
    let socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .unwrap();
    tokio::spawn(connection);
    let (chunks, stalled) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, Infallible>>(1);
    chunks
        .send(Ok(hyper::body::Frame::data(Bytes::from("first"))))
        .await
        .unwrap();
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(stalled));
    let request = http::Request::post(format!("http://{}/", proxy.addr))
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    // The proxy's answer: the upstream was waiting for the client's body (408, not counted).
    assert_eq!(response.status(), 408);
    let upstream_read_ok = tokio::time::timeout(Duration::from_secs(2), body_outcome.recv())
        .await
        .expect("the upstream's stream was left open after the request gave up")
        .unwrap();
    assert!(
        !upstream_read_ok,
        "the upstream read a whole body that was never sent"
    );
    drop(chunks);
}
