//! Criterion benchmarks of the request path's pure pieces: finding the route, choosing the
//! version, picking an endpoint, rewriting headers, recording an outcome; and, off the request
//! path, asking the retry budget after a connect failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canaryd::config::{parse_str, Version};
use canaryd::metrics::{MetricsRegistry, Outcome};
use canaryd::proxy::headers::{rewrite_request, rewrite_response, ClientFacts};
use canaryd::routing::{choose_version, BackendCache, EndpointPick, Resolved, RoutingSnapshot};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};

/// An ingress-shaped config: 20 routes over exact, wildcard and catch-all hosts.
fn snapshot() -> RoutingSnapshot {
    let mut toml = String::new();
    for i in 0..20 {
        let hosts = match i % 3 {
            0 => format!("[\"svc{i}.example.com\"]"),
            1 => format!("[\"*.zone{i}.example.com\"]"),
            _ => "[]".to_owned(),
        };
        toml.push_str(&format!(
            r#"
[[route]]
name = "r{i}"
hosts = {hosts}
path_prefix = "/p{i}"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:{}", "127.0.0.1:{}"]
[route.canary]
revision = "v2"
endpoints = ["127.0.0.1:{}"]
weight = 10
[[route.match]]
headers = {{ "x-canary" = "always" }}
[route.sticky]
cookie = "session_id"
"#,
            10000 + i,
            11000 + i,
            12000 + i
        ));
    }
    let config = parse_str(&toml, Path::new("bench.toml")).expect("bench config is valid");
    let mut resolved = Resolved::new();
    for route in &config.routes {
        let versions =
            std::iter::once(&route.primary).chain(route.canary.as_ref().map(|c| &c.version));
        for endpoint in versions.flat_map(|v| &v.endpoints) {
            let ip: std::net::IpAddr = endpoint.host.parse().expect("bench endpoints are IPs");
            resolved.insert(endpoint.clone(), vec![(ip, endpoint.port).into()]);
        }
    }
    RoutingSnapshot::build(
        Arc::new(config),
        &HashMap::new(),
        &resolved,
        &mut BackendCache::default(),
        &MetricsRegistry::default(),
        1,
    )
}

fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("svc9.example.com"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64)"),
    );
    h.insert(
        "accept",
        HeaderValue::from_static("text/html,application/xhtml+xml"),
    );
    h.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    h.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; session_id=user-4242; a=b"),
    );
    h
}

fn routing(c: &mut Criterion) {
    let snapshot = snapshot();
    let headers = browser_headers();
    c.bench_function("route lookup (exact host, 20 routes)", |b| {
        b.iter(|| {
            snapshot.table.find(
                black_box(Some("svc9.example.com:8080")),
                black_box("/p9/cart"),
            )
        })
    });
    c.bench_function("route lookup (wildcard host)", |b| {
        b.iter(|| {
            snapshot
                .table
                .find(black_box(Some("a.zone10.example.com")), black_box("/p10/x"))
        })
    });
    let route = snapshot
        .table
        .find(Some("svc9.example.com"), "/p9")
        .expect("route exists")
        .clone();
    c.bench_function("choose version (sticky cookie, weight 10)", |b| {
        b.iter(|| choose_version(&route, black_box(&headers), &mut || 5000u16))
    });
    let plain = HeaderMap::new();
    c.bench_function("choose version (random, weight 10)", |b| {
        b.iter(|| {
            choose_version(&route, black_box(&plain), &mut || {
                rand::random_range(0..10_000u16)
            })
        })
    });
    c.bench_function("pick endpoint (p2c of 2)", |b| {
        b.iter(|| {
            route
                .backend(Version::Primary)
                .pick(&mut EndpointPick::default())
                .map(|e| e.id())
        })
    });
}

fn header_rewrite(c: &mut Criterion) {
    let peer: std::net::IpAddr = "10.1.2.3".parse().expect("literal IP");
    let peer_value = canaryd::proxy::headers::peer_header_value(peer);
    let facts = ClientFacts {
        peer,
        peer_value: &peer_value,
        tls: false,
        authority: None,
        trusted_proxies: &[],
    };
    let template = browser_headers();
    c.bench_function("rewrite request headers (browser request)", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| rewrite_request(h, black_box(&facts)),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut response = HeaderMap::new();
    response.insert("content-type", HeaderValue::from_static("text/html"));
    response.insert("content-length", HeaderValue::from_static("1234"));
    response.insert(
        "date",
        HeaderValue::from_static("Mon, 23 Nov 2026 23:00:00 GMT"),
    );
    let name = HeaderName::from_static("x-canaryd-version");
    c.bench_function("rewrite response headers (with version header)", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| rewrite_response(h, Some(&name), Version::Canary),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn outcome(c: &mut Criterion) {
    let registry = MetricsRegistry::default();
    let plain = registry.route("plain");
    c.bench_function(
        "record outcome (counters only: route without canary)",
        |b| {
            b.iter(|| {
                plain.record(
                    Version::Primary,
                    black_box(Outcome::Status(200)),
                    Duration::from_micros(850),
                )
            })
        },
    );
    let judged = registry.route("judged");
    judged.enable_windows();
    canaryd::metrics::set_worker_shard(0);
    c.bench_function("record outcome (counters + HDR window)", |b| {
        b.iter(|| {
            judged.record(
                Version::Canary,
                black_box(Outcome::Status(200)),
                Duration::from_micros(850),
            )
        })
    });
    // Not on the request path: only a request whose connect failed asks the budget.
    let budget = canaryd::config::RetryBudgetConfig::default();
    let failing = registry.route("failing");
    c.bench_function("ask the retry budget (retry path only)", |b| {
        b.iter(|| {
            failing.record(Version::Primary, Outcome::Status(502), Duration::ZERO);
            black_box(failing.try_retry(Version::Primary, &budget))
        })
    });
}

criterion_group!(benches, routing, header_rewrite, outcome);
criterion_main!(benches);
