//! Test support: upstream servers on port 0 that count and record what reaches them, canaryd
//! started in-process from a TOML string, small HTTP client helpers, and a real Prometheus
//! for the CI-only suites.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
#[allow(unused_imports)]
pub use binary::*;
mod prometheus;
#[allow(unused_imports)]
pub use prometheus::Prometheus;
mod raw_upstream;
#[allow(unused_imports)]
pub use raw_upstream::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// The body bytes as received.
    pub body: Vec<u8>,
}

/// A test upstream. Behaviour by path:
/// `/slow/MS` waits MS ms; `/status/CODE` answers CODE; `/big/N` streams N bytes;
/// `/upload` streams the request body in and answers its length; `/hang` never answers;
/// `/gated` sends one chunk, then the rest once `release` is notified; anything else: name.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub hits: Arc<AtomicU64>,
    pub accepted: Arc<AtomicU64>,
    /// Answer 500 to every n-th request (0: never).
    pub fail_every: Arc<AtomicU64>,
    /// Milliseconds every answer waits before it is sent.
    pub delay_ms: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<Notify>,
    pub first_upload_chunk: Arc<Notify>,
}

type TestBody = BoxBody<Bytes, Infallible>;

fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into()).boxed()
}

/// A listener on a free loopback port whose accept queue holds 4096 connections, as canaryd's
/// own (`proxy::listener`). `TcpListener::bind` allows 128, and a burst of new upstream
/// connections (1000 h2 streams in `h2load_ci.rs` open about 1000 at once) overflows that: the
/// kernel drops the SYNs, the client resends them after 1 s and 3 s, and the proxy's 2 s
/// `connect_timeout` fails the requests — a flaw of the test server, not of the proxy.
pub async fn listen_local() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(4096).unwrap()
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = listen_local().await;
        let upstream = Upstream {
            addr: listener.local_addr().unwrap(),
            name,
            hits: Arc::default(),
            accepted: Arc::default(),
            delay_ms: Arc::default(),
            fail_every: Arc::default(),
            seen: Arc::default(),
            release: Arc::new(Notify::new()),
            first_upload_chunk: Arc::new(Notify::new()),
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                server.accepted.fetch_add(1, Ordering::SeqCst);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        upstream
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<TestBody> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        let (parts, mut body) = req.into_parts();
        let mut body_len = 0;
        let mut body_bytes = Vec::new();
        let streaming_upload = path == "/upload";
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                body_len += data.len();
                body_bytes.extend_from_slice(data);
                if streaming_upload && first {
                    self.first_upload_chunk.notify_one();
                    first = false;
                }
            }
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.clone(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body_len,
            body: body_bytes,
        });
        let fail_every = self.fail_every.load(Ordering::SeqCst);
        if fail_every > 0 && self.hits.load(Ordering::SeqCst).is_multiple_of(fail_every) {
            let mut r = Response::new(full("injected failure"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        let mut segments = path.trim_start_matches('/').splitn(2, '/');
        let response = match (segments.next(), segments.next()) {
            (Some("slow"), Some(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                Response::new(full(self.name))
            }
            (Some("status"), Some(code)) => {
                let mut r = Response::new(full(self.name));
                *r.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
                r
            }
            (Some("big"), Some(n)) => {
                let total: usize = n.parse().unwrap();
                let chunks = (0..total.div_ceil(65536)).map(move |i| {
                    let len = 65536.min(total - i * 65536);
                    Ok::<_, Infallible>(Frame::data(Bytes::from(vec![(i % 251) as u8; len])))
                });
                Response::new(StreamBody::new(futures_stream(chunks)).boxed())
            }
            (Some("upload"), _) => Response::new(full(body_len.to_string())),
            (Some("hang"), _) => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            (Some("gated"), _) => {
                let release = self.release.clone();
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
                tokio::spawn(async move {
                    let _ = tx
                        .send(Ok(Frame::data(Bytes::from_static(b"first;"))))
                        .await;
                    release.notified().await;
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"rest")))).await;
                });
                Response::new(StreamBody::new(ReceiverStream(rx)).boxed())
            }
            _ => Response::new(full(self.name)),
        };
        let mut response = response;
        response
            .headers_mut()
            .insert("x-upstream", http::HeaderValue::from_static(self.name));
        response
    }
}

/// A `Stream` over an iterator, without pulling in a stream crate.
fn futures_stream<I: Iterator + Unpin>(iter: I) -> IterStream<I> {
    IterStream(iter)
}

pub struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

pub struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> ReceiverStream<T> {
    pub fn new(rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        ReceiverStream(rx)
    }
}

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// canaryd running in-process on ephemeral ports, from a TOML string.
pub struct Canaryd {
    server: Option<canaryd::server::Server>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Canaryd {
    /// Start from TOML; `[proxy]`/`[admin]`/`[state]` listen on port 0 unless the TOML sets them.
    pub fn start(toml: &str) -> Canaryd {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("canaryd.toml");
        std::fs::write(&config_path, toml).unwrap();
        let path = config_path.clone();
        // Server::start runs its own runtimes, so it must not be called from inside the test's.
        let server = std::thread::spawn(move || {
            let config = canaryd::config::load_file(&path).expect("test config is valid");
            canaryd::server::Server::start(config).expect("canaryd starts")
        })
        .join()
        .unwrap();
        Canaryd {
            addr: server.proxy_addrs()[0],
            admin: server.admin_addr(),
            server: Some(server),
            dir,
            config_path,
        }
    }

    pub fn server(&self) -> &canaryd::server::Server {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The route's phase as the admin API shows it; empty for a route without analysis.
    pub fn phase(&self, route: &str) -> String {
        self.server()
            .analysis()
            .status(route)
            .map(|s| s.phase.to_owned())
            .unwrap_or_default()
    }

    /// Rewrite the config file and reload it (as SIGHUP would).
    pub async fn reload_with(&self, toml: &str) -> Result<u64, canaryd::control::ReloadError> {
        // Write aside and rename over, as ConfigMaps and careful tools do.
        let aside = self.config_path.with_extension("toml.next");
        std::fs::write(&aside, toml).unwrap();
        std::fs::rename(&aside, &self.config_path).unwrap();
        self.server()
            .reloader()
            .reload(canaryd::control::ReloadTrigger::Api)
            .await
    }
}

impl Drop for Canaryd {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Shutdown blocks on worker threads: do it off the test's runtime.
            let _ = std::thread::spawn(move || server.shutdown()).join();
        }
    }
}

/// Standard `[proxy]`/`[admin]`/`[state]` sections on ephemeral ports, plus `extra_proxy` lines.
pub fn base_config(dir_hint: &str, extra_proxy: &str) -> String {
    format!(
        r#"[proxy]
listen = ["127.0.0.1:0"]
workers = 2
{extra_proxy}
[admin]
listen = "127.0.0.1:0"
[state]
path = "{dir_hint}state.json"
"#
    )
}

/// A route with a primary and a canary at a static weight.
pub fn split_route(name: &str, primary: &Upstream, canary: &Upstream, weight: u8) -> String {
    format!(
        r#"
[[route]]
name = "{name}"
[route.primary]
revision = "v1"
endpoints = ["{}"]
[route.canary]
revision = "v2"
endpoints = ["{}"]
weight = {weight}
"#,
        primary.addr, canary.addr
    )
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>;

/// Route "app": every request to `up` as the primary, revision v1, no canary.
pub fn app_route(up: &Upstream) -> String {
    format!(
        "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n",
        up.addr
    )
}

/// Route "shop" (primary v1, canary v2 on the given upstreams) under analysis: `analysis` is the
/// body of its `[route.analysis]` table (interval, threshold, steps…); add
/// [`BUILTIN_METRICS`] and webhooks after it as needed.
pub fn analysed_route(primary: &Upstream, canary: &Upstream, analysis: &str) -> String {
    format!(
        "\n[[route]]\nname = \"shop\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n\
         [route.canary]\nrevision = \"v2\"\nendpoints = [\"{}\"]\n[route.analysis]\n{}\n",
        primary.addr,
        canary.addr,
        analysis.trim()
    )
}

/// Both built-in checks: success rate ≥ 99%, P99 ≤ 500 ms.
pub const BUILTIN_METRICS: &str = r#"[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0
[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99
"#;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET with headers; status, headers and body text.
pub async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Count which upstream answered `n` requests.
pub async fn tally(
    client: &HttpClient,
    url: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let (status, _, body) = get(client, url, headers).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        *counts.entry(body).or_insert(0) += 1;
    }
    counts
}

/// Requests sent by a background load generator, until dropped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    pub sent: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// About `rps` requests per second to `url` from 4 concurrent clients.
    pub fn start(url: String, rps: u64) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let client = client();
                let pause = Duration::from_micros(4_000_000 / rps.max(1));
                let mut workers = Vec::new();
                for _ in 0..4 {
                    let (stop, sent, client, url) =
                        (stop.clone(), sent.clone(), client.clone(), url.clone());
                    workers.push(tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let req = Request::get(&url).body(full(Bytes::new())).unwrap();
                            if let Ok(resp) = client.request(req).await {
                                let _ = resp.into_body().collect().await;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(pause).await;
                        }
                    }));
                }
                for w in workers {
                    let _ = w.await;
                }
            }
        });
        Load {
            stop,
            sent,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A webhook receiver: records every JSON payload and answers with `status`.
#[derive(Clone)]
pub struct HookReceiver {
    pub addr: SocketAddr,
    pub payloads: Arc<Mutex<Vec<serde_json::Value>>>,
    pub status: Arc<AtomicU64>,
}

impl HookReceiver {
    pub async fn start() -> HookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = HookReceiver {
            addr: listener.local_addr().unwrap(),
            payloads: Arc::default(),
            status: Arc::new(AtomicU64::new(200)),
        };
        let server = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let server = server.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if let Ok(json) = serde_json::from_slice(&body) {
                                server.payloads.lock().unwrap().push(json);
                            }
                            let mut resp = Response::new(full(Bytes::new()));
                            *resp.status_mut() =
                                StatusCode::from_u16(server.status.load(Ordering::SeqCst) as u16)
                                    .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Payloads of one webhook type.
    pub fn of_type(&self, kind: &str) -> Vec<serde_json::Value> {
        self.payloads
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == kind)
            .cloned()
            .collect()
    }
}

/// Poll `f` every 20 ms until it is true, or panic after `limit`.
/// Read an answer from an `Upstream` named "app" (its body is its name) on a raw client
/// connection, until the name arrives; it must be a 200.
pub async fn read_app_answer(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"app") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
}

/// Send `request` on a raw client connection and read the "app" upstream's whole answer.
pub async fn raw_exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(request).await.unwrap();
    read_app_answer(stream).await;
}

pub async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
