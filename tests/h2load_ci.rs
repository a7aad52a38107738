//! CI-only: nghttp2's `h2load` bursting many concurrent HTTP/2 streams at canaryd's h2c (prior
//! knowledge) listener. Within the stream limit (`-m 100`) every one of 20 000 requests over 10
//! connections succeeds and reaches the upstream. Asking for more (`-m 300`, over canaryd's
//! MAX_CONCURRENT_STREAMS of 256) also succeeds without a single failure, because h2load honours
//! the advertised limit and queues the rest itself (nghttp2 opens at most 100 streams before the
//! server's SETTINGS arrive); the proxy serves normally afterwards. The server side of the limit
//! (streams over 256 refused with REFUSED_STREAM) is tested with raw frames in `h2_limits.rs`.
//!
//! Needs `h2load` on `PATH` (Debian/Ubuntu: `apt-get install nghttp2-client`), or its path in
//! `H2LOAD`. Run with `cargo test --test h2load_ci -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;

use support::*;

/// The `requests:` line of h2load's summary.
#[derive(Debug, PartialEq)]
struct Requests {
    total: u64,
    succeeded: u64,
    failed: u64,
    errored: u64,
    timeout: u64,
}

/// Parse `requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed,
/// 0 errored, 0 timeout`.
fn parse_requests(out: &str) -> Requests {
    let line = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line in h2load's output:\n{out}"));
    let field = |name: &str| -> u64 {
        line.trim_start_matches("requests:")
            .split(',')
            .map(str::trim)
            .find_map(|part| part.strip_suffix(name).map(str::trim))
            .unwrap_or_else(|| panic!("no `{name}` in {line:?}"))
            .parse()
            .unwrap()
    };
    Requests {
        total: field("total"),
        succeeded: field("succeeded"),
        failed: field("failed"),
        errored: field("errored"),
        timeout: field("timeout"),
    }
}

/// Run h2load with `args`; its standard output (it must exit 0). A connection without activity
/// for 10 s, or open for 60 s, is given up (its requests count as failed), so a stall fails the
/// test instead of hanging it.
async fn h2load(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let program = std::env::var("H2LOAD").unwrap_or_else(|_| "h2load".to_owned());
        let out = Command::new(program)
            .args(["-N", "10", "-T", "60"])
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "h2load {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn one_route(up: &Upstream) -> String {
    base_config("", "drain_timeout = \"2s\"") + &app_route(up)
}

#[test]
fn the_requests_line_is_parsed() {
    let out = "finished in 1.23s, 100 req/s\nrequests: 20000 total, 20000 started, 19990 done, \
               19980 succeeded, 10 failed, 10 errored, 0 timeout\nstatus codes: 19980 2xx";
    assert_eq!(
        parse_requests(out),
        Requests {
            total: 20000,
            succeeded: 19980,
            failed: 10,
            errored: 10,
            timeout: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs h2load (Debian package nghttp2-client)"]
async fn h2load_bursts_within_the_stream_limit_all_succeed() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&one_route(&up));
    let url = proxy.url("/load");
    let out = h2load(args(&["-n", "20000", "-c", "10", "-m", "100", &url])).await;
    let requests = parse_requests(&out);
    assert_eq!(
        requests,
        Requests {
            total: 20000,
            succeeded: 20000,
            failed: 0,
            errored: 0,
            timeout: 0
        },
        "{out}"
    );
    assert!(out.contains("status codes: 20000 2xx"), "{out}");
    assert!(out.contains("Application protocol: h2c"), "{out}");
    assert_eq!(up.hits(), 20000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs h2load (Debian package nghttp2-client)"]
async fn h2load_bursts_over_the_stream_limit_leave_the_proxy_serving() {
    let up = Upstream::start("app").await;
    // Slow answers keep streams open: each connection has as many in flight as it may.
    up.delay_ms.store(200, Ordering::SeqCst);
    let proxy = Canaryd::start(&one_route(&up));
    let url = proxy.url("/over");
    let out = h2load(args(&["-n", "6000", "-c", "4", "-m", "300", &url])).await;
    assert_eq!(
        parse_requests(&out),
        Requests {
            total: 6000,
            succeeded: 6000,
            failed: 0,
            errored: 0,
            timeout: 0
        },
        "{out}"
    );
    assert!(out.contains("status codes: 6000 2xx"), "{out}");
    assert_eq!(up.hits(), 6000);

    // Still serving, over HTTP/1.1 and HTTP/2.
    up.delay_ms.store(0, Ordering::SeqCst);
    let (status, _, body) = get(&client(), &proxy.url("/after"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, "app");
    let out = h2load(args(&["-n", "1000", "-c", "2", "-m", "50", &url])).await;
    let requests = parse_requests(&out);
    assert_eq!(
        (requests.succeeded, requests.failed, requests.errored),
        (1000, 0, 0),
        "{out}"
    );
}
