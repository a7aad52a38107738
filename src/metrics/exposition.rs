//! The Prometheus text exposition of `GET /metrics` (docs/operations.md#metrics).
//!
//! Everything is read at scrape time from the request-path atomics and from plain input structs
//! the admin module fills from the routing snapshot and the analysis statuses, so this module
//! depends on neither admin nor analysis. The text is produced by the `prometheus` crate's
//! `TextEncoder` from `MetricFamily` values built here; no `prometheus` registry or collector is
//! involved, because the counters already exist as canaryd's own atomics and a registry would
//! put a second copy (and its locks) on the request path.
//!
//! Label values come only from config route names (`[a-z0-9-]+`) and fixed sets, never from a
//! request, so cardinality is bounded by the config.
//!
//! Every route gets its `primary` series. The `canary` series of requests, duration, upstream
//! errors and retries are emitted when the route has a canary configured or its canary counters
//! are not zero (counters survive a reload that removes the canary, and a counter series must not
//! vanish while Prometheus may still be computing a `rate` over it). All five code classes, all
//! three error kinds and both retry outcomes are emitted, zeros included, so ratios and `rate`s
//! never miss a series.
//!
//! `canaryd_retries_total` is an extension (docs/operations.md#series) for the retry budget, and
//! `canaryd_upstream_resends_total` one for the requests an upstream did not process.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use super::duration::{DurationSnapshot, DURATION_BUCKETS_SECONDS};
use super::outcome::{RouteMetrics, UpstreamErrorKind, VersionMetrics, NOTICE_KINDS, OUTCOMES};
use super::registry::ProcessStats;
use super::retry_budget::RetryOutcome;
use crate::config::{Version, GRPC_CODE_NAMES};
use crate::routing::Phase;
use crate::upstream::{ConnectFailure, CONNECT_FAILURES};

/// The `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `namespace` label of the `flagger_*` series.
const FLAGGER_NAMESPACE: &str = "canaryd";

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One of each `kind` label (the connect failure's own kind is not a label).
const ERROR_KINDS: [UpstreamErrorKind; 3] = [
    UpstreamErrorKind::Connect(ConnectFailure::Other),
    UpstreamErrorKind::Timeout,
    UpstreamErrorKind::Reset,
];

/// Everything one scrape shows.
#[derive(Debug)]
pub struct ExpositionInput<'a> {
    /// The configured routes, in any order (the output is sorted by name).
    pub routes: Vec<RouteInput>,
    /// Process-wide counters.
    pub process: &'a ProcessStats,
    /// The `version` label of `canaryd_build_info`, e.g. `env!("CARGO_PKG_VERSION")`.
    pub version: &'a str,
}

/// One route as a scrape sees it.
#[derive(Debug, Clone)]
pub struct RouteInput {
    /// Route name from the config (the `route` label).
    pub name: String,
    /// The route's request-path counters.
    pub metrics: Arc<RouteMetrics>,
    /// Whether the route has a canary configured.
    pub has_canary: bool,
    /// Current rollout phase (`Idle` or `Static` for routes without analysis).
    pub phase: Phase,
    /// Canary weight in percent, 0..=100.
    pub weight: u8,
    /// Failed checks of the current rollout.
    pub failed_checks: u32,
    /// The last concluded check, or `None` before the first one (the `canaryd_analysis_*` series
    /// of the route are then omitted).
    pub last_check: Option<LastCheckInput>,
}

/// What the last concluded check measured, per version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastCheckInput {
    /// The primary's side of the window.
    pub primary: VersionCheck,
    /// The canary's side of the window.
    pub canary: VersionCheck,
    /// Sequential tests by name (`request-success-rate`, …): log-likelihood ratio over its
    /// rollback bound (1 rolls back; negative leans to pass). Empty with the threshold judge.
    pub evidence: Vec<(String, f64)>,
    /// External metrics by name (`docs/rollouts.md#external-metrics`): the value the last
    /// check read, in the metric's own unit (the count form: success rate, percent). Metrics
    /// without a value are omitted.
    pub external: Vec<(String, f64)>,
}

/// One version's side of a check; `None` where the window had no requests (the series is then
/// omitted rather than exposed as a made-up number).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VersionCheck {
    /// Percent of judged requests that succeeded, 0..=100 (the API's and the thresholds' unit).
    pub success_rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Render the whole exposition in the Prometheus text format.
pub fn render(input: &ExpositionInput<'_>) -> String {
    let mut routes: Vec<&RouteInput> = input.routes.iter().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));

    let mut families = vec![
        requests_total(&routes),
        request_duration(&routes),
        upstream_errors(&routes),
        retries_total(&routes),
        connect_failures_total(&routes),
        resends_total(&routes),
        webhook_failures(&routes),
        per_route_gauge(
            "canaryd_canary_weight",
            "Percent of the route's traffic the canary receives (0 for routes without a canary).",
            &routes,
            |r| f64::from(r.weight),
        ),
        canary_phase(&routes),
        per_route_gauge(
            "canaryd_canary_failed_checks",
            "Failed checks of the route's current rollout.",
            &routes,
            |r| f64::from(r.failed_checks),
        ),
        analysis_metric_value(&routes),
        analysis_evidence(&routes),
    ];
    families.extend(process_families(input.process));
    families.push(build_info(input.version));
    families.push(flagger_status(&routes));
    families.push(flagger_weight(&routes));

    let encoder = TextEncoder::new();
    let mut out = String::with_capacity(16 * 1024);
    for family in families.iter().filter(|f| !f.get_metric().is_empty()) {
        // Encoding into a String cannot fail for a family with a name and metrics; should a future
        // crate version disagree, losing one family beats failing the whole scrape.
        if let Err(e) = encoder.encode_utf8(std::slice::from_ref(family), &mut out) {
            tracing::warn!(family = family.name(), error = %e, "metric family not exposed");
        }
    }
    out
}

/// The versions whose request series a route exposes (see the module docs).
fn versions(route: &RouteInput) -> impl Iterator<Item = (Version, &VersionMetrics)> {
    let canary = route.metrics.version(Version::Canary);
    let show_canary = route.has_canary || canary.requests() > 0;
    [Version::Primary, Version::Canary]
        .into_iter()
        .filter(move |v| *v == Version::Primary || show_canary)
        .map(|v| (v, route.metrics.version(v)))
}

fn requests_total(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, m) in versions(route) {
            for (i, class) in (1u8..).zip(CODE_CLASSES) {
                for (failed, outcome) in [false, true].into_iter().zip(OUTCOMES) {
                    metrics.push(counter(
                        &[
                            ("route", &route.name),
                            ("version", version.as_str()),
                            ("code_class", class),
                            ("outcome", outcome),
                        ],
                        m.code_class_outcome(i, failed) as f64,
                    ));
                }
            }
            // gRPC calls: only the codes seen, there are seventeen.
            for (code, name) in (0u8..).zip(GRPC_CODE_NAMES) {
                for (failed, outcome) in [false, true].into_iter().zip(OUTCOMES) {
                    let calls = m.grpc_code_outcome(code, failed);
                    if calls > 0 {
                        metrics.push(counter(
                            &[
                                ("route", &route.name),
                                ("version", version.as_str()),
                                ("code_class", "2xx"),
                                ("outcome", outcome),
                                ("grpc_code", name),
                            ],
                            calls as f64,
                        ));
                    }
                }
            }
        }
    }
    family(
        "canaryd_requests_total",
        "Requests that ended with a status, by route, version, status class and outcome \
         ([route.failures]); gRPC calls also by grpc_code; upstream errors the proxy answered \
         for count as 5xx failures.",
        MetricType::COUNTER,
        metrics,
    )
}

fn request_duration(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, m) in versions(route) {
            metrics.push(histogram(
                &[("route", &route.name), ("version", version.as_str())],
                &m.duration().snapshot(),
            ));
        }
    }
    family(
        "canaryd_request_duration_seconds",
        "Time from receiving a request to the end of its response (or the upstream error), by \
         route and version.",
        MetricType::HISTOGRAM,
        metrics,
    )
}

fn upstream_errors(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, m) in versions(route) {
            for kind in ERROR_KINDS {
                metrics.push(counter(
                    &[
                        ("route", &route.name),
                        ("version", version.as_str()),
                        ("kind", kind.as_str()),
                    ],
                    m.upstream_errors(kind) as f64,
                ));
            }
        }
    }
    family(
        "canaryd_upstream_errors_total",
        "Upstream exchanges that failed (connect: no connection, answered 502; timeout: no \
         response head in time, answered 504; reset: the upstream broke the exchange).",
        MetricType::COUNTER,
        metrics,
    )
}

/// An extension (docs/operations.md#series): the `connect` upstream errors again, by why the
/// connect failed, so a dashboard can tell a refused port from an untrusted certificate.
fn connect_failures_total(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, m) in versions(route) {
            for cause in CONNECT_FAILURES {
                metrics.push(counter(
                    &[
                        ("route", &route.name),
                        ("version", version.as_str()),
                        ("cause", cause.label()),
                    ],
                    m.connect_failures(cause) as f64,
                ));
            }
        }
    }
    family(
        "canaryd_upstream_connect_failures_total",
        "Failed connects answered 502 (the kind=\"connect\" upstream errors), by cause: dns, \
         refused, timeout, a TLS handshake's reason (tls_*), other.",
        MetricType::COUNTER,
        metrics,
    )
}

/// An extension (docs/operations.md#series; the core names are exact, so this adds a family and
/// renames none): what the retry budget answered, by the version whose endpoints failed to connect.
fn retries_total(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, _) in versions(route) {
            for outcome in RetryOutcome::ALL {
                metrics.push(counter(
                    &[
                        ("route", &route.name),
                        ("version", version.as_str()),
                        ("outcome", outcome.as_str()),
                    ],
                    route.metrics.retries(version, outcome) as f64,
                ));
            }
        }
    }
    family(
        "canaryd_retries_total",
        "Retries after a connect failure that the retry budget allowed (retried: tried on another \
         endpoint) or refused (budget_exhausted: failed over to the primary, or answered 502).",
        MetricType::COUNTER,
        metrics,
    )
}

fn resends_total(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, _) in versions(route) {
            metrics.push(counter(
                &[("route", &route.name), ("version", version.as_str())],
                route.metrics.resends(version) as f64,
            ));
        }
    }
    family(
        "canaryd_upstream_resends_total",
        "Requests sent again on another connection because the upstream had not processed them: \
         a pooled connection closed before the request was written or unanswered (idempotent, \
         bodiless), an HTTP/2 stream refused or left out of a GOAWAY.",
        MetricType::COUNTER,
        metrics,
    )
}

fn webhook_failures(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for kind in NOTICE_KINDS {
            metrics.push(counter(
                &[("route", &route.name), ("type", kind.as_str())],
                route.metrics.undelivered(kind) as f64,
            ));
        }
    }
    family(
        "canaryd_webhook_failures_total",
        "Notices (post-rollout, event webhooks) that could not be delivered after every retry.",
        MetricType::COUNTER,
        metrics,
    )
}

fn per_route_gauge(
    name: &str,
    help: &str,
    routes: &[&RouteInput],
    value: impl Fn(&RouteInput) -> f64,
) -> MetricFamily {
    let metrics = routes
        .iter()
        .map(|r| gauge(&[("route", &r.name)], value(r)))
        .collect();
    family(name, help, MetricType::GAUGE, metrics)
}

fn canary_phase(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for phase in Phase::ALL {
            metrics.push(gauge(
                &[("route", &route.name), ("phase", phase.as_str())],
                if phase == route.phase { 1.0 } else { 0.0 },
            ));
        }
    }
    family(
        "canaryd_canary_phase",
        "The route's rollout phase: 1 for the current phase, 0 for every other.",
        MetricType::GAUGE,
        metrics,
    )
}

/// The two versions of a last check with their values.
fn checked(route: &RouteInput) -> impl Iterator<Item = (Version, VersionCheck)> + '_ {
    route
        .last_check
        .iter()
        .flat_map(|c| [(Version::Primary, c.primary), (Version::Canary, c.canary)])
}

/// What the last concluded check measured, one series per version and measure, like Flagger's
/// `flagger_canary_metric_analysis`: `request-success-rate` in percent (0-100, the unit of its
/// `threshold`), `request-duration-p50` and `request-duration-p99` in seconds.
fn analysis_metric_value(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        for (version, check) in checked(route) {
            let values = [
                ("request-success-rate", check.success_rate),
                ("request-duration-p50", check.p50_ms.map(|ms| ms / 1000.0)),
                ("request-duration-p99", check.p99_ms.map(|ms| ms / 1000.0)),
            ];
            for (metric, value) in values {
                if let Some(value) = value {
                    metrics.push(gauge(
                        &[
                            ("route", &route.name),
                            ("version", version.as_str()),
                            ("metric", metric),
                        ],
                        value,
                    ));
                }
            }
        }
    }
    for route in routes {
        for (metric, value) in route.last_check.iter().flat_map(|c| &c.external) {
            metrics.push(gauge(
                &[
                    ("route", &route.name),
                    ("version", "canary"),
                    ("metric", metric),
                ],
                *value,
            ));
        }
    }
    family(
        "canaryd_analysis_metric_value",
        "What the last concluded check measured: request-success-rate in percent, request-duration-p50/p99 in seconds; external metrics by their name, in their own unit.",
        MetricType::GAUGE,
        metrics,
    )
}

fn analysis_evidence(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        if let Some(check) = &route.last_check {
            for (metric, value) in &check.evidence {
                metrics.push(gauge(&[("route", &route.name), ("metric", metric)], *value));
            }
        }
    }
    family(
        "canaryd_analysis_evidence",
        "Sequential judge: log-likelihood ratio over its rollback bound (1 = roll back, below 0 leans to pass).",
        MetricType::GAUGE,
        metrics,
    )
}

/// Active connections, reloads by result, last reload successful, in that order.
fn process_families(p: &ProcessStats) -> [MetricFamily; 3] {
    let active = family(
        "canaryd_active_connections",
        "Open client connections on the proxy listeners.",
        MetricType::GAUGE,
        vec![gauge(
            &[],
            p.active_connections.load(Ordering::Relaxed) as f64,
        )],
    );
    let reloads = family(
        "canaryd_config_reloads_total",
        "Config reload attempts by result.",
        MetricType::COUNTER,
        vec![
            counter(
                &[("result", "success")],
                p.reloads_success.load(Ordering::Relaxed) as f64,
            ),
            counter(
                &[("result", "failure")],
                p.reloads_failure.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    let last_ok = family(
        "canaryd_config_last_reload_successful",
        "1 if the last config reload was accepted (or none was attempted), 0 if it was rejected.",
        MetricType::GAUGE,
        vec![gauge(
            &[],
            if p.last_reload_successful.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )],
    );
    [active, reloads, last_ok]
}

fn build_info(version: &str) -> MetricFamily {
    family(
        "canaryd_build_info",
        "Always 1; the version label is canaryd's version.",
        MetricType::GAUGE,
        vec![gauge(&[("version", version)], 1.0)],
    )
}

/// Flagger's `flagger_canary_status`: 0 while progressing, 2 when failed, 1 otherwise.
fn flagger_status_value(phase: Phase) -> f64 {
    match phase {
        Phase::Progressing => 0.0,
        Phase::Failed => 2.0,
        Phase::Idle
        | Phase::Static
        | Phase::Waiting
        | Phase::Paused
        | Phase::WaitingPromotion
        | Phase::Baking
        | Phase::Succeeded => 1.0,
    }
}

fn flagger_status(routes: &[&RouteInput]) -> MetricFamily {
    let metrics = routes
        .iter()
        .map(|r| {
            gauge(
                &[("name", &r.name), ("namespace", FLAGGER_NAMESPACE)],
                flagger_status_value(r.phase),
            )
        })
        .collect();
    family(
        "flagger_canary_status",
        "Flagger-compatible canary status: 0 progressing, 2 failed, 1 any other phase.",
        MetricType::GAUGE,
        metrics,
    )
}

fn flagger_weight(routes: &[&RouteInput]) -> MetricFamily {
    let mut metrics = Vec::new();
    for route in routes {
        let canary = route.weight.min(100);
        let primary_workload = format!("{}-primary", route.name);
        metrics.push(gauge(
            &[
                ("workload", &primary_workload),
                ("namespace", FLAGGER_NAMESPACE),
            ],
            f64::from(100 - canary),
        ));
        metrics.push(gauge(
            &[("workload", &route.name), ("namespace", FLAGGER_NAMESPACE)],
            f64::from(canary),
        ));
    }
    family(
        "flagger_canary_weight",
        "Flagger-compatible traffic weight in percent: workload <route>-primary is the primary, \
         <route> the canary.",
        MetricType::GAUGE,
        metrics,
    )
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_owned());
            l.set_value((*v).to_owned());
            l
        })
        .collect()
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn counter(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn histogram(pairs: &[(&str, &str)], snapshot: &DurationSnapshot) -> Metric {
    let buckets = DURATION_BUCKETS_SECONDS
        .iter()
        .zip(snapshot.cumulative)
        .map(|(&le, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(count);
            b
        })
        .collect();
    // The encoder adds the `+Inf` bucket from the sample count.
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(snapshot.count);
    h.set_sample_sum(snapshot.sum_seconds);
    let mut m = Metric::from_label(labels(pairs));
    m.set_histogram(h);
    m
}
