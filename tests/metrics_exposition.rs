//! `GET /metrics` text: synthetic outcomes recorded through the real hook, rendered, and parsed
//! back with an independent Prometheus text parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use canaryd::config::{RetryBudgetConfig, Version, WebhookKind};
use canaryd::metrics::{
    render, Answer, ExpositionInput, LastCheckInput, MetricsRegistry, Outcome, RouteInput,
    UpstreamErrorKind, VersionCheck,
};
use canaryd::routing::Phase;
use canaryd::upstream::ConnectFailure;
use prometheus_parse::{HistogramCount, LineInfo, Sample, Scrape, Value};

/// Every metric of docs/operations.md#series and its type, plus the extensions
/// `canaryd_retries_total`, `canaryd_upstream_connect_failures_total`,
/// `canaryd_upstream_resends_total` and `canaryd_webhook_failures_total`.
const FAMILIES: [(&str, &str); 18] = [
    ("canaryd_requests_total", "counter"),
    ("canaryd_request_duration_seconds", "histogram"),
    ("canaryd_upstream_errors_total", "counter"),
    ("canaryd_retries_total", "counter"),
    ("canaryd_upstream_connect_failures_total", "counter"),
    ("canaryd_upstream_resends_total", "counter"),
    ("canaryd_webhook_failures_total", "counter"),
    ("canaryd_canary_weight", "gauge"),
    ("canaryd_canary_phase", "gauge"),
    ("canaryd_canary_failed_checks", "gauge"),
    ("canaryd_analysis_metric_value", "gauge"),
    ("canaryd_analysis_evidence", "gauge"),
    ("canaryd_active_connections", "gauge"),
    ("canaryd_config_reloads_total", "counter"),
    ("canaryd_config_last_reload_successful", "gauge"),
    ("canaryd_build_info", "gauge"),
    ("flagger_canary_status", "gauge"),
    ("flagger_canary_weight", "gauge"),
];

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// The registry of the scenario: `shop` progressing at 20% with a check behind it, `blog` failed
/// with a check whose canary side saw nothing, `static-site` without a canary, `legacy`
/// whose canary was removed from the config after it served traffic, and `orders` with gRPC calls.
fn scenario() -> (MetricsRegistry, Vec<RouteInput>) {
    let registry = MetricsRegistry::default();

    let shop = registry.route("shop");
    for i in 0..90 {
        // 60 at 0.8 ms, 30 at 20 ms.
        let latency = if i < 60 { us(800) } else { us(20_000) };
        shop.record(Version::Primary, Outcome::Status(200), latency);
    }
    for _ in 0..8 {
        shop.record(Version::Canary, Outcome::Status(200), us(3_000));
    }
    for _ in 0..2 {
        shop.record(Version::Canary, Outcome::Status(503), us(300_000));
    }
    shop.record(
        Version::Canary,
        Outcome::UpstreamError(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
        us(1_200_000),
    );
    // Neither a status nor an upstream error: not in requests_total, not in the histogram.
    shop.record(Version::Canary, Outcome::ClientGone, us(9_000_000));
    // Two retries the budget's reserve grants (3 a second), one an empty budget refuses.
    let budget = RetryBudgetConfig {
        percent: 0,
        min_per_second: 3,
    };
    assert!(shop.try_retry(Version::Canary, &budget) && shop.try_retry(Version::Canary, &budget));
    let empty = RetryBudgetConfig {
        percent: 0,
        min_per_second: 0,
    };
    assert!(!shop.try_retry(Version::Canary, &empty));
    // Two event notices and one post-rollout notice that finally failed; a gate's "no" is an
    // answer, not a failed delivery, and is not counted.
    shop.count_undelivered(WebhookKind::Event);
    shop.count_undelivered(WebhookKind::Event);
    shop.count_undelivered(WebhookKind::PostRollout);
    shop.count_undelivered(WebhookKind::ConfirmPromotion);

    let blog = registry.route("blog");
    blog.record(Version::Primary, Outcome::Status(404), us(1_000));
    blog.record(
        Version::Primary,
        Outcome::UpstreamError(UpstreamErrorKind::Timeout),
        Duration::from_secs(30),
    );

    let site = registry.route("static-site");
    site.record(Version::Primary, Outcome::Status(301), us(100));

    let legacy = registry.route("legacy");
    legacy.record(Version::Canary, Outcome::Status(200), us(100));

    let orders = registry.route("orders");
    for failed_with in [None, None, Some(14)] {
        let answer = Answer {
            status: 200,
            failed: failed_with.is_some(),
            grpc_code: Some(failed_with.unwrap_or(0)),
        };
        orders.record(Version::Primary, Outcome::Answer(answer), us(500));
    }

    registry
        .process
        .active_connections
        .store(7, std::sync::atomic::Ordering::Relaxed);
    registry.process.reload_result(true);
    registry.process.reload_result(true);
    registry.process.reload_result(false);

    let routes = vec![
        RouteInput {
            name: "shop".into(),
            metrics: shop,
            has_canary: true,
            phase: Phase::Progressing,
            weight: 20,
            failed_checks: 1,
            last_check: Some(LastCheckInput {
                primary: VersionCheck {
                    success_rate: Some(100.0),
                    p50_ms: Some(0.8),
                    p99_ms: Some(20.0),
                },
                canary: VersionCheck {
                    success_rate: Some(80.0),
                    p50_ms: Some(3.0),
                    p99_ms: Some(300.0),
                },
                evidence: vec![
                    ("request-success-rate".to_owned(), 0.64),
                    ("request-duration".to_owned(), -0.25),
                ],
                external: vec![("checkout-errors".to_owned(), 0.25)],
            }),
        },
        RouteInput {
            name: "blog".into(),
            metrics: blog,
            has_canary: true,
            phase: Phase::Failed,
            weight: 0,
            failed_checks: 5,
            last_check: Some(LastCheckInput {
                primary: VersionCheck {
                    success_rate: Some(50.0),
                    p50_ms: Some(1.0),
                    p99_ms: None,
                },
                canary: VersionCheck::default(),
                evidence: Vec::new(),
                external: Vec::new(),
            }),
        },
        RouteInput {
            name: "static-site".into(),
            metrics: site,
            has_canary: false,
            phase: Phase::Idle,
            weight: 0,
            failed_checks: 0,
            last_check: None,
        },
        RouteInput {
            name: "legacy".into(),
            metrics: legacy,
            has_canary: false,
            phase: Phase::Idle,
            weight: 0,
            failed_checks: 0,
            last_check: None,
        },
        RouteInput {
            name: "orders".into(),
            metrics: orders,
            has_canary: false,
            phase: Phase::Idle,
            weight: 0,
            failed_checks: 0,
            last_check: None,
        },
    ];
    (registry, routes)
}

fn rendered() -> String {
    let (registry, routes) = scenario();
    render(&ExpositionInput {
        routes,
        process: &registry.process,
        version: "1.2.3",
    })
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn labels_of(sample: &Sample) -> HashMap<String, String> {
    // `Labels` derefs to a HashMap.
    sample
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn matches(sample: &Sample, name: &str, want: &[(&str, &str)]) -> bool {
    sample.metric == name && want.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
}

/// The one sample with this name whose labels include `want`.
fn one<'a>(scrape: &'a Scrape, name: &str, want: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| matches(s, name, want))
        .collect();
    assert_eq!(found.len(), 1, "{name}{want:?}: {found:?}");
    found[0]
}

/// The sum of every sample with this name whose labels include `want` (at least one).
fn total(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| matches(s, name, want))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name}{want:?} is not a scalar: {other:?}"),
        })
        .collect();
    assert!(!found.is_empty(), "no {name}{want:?}");
    found.iter().sum()
}

fn value(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    match one(scrape, name, want).value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}{want:?} is not a scalar: {other:?}"),
    }
}

fn buckets(scrape: &Scrape, route: &str, version: &str) -> Vec<HistogramCount> {
    let sample = one(
        scrape,
        "canaryd_request_duration_seconds",
        &[("route", route), ("version", version)],
    );
    match &sample.value {
        Value::Histogram(b) => b.clone(),
        other => panic!("not a histogram: {other:?}"),
    }
}

fn absent(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> bool {
    !scrape.samples.iter().any(|s| matches(s, name, want))
}

#[test]
fn every_family_has_help_and_its_type_and_every_line_is_a_valid_sample() {
    let text = rendered();
    let scrape = parse(&text);
    for (name, kind) in FAMILIES {
        assert!(
            scrape.docs.get(name).is_some_and(|h| !h.is_empty()),
            "no HELP for {name}"
        );
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || text.starts_with(&format!("# TYPE {name} {kind}\n")),
            "no `# TYPE {name} {kind}`"
        );
    }
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        // The parser skips what it cannot read; here every line must be a sample with a number.
        match LineInfo::parse(line) {
            LineInfo::Sample {
                value, metric_name, ..
            } => {
                assert!(value.parse::<f64>().is_ok(), "{line}");
                assert!(
                    FAMILIES.iter().any(|(f, _)| metric_name.starts_with(f)),
                    "unexpected metric {metric_name}"
                );
                samples += 1;
            }
            other => panic!("not a sample: {line:?} ({other:?})"),
        }
    }
    assert!(samples > 100, "{samples} sample lines");
}

#[test]
fn requests_are_counted_per_route_version_and_code_class() {
    let scrape = parse(&rendered());
    let requests = |route, version, class| {
        total(
            &scrape,
            "canaryd_requests_total",
            &[
                ("route", route),
                ("version", version),
                ("code_class", class),
            ],
        )
    };
    let outcome = |route, version, class, outcome| {
        value(
            &scrape,
            "canaryd_requests_total",
            &[
                ("route", route),
                ("version", version),
                ("code_class", class),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(outcome("shop", "canary", "5xx", "failure"), 3.0);
    assert_eq!(outcome("shop", "canary", "5xx", "success"), 0.0);
    assert_eq!(outcome("shop", "canary", "2xx", "success"), 8.0);
    assert_eq!(outcome("blog", "primary", "4xx", "success"), 1.0);
    // gRPC calls carry their grpc-status; only the codes seen are exposed.
    let grpc = |code, outcome| {
        value(
            &scrape,
            "canaryd_requests_total",
            &[
                ("route", "orders"),
                ("version", "primary"),
                ("outcome", outcome),
                ("grpc_code", code),
            ],
        )
    };
    assert_eq!(grpc("OK", "success"), 2.0);
    assert_eq!(grpc("UNAVAILABLE", "failure"), 1.0);
    assert!(absent(
        &scrape,
        "canaryd_requests_total",
        &[("route", "orders"), ("grpc_code", "INTERNAL")]
    ));
    assert_eq!(requests("shop", "primary", "2xx"), 90.0);
    assert_eq!(requests("shop", "canary", "2xx"), 8.0);
    assert_eq!(
        requests("shop", "canary", "5xx"),
        3.0,
        "two 503s and one 502"
    );
    assert_eq!(requests("shop", "primary", "5xx"), 0.0, "zeros are exposed");
    assert_eq!(requests("blog", "primary", "4xx"), 1.0);
    assert_eq!(
        requests("blog", "primary", "5xx"),
        1.0,
        "the timeout answered 504"
    );
    assert_eq!(requests("static-site", "primary", "3xx"), 1.0);
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        requests("shop", "canary", class);
    }

    let errors = |route, version, kind| {
        value(
            &scrape,
            "canaryd_upstream_errors_total",
            &[("route", route), ("version", version), ("kind", kind)],
        )
    };
    assert_eq!(errors("shop", "canary", "connect"), 1.0);
    assert_eq!(errors("shop", "canary", "timeout"), 0.0);
    assert_eq!(errors("shop", "canary", "reset"), 0.0);
    assert_eq!(errors("shop", "primary", "connect"), 0.0);
    assert_eq!(errors("blog", "primary", "timeout"), 1.0);

    let connect_failures = |version, cause| {
        value(
            &scrape,
            "canaryd_upstream_connect_failures_total",
            &[("route", "shop"), ("version", version), ("cause", cause)],
        )
    };
    assert_eq!(connect_failures("canary", "refused"), 1.0);
    for cause in ["dns", "timeout", "tls_unknown_issuer", "other"] {
        assert_eq!(
            connect_failures("canary", cause),
            0.0,
            "{cause}: zeros are exposed"
        );
    }
    assert_eq!(connect_failures("primary", "refused"), 0.0);
    assert_eq!(
        total(
            &scrape,
            "canaryd_upstream_connect_failures_total",
            &[("route", "shop"), ("version", "canary")]
        ),
        errors("shop", "canary", "connect"),
        "every connect error has one cause"
    );

    let retries = |route, version, outcome| {
        value(
            &scrape,
            "canaryd_retries_total",
            &[("route", route), ("version", version), ("outcome", outcome)],
        )
    };
    assert_eq!(retries("shop", "canary", "retried"), 2.0);
    assert_eq!(retries("shop", "canary", "budget_exhausted"), 1.0);
    assert_eq!(
        retries("shop", "primary", "retried"),
        0.0,
        "zeros are exposed"
    );
    assert_eq!(retries("blog", "primary", "budget_exhausted"), 0.0);
}

#[test]
fn label_sets_are_exact_and_canary_series_only_where_there_is_a_canary() {
    let scrape = parse(&rendered());
    let label_names = |name: &str| -> BTreeSet<BTreeSet<String>> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| labels_of(s).into_keys().collect())
            .collect()
    };
    let set = |names: &[&str]| -> BTreeSet<BTreeSet<String>> {
        [names.iter().map(|s| (*s).to_owned()).collect()].into()
    };
    assert_eq!(
        label_names("canaryd_requests_total"),
        [
            ["route", "version", "code_class", "outcome"].as_slice(),
            ["route", "version", "code_class", "outcome", "grpc_code"].as_slice(),
        ]
        .iter()
        .map(|names| names.iter().map(|s| (*s).to_owned()).collect())
        .collect::<BTreeSet<BTreeSet<String>>>()
    );
    assert_eq!(
        label_names("canaryd_request_duration_seconds"),
        set(&["route", "version"])
    );
    assert_eq!(
        label_names("canaryd_upstream_errors_total"),
        set(&["route", "version", "kind"])
    );
    assert_eq!(
        label_names("canaryd_retries_total"),
        set(&["route", "version", "outcome"])
    );
    assert_eq!(
        label_names("canaryd_upstream_connect_failures_total"),
        set(&["route", "version", "cause"])
    );
    assert_eq!(
        label_names("canaryd_upstream_resends_total"),
        set(&["route", "version"])
    );
    assert_eq!(
        label_names("canaryd_webhook_failures_total"),
        set(&["route", "type"])
    );
    assert_eq!(label_names("canaryd_canary_weight"), set(&["route"]));
    assert_eq!(
        label_names("canaryd_canary_phase"),
        set(&["route", "phase"])
    );
    assert_eq!(label_names("canaryd_canary_failed_checks"), set(&["route"]));
    assert_eq!(
        label_names("canaryd_analysis_metric_value"),
        set(&["route", "version", "metric"])
    );
    assert_eq!(
        label_names("canaryd_analysis_evidence"),
        set(&["route", "metric"])
    );
    assert_eq!(label_names("canaryd_active_connections"), set(&[]));
    assert_eq!(
        label_names("canaryd_config_reloads_total"),
        set(&["result"])
    );
    assert_eq!(
        label_names("canaryd_config_last_reload_successful"),
        set(&[])
    );
    assert_eq!(label_names("canaryd_build_info"), set(&["version"]));
    assert_eq!(
        label_names("flagger_canary_status"),
        set(&["name", "namespace"])
    );
    assert_eq!(
        label_names("flagger_canary_weight"),
        set(&["workload", "namespace"])
    );

    // Versions are exactly primary/canary; the route without a canary has only primary series,
    // the one whose canary was removed after serving keeps its canary counters.
    let versions: BTreeSet<_> = scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("version"))
        .filter(|v| *v != "1.2.3")
        .collect();
    assert_eq!(versions, ["canary", "primary"].into());
    assert!(absent(
        &scrape,
        "canaryd_requests_total",
        &[("route", "static-site"), ("version", "canary")]
    ));
    assert!(absent(
        &scrape,
        "canaryd_request_duration_seconds",
        &[("route", "static-site"), ("version", "canary")]
    ));
    assert!(absent(
        &scrape,
        "canaryd_retries_total",
        &[("route", "static-site"), ("version", "canary")]
    ));
    assert_eq!(
        total(
            &scrape,
            "canaryd_requests_total",
            &[
                ("route", "legacy"),
                ("version", "canary"),
                ("code_class", "2xx")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "canaryd_build_info", &[("version", "1.2.3")]),
        1.0
    );
}

#[test]
fn webhook_failures_are_counted_per_route_and_notice_type_zeros_included() {
    let scrape = parse(&rendered());
    let failures = |route: &str, kind: &str| {
        value(
            &scrape,
            "canaryd_webhook_failures_total",
            &[("route", route), ("type", kind)],
        )
    };
    assert_eq!(failures("shop", "event"), 2.0);
    assert_eq!(failures("shop", "post-rollout"), 1.0);
    assert_eq!(failures("blog", "event"), 0.0);
    let types: BTreeSet<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "canaryd_webhook_failures_total")
        .filter_map(|s| s.labels.get("type"))
        .collect();
    assert_eq!(
        types,
        ["event", "post-rollout"].into(),
        "gates are never counted"
    );
}

#[test]
fn duration_histogram_is_cumulative_with_count_and_sum() {
    let scrape = parse(&rendered());
    let le = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    for (route, version) in [("shop", "primary"), ("shop", "canary"), ("blog", "primary")] {
        let b = buckets(&scrape, route, version);
        let bounds: Vec<f64> = b.iter().map(|c| c.less_than).collect();
        let mut want: Vec<f64> = le.to_vec();
        want.push(f64::INFINITY);
        assert_eq!(bounds, want, "{route}/{version} bounds");
        assert!(
            b.windows(2).all(|w| w[0].count <= w[1].count),
            "{route}/{version} not cumulative: {b:?}"
        );
        let count = value(
            &scrape,
            "canaryd_request_duration_seconds_count",
            &[("route", route), ("version", version)],
        );
        assert_eq!(b.last().unwrap().count, count, "+Inf == _count");
    }

    let primary: Vec<f64> = buckets(&scrape, "shop", "primary")
        .iter()
        .map(|c| c.count)
        .collect();
    assert_eq!(
        primary,
        [60., 60., 60., 60., 90., 90., 90., 90., 90., 90., 90., 90., 90., 90.]
    );
    let canary: Vec<f64> = buckets(&scrape, "shop", "canary")
        .iter()
        .map(|c| c.count)
        .collect();
    assert_eq!(
        canary,
        [0., 0., 8., 8., 8., 8., 8., 8., 10., 10., 11., 11., 11., 11.],
        "the gone client (9 s) is not in the histogram"
    );
    let blog: Vec<f64> = buckets(&scrape, "blog", "primary")
        .iter()
        .map(|c| c.count)
        .collect();
    assert_eq!(blog[12], 1.0, "30 s timeout is above 10 s");
    assert_eq!(blog[13], 2.0);

    let sum = |route, version| {
        value(
            &scrape,
            "canaryd_request_duration_seconds_sum",
            &[("route", route), ("version", version)],
        )
    };
    assert!((sum("shop", "primary") - 0.648).abs() < 1e-9);
    assert!((sum("shop", "canary") - 1.824).abs() < 1e-9);
    assert!((sum("blog", "primary") - 30.001).abs() < 1e-9);
}

#[test]
fn rollout_gauges_phase_one_hot_and_flagger_series() {
    let scrape = parse(&rendered());
    let all_phases = [
        "Idle",
        "Static",
        "Waiting",
        "Progressing",
        "Paused",
        "WaitingPromotion",
        "Baking",
        "Succeeded",
        "Failed",
    ];
    for (route, current) in [
        ("shop", "Progressing"),
        ("blog", "Failed"),
        ("static-site", "Idle"),
    ] {
        let mut ones = Vec::new();
        for phase in all_phases {
            let v = value(
                &scrape,
                "canaryd_canary_phase",
                &[("route", route), ("phase", phase)],
            );
            assert!(v == 0.0 || v == 1.0, "{route} {phase} = {v}");
            if v == 1.0 {
                ones.push(phase);
            }
        }
        assert_eq!(ones, [current], "{route}");
    }
    let phases_of_shop = scrape
        .samples
        .iter()
        .filter(|s| matches(s, "canaryd_canary_phase", &[("route", "shop")]))
        .count();
    assert_eq!(phases_of_shop, 9, "one series per phase, Baking included");

    assert_eq!(
        value(&scrape, "canaryd_canary_weight", &[("route", "shop")]),
        20.0
    );
    assert_eq!(
        value(
            &scrape,
            "canaryd_canary_weight",
            &[("route", "static-site")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &scrape,
            "canaryd_canary_failed_checks",
            &[("route", "shop")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "canaryd_canary_failed_checks",
            &[("route", "blog")]
        ),
        5.0
    );

    let status = |name| {
        value(
            &scrape,
            "flagger_canary_status",
            &[("name", name), ("namespace", "canaryd")],
        )
    };
    assert_eq!(status("shop"), 0.0, "progressing");
    assert_eq!(status("blog"), 2.0, "failed");
    assert_eq!(status("static-site"), 1.0, "any other phase");

    let weight = |workload| {
        value(
            &scrape,
            "flagger_canary_weight",
            &[("workload", workload), ("namespace", "canaryd")],
        )
    };
    assert_eq!(weight("shop-primary"), 80.0);
    assert_eq!(weight("shop"), 20.0);
    assert_eq!(weight("static-site-primary"), 100.0);
    assert_eq!(weight("static-site"), 0.0);
}

#[test]
fn analysis_gauges_come_from_the_last_check_and_are_omitted_without_data() {
    let scrape = parse(&rendered());
    let measured = |route, version, metric| {
        value(
            &scrape,
            "canaryd_analysis_metric_value",
            &[("route", route), ("version", version), ("metric", metric)],
        )
    };
    assert_eq!(measured("shop", "primary", "request-success-rate"), 100.0);
    assert_eq!(measured("shop", "canary", "request-success-rate"), 80.0);
    assert_eq!(measured("blog", "primary", "request-success-rate"), 50.0);
    assert!((measured("shop", "primary", "request-duration-p50") - 0.0008).abs() < 1e-12);
    assert!((measured("shop", "canary", "request-duration-p99") - 0.3).abs() < 1e-12);
    assert!((measured("blog", "primary", "request-duration-p50") - 0.001).abs() < 1e-12);
    // An external metric: its own name, the canary's, in its own unit.
    assert_eq!(measured("shop", "canary", "checkout-errors"), 0.25);
    let evidence = |metric| {
        value(
            &scrape,
            "canaryd_analysis_evidence",
            &[("route", "shop"), ("metric", metric)],
        )
    };
    assert!((evidence("request-success-rate") - 0.64).abs() < 1e-12);
    assert!((evidence("request-duration") + 0.25).abs() < 1e-12);

    // No value in the check, or no check at all: no series.
    assert!(absent(
        &scrape,
        "canaryd_analysis_metric_value",
        &[("route", "blog"), ("version", "canary")]
    ));
    assert!(absent(
        &scrape,
        "canaryd_analysis_metric_value",
        &[("route", "blog"), ("metric", "request-duration-p99")]
    ));
    assert!(absent(
        &scrape,
        "canaryd_analysis_metric_value",
        &[("route", "static-site")]
    ));
    assert!(absent(
        &scrape,
        "canaryd_analysis_evidence",
        &[("route", "blog")]
    ));
}

#[test]
fn process_series() {
    let scrape = parse(&rendered());
    assert_eq!(value(&scrape, "canaryd_active_connections", &[]), 7.0);
    assert_eq!(
        value(
            &scrape,
            "canaryd_config_reloads_total",
            &[("result", "success")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "canaryd_config_reloads_total",
            &[("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, "canaryd_config_last_reload_successful", &[]),
        0.0
    );
}

#[test]
fn no_routes_still_render_process_series_and_no_empty_families() {
    let registry = MetricsRegistry::default();
    let text = render(&ExpositionInput {
        routes: Vec::new(),
        process: &registry.process,
        version: "0.1.0",
    });
    let scrape = parse(&text);
    assert_eq!(
        value(&scrape, "canaryd_config_last_reload_successful", &[]),
        1.0
    );
    assert_eq!(
        value(&scrape, "canaryd_build_info", &[("version", "0.1.0")]),
        1.0
    );
    assert!(
        !text.contains("canaryd_requests_total"),
        "no HELP/TYPE without samples:\n{text}"
    );
}

#[test]
fn concurrent_recording_loses_nothing() {
    let registry = MetricsRegistry::default();
    let route = registry.route("shop");
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let route = &route;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    route.record(Version::Canary, Outcome::Status(200), us(t * 1000 + i % 7));
                }
            });
        }
    });
    let text = render(&ExpositionInput {
        routes: vec![RouteInput {
            name: "shop".into(),
            metrics: route,
            has_canary: true,
            phase: Phase::Static,
            weight: 50,
            failed_checks: 0,
            last_check: None,
        }],
        process: &registry.process,
        version: "0.1.0",
    });
    let scrape = parse(&text);
    let b = buckets(&scrape, "shop", "canary");
    assert_eq!(b.last().unwrap().count, 40_000.0);
    assert_eq!(
        total(
            &scrape,
            "canaryd_requests_total",
            &[
                ("route", "shop"),
                ("version", "canary"),
                ("code_class", "2xx")
            ]
        ),
        40_000.0
    );
}
