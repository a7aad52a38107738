//! The client-side fast path against today's path (docs/security.md#the-fast-path-differential-suite):
//! one corpus of requests and upstream answers — every framing, 1xx, every framing error
//! class, keep-alive and pipelined sequences, and requests the fast path must leave to hyper —
//! is sent through canaryd twice, with `proxy.fast_path` on and off (both on canaryd's
//! upstream engine), and the two runs must agree on the bytes the client gets (`Date` aside),
//! whether the client connection closes, the bytes that reach the upstream (`X-Request-Id`
//! values aside), whether the upstream connection is used again, and the request counters.
//! The run with the fast path on must actually have taken it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Canaryd, RawMode, RawUpstream, Scripted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(2);

const fn script(path: &'static str, answer: &'static [u8], then_close: bool) -> Scripted {
    Scripted {
        path,
        answer,
        then_close,
    }
}

/// The upstream's answers, by request path.
const ANSWERS: &[Scripted] = &[
    script("/cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", false),
    script("/cl-zero", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
    script("/chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"a b\"\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false),
    script("/chunked-trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nX-T: done\r\n\r\n", false),
    script("/close-delimited", b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
    script("/no-content", b"HTTP/1.1 204 No Content\r\n\r\n", false),
    script("/not-modified", b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false),
    script("/head", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
    script("/early-hints", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    script("/reason", b"HTTP/1.1 200 Very Fine\r\nContent-Length: 2\r\n\r\nok", false),
    script("/not-found", b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nnope", false),
    script("/server-error", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n", false),
    script("/odd-status", b"HTTP/1.1 299 Whatever\r\nContent-Length: 0\r\n\r\n", false),
    script("/http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    script("/conn-close", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false),
    script("/hop-by-hop", b"HTTP/1.1 200 OK\r\nConnection: x-secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nX-B: 1\r\nContent-Length: 2\r\n\r\nok", false),
    script("/date", b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nok", false),
    script("/same-cl-twice", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", false),
    script("/transfer-coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes", true),
    script("/coded-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false),
    script("/outcome-failure", b"HTTP/1.1 200 OK\r\nX-Outcome: failure\r\nContent-Length: 2\r\n\r\nok", false),
    script("/upload", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true),
    // framing errors
    script("/bad-chunk-size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false),
    script("/bad-chunk-later", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nxyz\r\n", false),
    script("/cl-te", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    script("/duplicate-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", false),
    script("/invalid-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", false),
    script("/past-the-end", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false),
    script("/early-close-body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", true),
    script("/early-close-head", b"HTTP/1.1 200 OK\r\nContent-Le", true),
    script("/unrequested-101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", false),
    script("/bad-status-line", b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", false),
    script("/silent", b"", false),
];

/// One request: method, path, what follows the `Host` line (more fields, then the blank line
/// and a body), and whether it asks to close.
struct Case {
    method: &'static str,
    path: &'static str,
    rest: &'static str,
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = ANSWERS
        .iter()
        .filter(|a| !matches!(a.path, "/head" | "/upload"))
        .map(|a| Case {
            method: "GET",
            path: a.path,
            rest: "Connection: close\r\n\r\n",
        })
        .collect();
    cases.extend([
        Case { method: "HEAD", path: "/head", rest: "Connection: close\r\n\r\n" },
        Case { method: "DELETE", path: "/cl-zero", rest: "Connection: close\r\n\r\n" },
        Case { method: "PUT", path: "/cl-zero", rest: "Content-Length: 0\r\nConnection: close\r\n\r\n" },
        Case {
            method: "GET",
            path: "/cl?q=1&r=%20",
            rest: "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nX-Forwarded-For: 9.9.9.9\r\n\
                   X-Request-Id: given\r\nCookie: a=1\r\nConnection: close\r\n\r\n",
        },
        Case { method: "GET", path: "/ignored/x", rest: "Connection: close\r\n\r\n" },
        // Nobody listens: 502, counted against the version.
        Case { method: "GET", path: "/dead/x", rest: "Connection: close\r\n\r\n" },
        Case { method: "GET", path: "/dead/y", rest: "\r\n" },
        Case { method: "GET", path: "/cl", rest: "X-Canary: yes\r\nConnection: close\r\n\r\n" },
        // Left to hyper: a body, chunked, an upgrade, HTTP/1.0, absolute-form, Expect.
        Case { method: "POST", path: "/cl", rest: "Content-Length: 11\r\nConnection: close\r\n\r\nhello world" },
        Case {
            method: "POST",
            path: "/upload",
            rest: "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        },
        Case {
            method: "GET",
            path: "/cl",
            rest: "Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
        },
        Case { method: "OPTIONS", path: "/cl", rest: "Max-Forwards: 0\r\nConnection: close\r\n\r\n" },
    ]);
    cases
}

/// What one case looked like from both sides.
#[derive(Debug, PartialEq)]
struct Seen {
    /// The client's bytes, without `date`.
    reply: String,
    /// The proxy closed the client connection.
    closed: bool,
    /// What reached the upstream for this case, `x-request-id` masked.
    upstream: String,
    /// The probe after the case arrived on the case's upstream connection.
    reused: bool,
}

async fn read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (out, closed)
}

fn without_dates(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_inclusive("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("date: "))
        .collect()
}

async fn ask(addr: SocketAddr, request: &str) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let (bytes, closed) = read_all(&mut s).await;
    (without_dates(&bytes), closed)
}

fn mask_request_ids(text: &str) -> String {
    text.split_inclusive("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("x-request-id: ") {
                "x-request-id: *\r\n".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// The index of the upstream connection that carried the request `request_line` marked with
/// `marker`, and that connection's bytes from it up to the next probe the test sent.
fn carried(up: &RawUpstream, request_line: &str, marker: &str) -> Option<(usize, String)> {
    up.per_connection()
        .iter()
        .enumerate()
        .find_map(|(i, text)| {
            let at = text.find(marker)?;
            let start = text[..at + marker.len()].rfind(request_line)?;
            let rest = &text[start..];
            let end = rest[1..]
                .find("/probe-")
                .and_then(|p| rest[..p + 1].rfind("GET "))
                .unwrap_or(rest.len());
            Some((i, rest[..end].to_owned()))
        })
}

fn config(fast: bool, upstream: SocketAddr, dir: &std::path::Path) -> String {
    format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\nfast_path = {fast}\n\
         ejection_failures = 0\nretries = 0\nrequest_timeout = \"500ms\"\nversion_header = \"x-canaryd-version\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[state]\npath = \"{}/state.json\"\n\
         [[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{upstream}\"]\n\
         [route.failures]\nignore_paths = [\"/ignored\"]\noutcome_header = \"x-outcome\"\n\
         [[route]]\nname = \"dead\"\npath_prefix = \"/dead\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"127.0.0.1:1\"]\n",
        dir.display(),
    )
}

/// The counters of `/metrics` (histograms aside: latencies differ from run to run).
async fn counters(admin: SocketAddr) -> Vec<String> {
    let (text, _) = ask(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("canaryd_") && l.contains("_total"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

struct Run {
    seen: Vec<Seen>,
    keep_alive: (String, bool, String),
    counters: Vec<String>,
    served_fast: u64,
}

async fn run(fast: bool) -> Run {
    let up = RawUpstream::start(RawMode::ByPath(ANSWERS)).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Canaryd::start(&config(fast, up.addr, dir.path()));
    let before = canaryd::proxy::fast_path_served();
    let mut seen = Vec::new();
    for (i, case) in corpus().into_iter().enumerate() {
        let line = format!("{} {} HTTP/1.1\r\n", case.method, case.path);
        let marker = format!("x-case: {i}\r\n");
        let (reply, closed) = ask(
            proxy.addr,
            &format!("{line}Host: a\r\nX-Case: {i}\r\n{}", case.rest),
        )
        .await;
        let probe = format!("GET /probe-{i} HTTP/1.1\r\n");
        let (probe_reply, _) = ask(
            proxy.addr,
            &format!("{probe}Host: a\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            probe_reply.starts_with("HTTP/1.1 200 OK"),
            "fast {fast}: probe {i}: {probe_reply}"
        );
        let case_conn = carried(&up, &line, &marker);
        let probe_conn = carried(&up, &probe, &probe).map(|(i, _)| i);
        seen.push(Seen {
            reply,
            closed,
            upstream: case_conn
                .as_ref()
                .map(|(_, text)| mask_request_ids(text))
                .unwrap_or_default(),
            reused: case_conn.is_some_and(|(c, _)| Some(c) == probe_conn),
        });
    }
    // Keep-alive and pipelining on one connection: three requests sent at once, a fourth
    // after their answers, the last asking to close.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /cl?ka=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked?ka=2 HTTP/1.1\r\nHost: a\r\n\r\n\
          HEAD /head?ka=3 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"GET /no-content?ka=4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (bytes, closed) = read_all(&mut s).await;
    let upstream_ka = up
        .per_connection()
        .iter()
        .filter(|t| t.contains("?ka="))
        .map(|t| mask_request_ids(&t[t.find("GET /cl?ka=1").unwrap_or(0)..]))
        .collect::<Vec<_>>()
        .join("|");
    let keep_alive = (without_dates(&bytes), closed, upstream_ka);
    let counters = counters(proxy.admin).await;
    Run {
        seen,
        keep_alive,
        counters,
        served_fast: canaryd::proxy::fast_path_served() - before,
    }
}

/// The fast path on and off, the same corpus: the same bytes both ways, the same closes and
/// reuse, the same counters — and the fast path really served the simple requests.
#[tokio::test]
async fn the_fast_path_answers_as_hyper_does() {
    // One after the other: the served count is process-wide.
    let today = run(false).await;
    assert_eq!(
        today.served_fast, 0,
        "the fast path served with fast_path = false"
    );
    let fast = run(true).await;
    let cases = corpus();
    let mut differences = Vec::new();
    for ((case, t), f) in cases.iter().zip(&today.seen).zip(&fast.seen) {
        if t != f {
            differences.push(format!(
                "{} {} {:?}:\n  today: {t:?}\n  fast:  {f:?}",
                case.method, case.path, case.rest
            ));
        }
    }
    if today.keep_alive != fast.keep_alive {
        differences.push(format!(
            "keep-alive:\n  today: {:?}\n  fast:  {:?}",
            today.keep_alive, fast.keep_alive
        ));
    }
    if today.counters != fast.counters {
        differences.push(format!(
            "counters:\n  today: {:?}\n  fast:  {:?}",
            today.counters, fast.counters
        ));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // Every bodiless GET/HEAD/DELETE/PUT of the corpus, and the four keep-alive requests;
    // the last five cases and every probe (41 + 4 of them) went the fast path too.
    let simple_cases = cases.len() - 4;
    assert!(
        fast.served_fast >= (simple_cases + 4) as u64,
        "the fast path served {} requests",
        fast.served_fast
    );
}
