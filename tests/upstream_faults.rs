//! Upstreams that misbehave: one that dies mid-response gives the client an aborted response
//! (never a truncated "complete" one) and counts as a failure; one that answers with invalid
//! framing gets a 502 and its connection is not reused; a pool that refuses every connection
//! gets retries only within the retry budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canaryd::config::Version;
use canaryd::metrics::{RetryOutcome, UpstreamErrorKind, RETRY_BUDGET_WINDOW_SECS};
use canaryd::upstream::ConnectFailure;
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
    for _ in 0..2 * canaryd::config::EjectionConfig::default().failures {
        let (status, _, _) = get(&client, &proxy.url("/"), &[]).await;
        errors += usize::from(status == 500);
    }
    assert_eq!(
        errors,
        canaryd::config::EjectionConfig::default().failures as usize
    );
    let bad_hits = bad.hits();
    // Ejected: everything goes to the good endpoint for the back-off (5 s).
    let counts = tally(&client, &proxy.url("/"), 30, &[]).await;
    assert_eq!(counts.get("good"), Some(&30), "{counts:?}");
    assert_eq!(bad.hits(), bad_hits);
}

#[tokio::test]
async fn ejection_follows_its_config_keys_and_a_reload() {
    let bad = Upstream::start("bad").await;
    bad.fail_every.store(1, Ordering::SeqCst); // every answer is 500
    let good = Upstream::start("good").await;
    let route = format!(
        "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\", \"{}\"]\nload_balancing = \"round-robin\"\n",
        bad.addr, good.addr
    );
    let keys = "retries = 0\nejection_failures = 2\nejection_base_time = \"300ms\"\nejection_max_time = \"300ms\"";
    let toml = base_config("", keys).replace("workers = 2", "workers = 1") + &route;
    let proxy = Canaryd::start(&toml);
    let client = client();
    // Two failures in a row eject it (the default would take five).
    let mut errors = 0;
    for _ in 0..4 {
        let (status, _, _) = get(&client, &proxy.url("/"), &[]).await;
        errors += usize::from(status == 500);
    }
    assert_eq!(errors, 2);
    let counts = tally(&client, &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("good"), Some(&20), "{counts:?}");
    // After the 300 ms back-off one probe goes to it, fails, and ejects it again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = bad.hits();
    for _ in 0..20 {
        get(&client, &proxy.url("/"), &[]).await;
    }
    assert_eq!(bad.hits(), before + 1);
    // A reload with ejection_failures = 0 turns ejection off: once the running back-off ends,
    // the bad endpoint gets its round-robin share again.
    let off = toml.replace("ejection_failures = 2", "ejection_failures = 0");
    proxy.reload_with(&off).await.unwrap();
    // The rename also wakes the file watcher, whose own reload rebuilds the snapshot (and with
    // it the round-robin cursor): let it land before counting the split.
    let reloads = &proxy.server().registry().process.reloads_success;
    eventually("the file watcher's reload", Duration::from_secs(3), || {
        reloads.load(Ordering::SeqCst) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = bad.hits();
    for _ in 0..20 {
        get(&client, &proxy.url("/"), &[]).await;
    }
    assert_eq!(bad.hits(), before + 10);
}

/// An address that refuses connections: bound, then released.
async fn dead_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Connect attempts that failed, counted from the proxy's own `connect failed` debug events of
/// one route: what really reached the refusing pool, independently of the retry counters.
struct ConnectFailures {
    route: &'static str,
    count: Arc<AtomicU64>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ConnectFailures {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            route: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "route" => self.route = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "connect failed" && fields.route == self.route {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Count `route`'s failed connects from now on (one route per test binary).
fn count_connect_failures(route: &'static str) -> Arc<AtomicU64> {
    use tracing_subscriber::layer::SubscriberExt;
    let count = Arc::new(AtomicU64::new(0));
    let layer = ConnectFailures {
        route,
        count: count.clone(),
    };
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("only one test installs a subscriber");
    count
}

#[tokio::test]
async fn a_pool_that_refuses_every_connection_gets_retries_only_within_the_budget() {
    let connects = count_connect_failures("refusing");
    // Two endpoints that both refuse, so every request fails its first connect and has an
    // untried endpoint for its one retry. Passive ejection does not change that: once both are
    // ejected, a backend uses them anyway rather than having none.
    let (a, b) = (dead_addr().await, dead_addr().await);
    let toml = base_config(
        "",
        "retries = 1\nretry_budget_percent = 20\nretry_budget_min_per_second = 1",
    ) + &format!(
        "[[route]]\nname = \"refusing\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{a}\", \"{b}\"]\nload_balancing = \"round-robin\"\n"
    );
    let proxy = Canaryd::start(&toml);
    let client = client();
    const REQUESTS: u64 = 100;
    let started = std::time::Instant::now();
    for i in 0..REQUESTS {
        let (status, _, body) = get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(status, 502, "request {i}: {body}");
    }
    let elapsed = started.elapsed().as_secs();

    // What reached the pool: one connect per request, plus the retries.
    let retries_made = connects.load(Ordering::SeqCst) - REQUESTS;
    // Within one window: the reserve (1/s × 10 s) plus 20% of the requests (without a budget:
    // 100). A slow run spans more windows, each with its own reserve.
    let windows = (elapsed + 2).div_ceil(RETRY_BUDGET_WINDOW_SECS);
    let bound = windows * RETRY_BUDGET_WINDOW_SECS + REQUESTS / 5;
    assert!(
        retries_made <= bound,
        "{retries_made} retries for {REQUESTS} requests in {elapsed} s; the budget allows {bound}"
    );
    assert!(
        retries_made >= 10,
        "the reserve was not usable: {retries_made}"
    );

    // The counters say the same.
    let m = proxy.server().registry().route("refusing");
    let primary = m.version(Version::Primary);
    let retried = m.retries(Version::Primary, RetryOutcome::Retried);
    let refused = m.retries(Version::Primary, RetryOutcome::BudgetExhausted);
    assert_eq!(retried, retries_made);
    assert_eq!(
        retried + refused,
        REQUESTS,
        "every request asked for its one retry"
    );
    // Each 502 is one connect failure of the version, whether its retry was made or refused.
    assert_eq!(
        primary.upstream_errors(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
        REQUESTS
    );
    let (status, _, text) = get(&client, &format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    for (outcome, count) in [("retried", retried), ("budget_exhausted", refused)] {
        let line = format!(
            "canaryd_retries_total{{route=\"refusing\",version=\"primary\",outcome=\"{outcome}\"}} {count}"
        );
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn a_canary_whose_retry_budget_is_spent_still_fails_over_to_the_primary() {
    let primary = Upstream::start("primary").await;
    let (a, b) = (dead_addr().await, dead_addr().await);
    // An empty budget: no retry is ever granted, and the failover needs none.
    let toml = base_config(
        "",
        "retries = 1\nretry_budget_percent = 0\nretry_budget_min_per_second = 0",
    ) + &format!(
        "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{}\"]\n[route.canary]\nrevision = \"v2\"\nendpoints = [\"{a}\", \"{b}\"]\nweight = 100\n",
        primary.addr
    );
    let proxy = Canaryd::start(&toml);
    let counts = tally(&client(), &proxy.url("/"), 10, &[]).await;
    assert_eq!(counts.get("primary"), Some(&10));
    let m = proxy.server().registry().route("app");
    let canary = m.version(Version::Canary);
    assert_eq!(m.retries(Version::Canary, RetryOutcome::Retried), 0);
    assert_eq!(
        m.retries(Version::Canary, RetryOutcome::BudgetExhausted),
        10
    );
    assert_eq!(
        canary.upstream_errors(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
        10
    );
    let primary_metrics = m.version(Version::Primary);
    assert_eq!(primary_metrics.code_class(2), 10);
    assert_eq!(
        m.retries(Version::Primary, RetryOutcome::BudgetExhausted),
        0
    );
}
