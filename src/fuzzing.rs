//! The byte-level entry points of the fuzz targets in `fuzz/` and of their corpus replay in
//! `tests/fuzz_corpus.rs` (docs/security.md#fuzzing). Not an API: hidden from the docs, kept
//! public only so that both can reach what they exercise.
//!
//! Each function takes arbitrary bytes and panics only when canaryd has a bug: a crash in the
//! code under test, or a property that code promises not holding. Each property is said
//! where it is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::analysis::state_file;
use crate::analysis::Rollout;
use crate::config::{parse_str, HostPattern, JsonPath, JsonStep};
use crate::metrics::MetricsRegistry;
use crate::proxy::headers::{self, ClientFacts, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::proxy::{malformed_head, Rewind};
use crate::routing::{strip_port, BackendCache, Resolved, RoutingSnapshot};

mod fast_head;
#[cfg(feature = "fleet")]
mod fleet_wire;
pub use fast_head::{fast_head, fast_head_verdict};
#[cfg(feature = "fleet")]
pub use fleet_wire::fleet_wire;

/// Config parsing and validation: never a panic; an error points inside the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A path that does not exist: relative TLS and token files resolve to nothing.
    let path = Path::new("/nonexistent/canaryd-fuzz/canaryd.toml");
    if let Err(e) = parse_str(text, path) {
        let lines = text.split('\n').count();
        let line = e.line().unwrap_or(1);
        assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
        assert!(e.column().unwrap_or(1) >= 1, "{e}");
    }
}

/// A request head as canaryd's checks see it, built from loose lines: the first is
/// `<version digit> <target>` (the digit also picks the method: GET, POST, CONNECT or
/// OPTIONS), every other `name: value`. Lines that do not make a valid `http` value are
/// skipped: hyper never hands those over.
fn head_from(data: &[u8]) -> Option<(Method, Version, Uri, HeaderMap)> {
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next()?;
    let (&digit, target) = first.split_first()?;
    let version = match digit % 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => Version::HTTP_2,
    };
    let method = match (digit / 3) % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::CONNECT,
        _ => Method::OPTIONS,
    };
    let uri = Uri::try_from(target.trim_ascii()).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // HTTP/1 parsing trims the value; HTTP/2 carries it as sent.
        let value = if version == Version::HTTP_2 {
            value
        } else {
            value.trim_ascii()
        };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    Some((method, version, uri, headers))
}

/// Request-head checks and header rewriting: what reaches an upstream carries no hop-by-hop
/// header, nothing `Connection` named, and exactly one `X-Forwarded-For` (the peer's, from an
/// untrusted peer), `X-Forwarded-Proto` and `X-Request-Id` (`docs/security.md`).
pub fn request_head(data: &[u8]) {
    let Some((method, version, uri, mut headers)) = head_from(data) else {
        return;
    };
    let _ = headers::request_codings(&headers);
    if malformed_head(&method, version, &uri, &headers).is_some() {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let authority = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| headers.get(HOST).cloned());
    let peer: IpAddr = [192, 0, 2, 7].into();
    let peer_value = headers::peer_header_value(peer);
    let facts = ClientFacts {
        peer,
        peer_value: &peer_value,
        tls: data.len().is_multiple_of(2),
        authority: authority.as_ref(),
        trusted_proxies: &[],
    };
    headers::rewrite_request(&mut headers, &facts);
    let set_by_the_proxy = [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &headers::X_FORWARDED_HOST,
        &X_REQUEST_ID,
        &HOST,
        &TE,
    ];
    // `TE` goes on only as the proxy's own `trailers` (docs/routing.md#grpc).
    assert!(
        headers.get_all(TE).iter().all(|v| v == "trailers"),
        "a client's TE forwarded: {headers:?}"
    );
    for gone in [&CONNECTION, &TRAILER, &TRANSFER_ENCODING, &UPGRADE]
        .into_iter()
        .chain(named.iter().filter(|n| !set_by_the_proxy.contains(n)))
    {
        assert!(!headers.contains_key(gone), "{gone} forwarded: {headers:?}");
    }
    let forwarded_for: Vec<_> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
    assert_eq!(forwarded_for, [&peer_value], "{headers:?}");
    assert_eq!(headers.get_all(&X_FORWARDED_PROTO).iter().count(), 1);
    // A client's own request ids are kept; one is added when it sent none.
    assert!(headers.contains_key(&X_REQUEST_ID));
    if let Some(authority) = &authority {
        assert_eq!(
            headers.get_all(HOST).iter().collect::<Vec<_>>(),
            [authority]
        );
    }
    headers::rewrite_response(&mut headers, None, crate::config::Version::Canary);
    assert!(!headers.contains_key(CONNECTION));
}

/// A client socket that yields `input` in reads of at most `chunk` bytes, then end of stream,
/// and swallows writes. Every other read is not ready yet, as on a real socket, so the loop
/// serving the connection gets to run between reads.
struct ScriptedSocket {
    input: Bytes,
    chunk: usize,
    ready: bool,
}

impl AsyncRead for ScriptedSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.ready = !self.ready;
        if !self.ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = self.input.len().min(self.chunk).min(buf.remaining());
        let bytes = self.input.split_to(n);
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScriptedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a server saw of one request: method, target, and its body (or that the body failed).
type Seen = (String, String, Result<Bytes, ()>);

/// What the fuzzed round's requests tell its loop (`Round` in `proxy/http1_rounds.rs`).
#[derive(Default)]
struct RoundSeen {
    started: AtomicU32,
    answered: AtomicU32,
    bodiless: AtomicBool,
    answered_one: tokio::sync::Notify,
}

/// Serve one hyper HTTP/1 connection on `socket`, recording requests into `seen`. With
/// `end_at_boundary`, the connection stops (as a round does, `proxy/http1_rounds.rs`) after
/// the first answered request without a body; returns the socket and the bytes hyper read
/// past that request, or `None` when the connection ended instead.
async fn serve_http1(
    socket: Rewind<ScriptedSocket>,
    seen: Arc<Mutex<Vec<Seen>>>,
    end_at_boundary: bool,
) -> Option<(Rewind<ScriptedSocket>, Bytes)> {
    let round = Arc::new(RoundSeen::default());
    let service = {
        let round = round.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (seen, round) = (seen.clone(), round.clone());
            // Boxed: hyper's connection must be `Unpin` to be polled without shutdown.
            Box::pin(async move {
                use hyper::body::Body as _;
                round.started.fetch_add(1, Relaxed);
                let no_body =
                    request.body().is_end_stream() && !request.headers().contains_key(CONNECTION);
                let method = request.method().to_string();
                let target = request.uri().to_string();
                let body = request.into_body().collect().await;
                let body = body.map(|b| b.to_bytes()).map_err(|_| ());
                seen.lock().unwrap().push((method, target, body));
                round.bodiless.store(no_body, Relaxed);
                round.answered.fetch_add(1, Relaxed);
                round.answered_one.notify_one();
                Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
            })
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    let mut connection = builder.serve_connection(TokioIo::new(socket), service);
    let mut ending = false;
    let result = loop {
        tokio::select! {
            biased;
            result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
            () = round.answered_one.notified(), if end_at_boundary && !ending => {
                // As `Round::can_end`: every request started is answered, the last bodiless.
                if round.started.load(Relaxed) == round.answered.load(Relaxed)
                    && round.bodiless.load(Relaxed)
                {
                    Pin::new(&mut connection).graceful_shutdown();
                    ending = true;
                }
            }
        }
    };
    if result.is_err() || !ending {
        return None;
    }
    let parts = connection.into_parts();
    Some((parts.io.into_inner(), parts.read_buf))
}

/// The HTTP/1 rounds boundary: a byte stream served in rounds, each ending after a bodiless
/// request with what hyper read past it put back in front of the socket, yields the same
/// requests, bodies and order as one connection serving the whole stream. The first byte sets
/// the read size, so requests straddle reads in every way.
pub fn rounds_boundary(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = || {
        Rewind::new(ScriptedSocket {
            input: Bytes::copy_from_slice(stream),
            chunk,
            ready: false,
        })
    };
    runtime.block_on(async {
        let whole = Arc::new(Mutex::new(Vec::new()));
        serve_http1(socket(), whole.clone(), false).await;
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let mut next = Some(socket());
        // A round serves at least one request, so there are never more rounds than bytes.
        for _ in 0..=stream.len() {
            let Some(socket) = next.take() else { break };
            match serve_http1(socket, rounds.clone(), true).await {
                Some((mut socket, read_past)) => {
                    socket.put_back(read_past);
                    next = Some(socket);
                }
                None => break,
            }
        }
        let whole = whole.lock().unwrap();
        let rounds = rounds.lock().unwrap();
        assert_eq!(*rounds, *whole, "rounds and one connection disagree");
    });
}

/// The state file loader: never a panic; a document it accepts survives being written back
/// and read again unchanged (what a save followed by a restart does).
pub fn state_file(data: &[u8]) {
    if let Ok(doc) = state_file::parse::<Rollout>(data) {
        let written = serde_json::to_vec(&doc).unwrap();
        let again = state_file::parse::<Rollout>(&written).unwrap();
        assert_eq!(again, doc);
    }
}

/// Host and path matching: the route table picks what the rules of docs/routing.md#1-route
/// pick when applied by brute force to every route — an exact host beats a wildcard (the
/// longest suffix first), which beats a route without hosts, the longest matching
/// `path_prefix` within each, a group without a match falling through to the next.
///
/// Input lines: `R <hosts, comma-separated or -> <path_prefix>` declare routes, every other
/// line is a request `<authority or -> <path>`.
pub fn routing(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut toml = String::new();
    let mut routes = 0;
    let mut requests = Vec::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("R"), Some(hosts), Some(prefix)) => {
                let hosts: Vec<toml::Value> = hosts
                    .split(',')
                    .filter(|h| *h != "-")
                    .map(|h| toml::Value::String(h.to_owned()))
                    .collect();
                routes += 1;
                toml.push_str(&format!(
                    "[[route]]\nname = \"r{routes}\"\nhosts = {}\npath_prefix = {}\n\
                     [route.primary]\nendpoints = [\"127.0.0.1:1\"]\n",
                    toml::Value::Array(hosts),
                    toml::Value::String(prefix.to_owned()),
                ));
            }
            (Some(authority), Some(path), None) => requests.push((
                (authority != "-").then(|| authority.to_owned()),
                path.to_owned(),
            )),
            _ => {}
        }
    }
    let Ok(config) = parse_str(&toml, Path::new("/nonexistent/canaryd-fuzz/routes.toml")) else {
        return;
    };
    let config = Arc::new(config);
    let snapshot = RoutingSnapshot::build(
        config.clone(),
        &HashMap::new(),
        &Resolved::new(),
        &mut BackendCache::default(),
        &MetricsRegistry::default(),
        1,
    );
    for (authority, path) in &requests {
        let found = snapshot
            .table
            .find(authority.as_deref(), path)
            .map(|r| r.name.to_string());
        let host = authority
            .as_deref()
            .map(strip_port)
            // Hosts longer than a DNS name are matched as no host (`routing/hosts.rs`).
            .filter(|h| h.len() <= 256)
            .map(str::to_ascii_lowercase);
        // (group: 2 exact, 1 wildcard, 0 none; suffix length; prefix length) — the best wins.
        let best = config
            .routes
            .iter()
            .filter(|r| path.starts_with(&r.path_prefix))
            .flat_map(|r| {
                let by_host = r.hosts.iter().filter_map(|pattern| match (pattern, &host) {
                    (HostPattern::Exact(h), Some(host)) if h == host => Some((2, 0)),
                    (HostPattern::Wildcard(s), Some(host))
                        if host.len() > s.len() && host.ends_with(s.as_str()) =>
                    {
                        Some((1, s.len()))
                    }
                    _ => None,
                });
                let any = r.hosts.is_empty().then_some((0, 0));
                by_host
                    .chain(any)
                    .map(move |(group, suffix)| ((group, suffix, r.path_prefix.len()), &r.name))
            })
            .max_by_key(|(score, _)| *score)
            .map(|(_, name)| name.clone());
        assert_eq!(found, best, "{authority:?} {path:?} in\n{toml}");
    }
}

/// gRPC's own header fields, read from an upstream's trailers (`proxy/grpc.rs`): the first line
/// is a `grpc-status` value, the second a `grpc-timeout` value. A status is always a code
/// canaryd knows (0–16; anything else reads as UNKNOWN), and a deadline is at most 99,999,999
/// hours, the most eight digits can say.
pub fn grpc_fields(data: &[u8]) {
    let mut lines = data.splitn(2, |b| *b == b'\n');
    let mut headers = HeaderMap::new();
    for name in ["grpc-status", "grpc-timeout"] {
        let Some(line) = lines.next() else { break };
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(code) = crate::proxy::grpc_status(&headers) {
        assert!(code <= 16, "grpc-status read as {code}");
    }
    if let Some(deadline) = crate::proxy::grpc_timeout(&headers) {
        assert!(
            deadline <= Duration::from_secs(99_999_999 * 3600),
            "{deadline:?}"
        );
    }
}

/// An external metric's answer (`analysis/runner/external.rs`): the first line is a path of
/// `.`-separated keys (a number is an array index), the rest the JSON answer, read both as a
/// Prometheus instant-query answer and at that path. A Prometheus value is never NaN (no data
/// is never a number), and a value read at a path is exactly the number written there.
pub fn external_answer(data: &[u8]) {
    let (first, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    if let Ok(value) = crate::analysis::prometheus_value(&json) {
        assert!(!value.is_nan(), "a NaN sample passed as a value");
    }
    let steps = String::from_utf8_lossy(first)
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(index) => JsonStep::Index(index),
            Err(_) => JsonStep::Key(s.to_owned()),
        })
        .collect();
    let path = JsonPath(steps);
    if let Ok(value) = crate::analysis::json_value(&json, &path) {
        let mut at = &json;
        for step in &path.0 {
            at = match step {
                JsonStep::Key(key) => &at[key.as_str()],
                JsonStep::Index(index) => &at[*index],
            };
        }
        let written = match at {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        assert!(
            written.is_some_and(|w| w.to_bits() == value.to_bits()),
            "read {value} where {at} was written"
        );
    }
}

/// A fuzzed response's final head: status, framing, keep-alive, fields.
type ReadHead = (u16, String, bool, Vec<(String, Vec<u8>)>);

/// What canaryd's upstream HTTP/1.1 engine makes of a response, read from a buffer fed `step`
/// bytes at a time: the 1xx statuses, the final head, the body and trailers, the bytes left
/// after the message, or where it failed.
#[derive(Debug, PartialEq)]
struct ReadResponse {
    informational: Vec<u16>,
    head: Option<ReadHead>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    left: usize,
    failed: Option<String>,
    complete: bool,
}

fn read_response(input: &[u8], method: &Method, step: usize) -> ReadResponse {
    use crate::upstream::http1::chunked::{Chunk, ChunkedDecoder};
    use crate::upstream::http1::response_head::{parse, Framing, Parsed};
    let mut read = ReadResponse {
        informational: Vec::new(),
        head: None,
        body: Vec::new(),
        trailers: Vec::new(),
        left: 0,
        failed: None,
        complete: false,
    };
    let mut buf = bytes::BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut bytes::BytesMut| -> bool {
        if fed == input.len() {
            return false;
        }
        let next = (fed + step).min(input.len());
        buf.extend_from_slice(&input[fed..next]);
        fed = next;
        true
    };
    let head = loop {
        match parse(&mut buf, method) {
            Ok(Parsed::Partial) => {
                if !feed(&mut buf) {
                    return read;
                }
            }
            Ok(Parsed::Informational(status, _)) => read.informational.push(status.as_u16()),
            Ok(Parsed::Final(head)) => break head,
            Err(e) => {
                read.failed = Some(e.to_string());
                return read;
            }
        }
    };
    let fields = |map: &HeaderMap| {
        map.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    let both = head.headers.contains_key(http::header::CONTENT_LENGTH)
        && head.headers.contains_key(TRANSFER_ENCODING);
    if both || matches!(head.framing, Framing::Close | Framing::Switch) {
        assert!(
            !head.keep_alive,
            "a {:?} message left its connection reusable",
            head.framing
        );
    }
    read.head = Some((
        head.status.as_u16(),
        format!("{:?}", head.framing),
        head.keep_alive,
        fields(&head.headers),
    ));
    match head.framing {
        Framing::Empty | Framing::Switch => read.complete = true,
        Framing::Length(n) => loop {
            let want = usize::try_from(n).unwrap_or(usize::MAX) - read.body.len();
            let take = want.min(buf.len());
            read.body.extend_from_slice(&buf.split_to(take));
            if read.body.len() as u64 == n {
                read.complete = true;
                break;
            }
            if !feed(&mut buf) {
                break;
            }
        },
        Framing::Close => {
            while feed(&mut buf) {}
            read.body.extend_from_slice(&buf.split());
            read.complete = true;
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Chunk::Data(data)) => read.body.extend_from_slice(&data),
                    Ok(Chunk::Trailers(trailers)) => {
                        read.trailers = fields(&trailers);
                        read.complete = true;
                        break;
                    }
                    Ok(Chunk::End) => {
                        read.complete = true;
                        break;
                    }
                    Ok(Chunk::NeedMore) => {
                        if !feed(&mut buf) {
                            break;
                        }
                    }
                    Err(e) => {
                        read.failed = Some(e.to_string());
                        break;
                    }
                }
            }
        }
    }
    read.left = buf.len() + input.len() - fed;
    read
}

/// The engine's head parse for the fast path (fields left as spans) decides as the parse into a
/// `HeaderMap` does: the same error or 1xx, the same status, version, reason, framing and
/// keep-alive, and the same fields (names lowercased, grouped as a `HeaderMap` iterates them).
fn same_flat_head(input: &[u8], method: &Method) {
    use crate::upstream::http1::response_head::{parse, parse_with, Parsed};
    let mut map_buf = bytes::BytesMut::from(input);
    let mut flat_buf = bytes::BytesMut::from(input);
    loop {
        let by_map = parse(&mut map_buf, method);
        let by_flat = parse_with(&mut flat_buf, method, true);
        match (by_map, by_flat) {
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                return;
            }
            (Ok(Parsed::Partial), Ok(Parsed::Partial)) => return,
            (Ok(Parsed::Informational(a, _)), Ok(Parsed::Informational(b, _))) => {
                assert_eq!(a, b);
            }
            (Ok(Parsed::Final(a)), Ok(Parsed::Final(b))) => {
                assert_eq!(
                    (a.status, a.version, a.framing, a.keep_alive),
                    (b.status, b.version, b.framing, b.keep_alive)
                );
                assert_eq!(
                    a.reason.map(|r| r.as_bytes().to_vec()),
                    b.reason.map(|r| r.as_bytes().to_vec())
                );
                let flat = b.flat.expect("a flat parse leaves spans");
                let mut names: Vec<String> = Vec::new();
                let lowered: Vec<(String, Vec<u8>)> = flat
                    .iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
                    .collect();
                for (n, _) in &lowered {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                let grouped: Vec<(String, Vec<u8>)> = names
                    .iter()
                    .flat_map(|n| lowered.iter().filter(move |(m, _)| m == n).cloned())
                    .collect();
                let mapped: Vec<(String, Vec<u8>)> = a
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect();
                assert_eq!(grouped, mapped);
                assert_eq!(map_buf, flat_buf);
                return;
            }
            (a, b) => panic!("the two parses disagree: {a:?} / {b:?}"),
        }
    }
}

/// canaryd's upstream HTTP/1.1 engine reading a response (`upstream::http1`): the first byte
/// picks the request method (GET, HEAD, POST, CONNECT) and how many bytes arrive at a time,
/// the rest is what the upstream sent. Properties: the result does not depend on how the bytes
/// were split; a message with `Content-Length` and `Transfer-Encoding`, a close-delimited one
/// and a `101` never leave the connection reusable; a body is never longer than its framing
/// allows; a chunked body decoded is decoded again the same after re-encoding.
pub fn upstream_response(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let method =
        [Method::GET, Method::HEAD, Method::POST, Method::CONNECT][usize::from(first & 3)].clone();
    let step = usize::from(first >> 2) + 1;
    let whole = read_response(input, &method, input.len().max(1));
    let split = read_response(input, &method, step);
    assert_eq!(whole, split, "split every {step} bytes");
    same_flat_head(input, &method);
    assert!(whole.body.len() <= input.len());
    let Some((_, framing, _, _)) = &whole.head else {
        return;
    };
    if framing.starts_with("Length(") {
        let n: u64 = framing["Length(".len()..framing.len() - 1].parse().unwrap();
        assert!(whole.body.len() as u64 <= n);
    }
    if framing == "Chunked" && whole.complete && whole.failed.is_none() {
        use crate::upstream::http1::chunked::{Chunk, ChunkedDecoder};
        let mut again = bytes::BytesMut::new();
        if !whole.body.is_empty() {
            again.extend_from_slice(format!("{:x}\r\n", whole.body.len()).as_bytes());
            again.extend_from_slice(&whole.body);
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(b"0\r\n\r\n");
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut again).unwrap() {
                Chunk::Data(d) => body.extend_from_slice(&d),
                Chunk::End => break,
                other => panic!("re-encoded body decoded as {other:?}"),
            }
        }
        assert_eq!(body, whole.body);
    }
}
