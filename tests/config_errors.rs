//! Integration tests of configuration validation through the public API: every broken rule
//! must be reported as `FILE:LINE:COL: message` pointing at the offending value, and valid
//! files (the example with every core key, a minimal file) must yield the documented values.

// A failed unwrap is a failed test, which is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use canaryd::config::{
    load_file, load_file_unread, parse_str, ConfigError, HostPattern, LoadBalancing, LogFormat,
    MetricCheck, Steps, StickyKey, ValueMatch, Version, WebhookKind,
};

const FILE: &str = "/etc/canaryd/canaryd.toml";

/// A valid route (4 lines) that the error cases extend.
const ROUTE: &str = "[[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n";

/// ROUTE plus a canary (lines 5-7); analysis tables start at line 8.
const ROUTE_CANARY: &str =
    "[[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n\
[route.canary]\nrevision = \"v2\"\nendpoints = [\"10.0.0.2:80\"]\n";

fn error(text: &str) -> ConfigError {
    match parse_str(text, Path::new(FILE)) {
        Ok(_) => panic!("accepted invalid config:\n{text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(text: &str, line: usize, column: usize, fragment: &str) {
    let e = error(text);
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "wrong position for: {e}"
    );
    assert!(
        e.message().contains(fragment),
        "message lacks {fragment:?}: {e}"
    );
    let prefix = format!("{FILE}:{line}:{column}: ");
    assert!(e.to_string().starts_with(&prefix), "bad display: {e}");
}

#[test]
fn unknown_key() {
    assert_error(
        "[proxy]\nlisen = [\"0.0.0.0:80\"]\n",
        2,
        1,
        "unknown field `lisen`",
    );
}

#[test]
fn unknown_key_in_a_route_table() {
    let text = format!("{ROUTE}[route.canary]\nendpoints = [\"10.0.0.2:80\"]\n  wieght = 5\n");
    assert_error(&text, 7, 3, "unknown field `wieght`");
}

#[test]
fn an_unknown_key_names_the_closest_known_one() {
    assert_error(
        "[proxy]\nlisen = [\"0.0.0.0:80\"]\n",
        2,
        1,
        "unknown field `lisen` (did you mean `listen`?)",
    );
    let text = format!("{ROUTE}[route.canary]\nendpoints = [\"10.0.0.2:80\"]\nwieght = 5\n");
    assert_error(&text, 7, 1, "(did you mean `weight`?)");
    // Nothing close: no guess.
    let e = error("[proxy]\nzzzzzz = 1\n");
    assert!(!e.message().contains("did you mean"), "{e}");
}

#[test]
fn a_bare_number_for_a_duration_says_which_unit_to_write() {
    assert_error(
        "[proxy]\nidle_timeout = 30\n",
        2,
        16,
        "`idle_timeout` is a duration, a string with its unit, e.g. \"30s\" or \"30ms\"",
    );
    let text = format!("{ROUTE_CANARY}[route.analysis]\ninterval = 1.5\n");
    assert_error(&text, 9, 12, "`interval` is a duration");
    // A number where a number is wrong for another reason gets no duration hint.
    let e = error("[proxy]\nversion_header = 5\n");
    assert!(!e.message().contains("duration"), "{e}");
}

#[test]
fn wrong_type() {
    assert_error("[proxy]\nworkers = \"4\"\n", 2, 11, "invalid type");
}

#[test]
fn bad_duration() {
    assert_error(
        "[proxy]\nconnect_timeout = \"2 parsecs\"\n",
        2,
        19,
        "`connect_timeout` = \"2 parsecs\" is not a duration",
    );
}

#[test]
fn duration_without_unit() {
    assert_error(
        "[proxy]\ndrain_timeout = \"30\"\n",
        2,
        17,
        "is not a duration",
    );
}

#[test]
fn duplicate_route_name() {
    let text = format!(
        "{ROUTE}[[route]]\nname = \"shop\"\npath_prefix = \"/b\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n"
    );
    assert_error(&text, 6, 8, "duplicate route name \"shop\"");
}

#[test]
fn overlapping_host_and_prefix() {
    let text = "[[route]]\nname = \"a\"\nhosts = [\"Shop.example.com\"]\n[route.primary]\n\
endpoints = [\"10.0.0.1:80\"]\n\
[[route]]\nname = \"b\"\nhosts = [\"api.example.com\", \"shop.EXAMPLE.com\"]\n[route.primary]\n\
endpoints = [\"10.0.0.1:80\"]\n";
    assert_error(text, 8, 29, "route \"b\" overlaps route \"a\"");
}

#[test]
fn overlapping_routes_without_hosts() {
    let text = format!(
        "{ROUTE}[[route]]\nname = \"other\"\npath_prefix = \"/\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n"
    );
    assert_error(&text, 7, 15, "both serve any host");
}

#[test]
fn same_host_different_prefix_is_fine() {
    let text = format!(
        "{ROUTE}[[route]]\nname = \"api\"\npath_prefix = \"/api\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n"
    );
    assert!(parse_str(&text, Path::new(FILE)).is_ok());
}

#[test]
fn bad_regex() {
    let text = format!(
        "{ROUTE_CANARY}[[route.match]]\nheaders = {{ \"x-canary\" = {{ regex = \"(yes\" }} }}\n"
    );
    assert_error(&text, 9, 36, "invalid regex \"(yes\": unclosed group");
}

#[test]
fn weight_101() {
    let text = format!("{ROUTE_CANARY}weight = 101\n");
    assert_error(&text, 8, 10, "`weight` must be in 0..=100, got 101");
}

#[test]
fn non_increasing_step_weights() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\nstep_weights = [1, 5, 5, 50]\n");
    assert_error(&text, 9, 23, "strictly increasing, but 5 follows 5");
}

#[test]
fn analysis_without_canary_revision() {
    let text = format!(
        "{ROUTE}[route.canary]\nendpoints = [\"10.0.0.2:80\"]\n[route.analysis]\nstep_weight = 10\nmax_weight = 50\n"
    );
    assert_error(&text, 5, 1, "needs `canary.revision`");
}

#[test]
fn analysis_with_empty_canary_revision() {
    let text = format!(
        "{ROUTE}[route.canary]\nrevision = \"\"\nendpoints = [\"10.0.0.2:80\"]\n[route.analysis]\niterations = 3\n"
    );
    assert_error(&text, 6, 12, "needs `canary.revision`");
}

#[test]
fn analysis_without_canary() {
    let text = format!("{ROUTE}[route.analysis]\niterations = 3\n");
    assert_error(&text, 5, 1, "[route.analysis] needs a [route.canary]");
}

#[test]
fn analysis_without_schedule() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\ninterval = \"30s\"\n");
    assert_error(&text, 8, 1, "needs a schedule");
}

#[test]
fn two_schedules() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\nstep_weights = [10, 50]\niterations = 5\n");
    assert_error(
        &text,
        10,
        14,
        "`iterations` cannot be combined with `step_weights`",
    );
}

#[test]
fn step_weight_without_max_weight() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\nstep_weight = 10\n");
    assert_error(&text, 9, 15, "`step_weight` needs `max_weight`");
}

#[test]
fn max_weight_below_step_weight() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\nstep_weight = 20\nmax_weight = 10\n");
    assert_error(&text, 10, 14, "`max_weight` must be in 20..=100");
}

#[test]
fn zero_interval() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\ninterval = \"0s\"\niterations = 2\n");
    assert_error(&text, 9, 12, "`interval` must be above zero");
}

#[test]
fn zero_threshold() {
    let text = format!("{ROUTE_CANARY}[route.analysis]\nthreshold = 0\niterations = 2\n");
    assert_error(&text, 9, 13, "`threshold` must be at least 1");
}

#[test]
fn empty_endpoints() {
    assert_error(
        "[[route]]\nname = \"shop\"\n[route.primary]\nendpoints = []\n",
        4,
        13,
        "`endpoints` must list at least one endpoint",
    );
}

#[test]
fn endpoint_without_port() {
    assert_error(
        "[[route]]\nname = \"shop\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\", \"shop.svc\"]\n",
        4,
        29,
        "endpoint \"shop.svc\" has no port",
    );
}

#[test]
fn bad_listen_address() {
    assert_error(
        "[proxy]\nlisten = [\"0.0.0.0:8080\", \"localhost:80\"]\n",
        2,
        27,
        "\"localhost:80\" is not a listen address",
    );
}

#[test]
fn bad_admin_listen_address() {
    assert_error(
        "[admin]\nlisten = \"9901\"\n",
        2,
        10,
        "not a listen address",
    );
}

#[test]
fn bad_webhook_type() {
    let text = format!(
        "{ROUTE}[[route.webhooks]]\ntype = \"pre-rolout\"\nurl = \"http://127.0.0.1:7000/\"\n"
    );
    assert_error(
        &text,
        6,
        8,
        "unknown webhook type \"pre-rolout\"; use one of confirm-rollout",
    );
}

#[test]
fn webhook_url_must_be_http_or_https() {
    let text = format!(
        "{ROUTE}[[route.webhooks]]\ntype = \"event\"\nurl = \"ftp://hooks.example.com/\"\n"
    );
    assert_error(&text, 7, 7, "absolute http:// or https:// URL");
}

/// A webhook table of `keys` after ROUTE: `type` on line 6, the keys from line 7.
fn hook(kind: &str, keys: &str) -> String {
    format!("{ROUTE}[[route.webhooks]]\ntype = \"{kind}\"\n{keys}")
}

#[test]
fn webhook_format_must_be_known() {
    let text = hook(
        "event",
        "url = \"http://127.0.0.1:7000/\"\nformat = \"slak\"\n",
    );
    assert_error(
        &text,
        8,
        10,
        "unknown webhook format \"slak\"; use one of generic, slack, msteams, discord",
    );
}

#[test]
fn webhook_severity_only_for_event_hooks_and_known() {
    let text = hook(
        "post-rollout",
        "url = \"http://127.0.0.1:7000/\"\nseverity = \"warning\"\n",
    );
    assert_error(&text, 8, 12, "`severity` filters the events");
    let text = hook(
        "event",
        "url = \"http://127.0.0.1:7000/\"\nseverity = \"error\"\n",
    );
    assert_error(
        &text,
        8,
        12,
        "unknown severity \"error\"; use one of info, warning",
    );
}

#[test]
fn webhook_retries_only_for_notices() {
    let text = hook(
        "confirm-promotion",
        "url = \"http://127.0.0.1:7000/\"\nretries = 3\n",
    );
    assert_error(&text, 8, 11, "a confirm-promotion hook is a gate");
}

#[test]
fn webhook_header_file_must_be_readable_and_is_never_quoted() {
    let text = hook(
        "event",
        "url = \"http://127.0.0.1:7000/\"\nheaders = { Authorization = \"file:/nonexistent/hook-token\" }\n",
    );
    assert_error(
        &text,
        8,
        29,
        "cannot read webhook header \"Authorization\" from /nonexistent/hook-token",
    );
    let text = hook(
        "event",
        "url = \"http://127.0.0.1:7000/\"\nheaders = { Authorization = \"Bearer a\\nb\" }\n",
    );
    let e = error(&text);
    assert!(e.message().contains("not a valid HTTP header value"), "{e}");
    assert!(
        !e.message().contains("Bearer"),
        "the value is not quoted: {e}"
    );
}

#[test]
fn webhook_ca_must_be_readable_and_only_for_https() {
    let text = hook(
        "event",
        "url = \"http://127.0.0.1:7000/\"\nca = \"/etc/canaryd/ca.pem\"\n",
    );
    assert_error(&text, 8, 6, "`ca` verifies an https:// hook");
    let text = hook(
        "event",
        "url = \"https://127.0.0.1:7000/\"\nca = \"/nonexistent/ca.pem\"\n",
    );
    assert_error(&text, 8, 6, "cannot read webhook `ca` /nonexistent/ca.pem");
}

#[test]
fn admin_public_url_must_be_absolute() {
    assert_error(
        "[admin]\npublic_url = \"canaryd.example.com\"\n",
        2,
        14,
        "`admin.public_url` must be an absolute http:// or https:// URL",
    );
}

#[test]
fn quantile_one() {
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\niterations = 3\n[[route.analysis.metrics]]\n\
name = \"request-duration\"\nthreshold = \"500ms\"\nquantile = 1.0\n"
    );
    assert_error(
        &text,
        13,
        12,
        "`quantile` must be in the open interval (0, 1), e.g. 0.99, got 1.0",
    );
}

#[test]
fn unknown_metric() {
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\niterations = 3\n[[route.analysis.metrics]]\n\
name = \"error-rate\"\nthreshold = 1\n"
    );
    assert_error(&text, 11, 8, "unknown metric \"error-rate\"");
}

#[test]
fn success_rate_above_100() {
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\niterations = 3\n[[route.analysis.metrics]]\n\
name = \"request-success-rate\"\nthreshold = 101\n"
    );
    assert_error(&text, 12, 13, "a percentage in 0..=100");
}

#[test]
fn weight_with_analysis() {
    let text = format!("{ROUTE_CANARY}weight = 10\n[route.analysis]\niterations = 3\n");
    assert_error(&text, 8, 10, "cannot be combined with [route.analysis]");
}

#[test]
fn bad_cidr() {
    assert_error(
        "[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
        2,
        20,
        "\"10.0.0.0/33\" is not a CIDR",
    );
}

#[test]
fn small_max_header_bytes() {
    assert_error(
        "[proxy]\nmax_header_bytes = 4096\n",
        2,
        20,
        "must be at least 8192, got 4096 (hyper's minimum read buffer)",
    );
}

#[test]
fn retry_budget_out_of_range() {
    assert_error(
        "[proxy]\nretries = 2\nretry_budget_percent = 101\n",
        3,
        24,
        "`retry_budget_percent` must be in 0..=100, got 101",
    );
    assert_error(
        "[proxy]\nretry_budget_min_per_second = -1\n",
        2,
        31,
        "`retry_budget_min_per_second` must be in 0..=1000000, got -1",
    );
    assert_error(
        "[proxy]\nretry_budget_ratio = 0.2\n",
        2,
        1,
        "unknown field `retry_budget_ratio`",
    );
}

#[test]
fn retry_budget_keys_are_read() {
    let text =
        format!("[proxy]\nretry_budget_percent = 0\nretry_budget_min_per_second = 3\n{ROUTE}");
    let c = match parse_str(&text, Path::new(FILE)) {
        Ok(c) => c,
        Err(e) => panic!("rejected: {e}"),
    };
    assert_eq!(c.proxy.retry_budget.percent, 0);
    assert_eq!(c.proxy.retry_budget.min_per_second, 3);
}

#[test]
fn ejection_keys_are_checked() {
    assert_error(
        "[proxy]\nejection_failures = -1\n",
        2,
        21,
        "`ejection_failures` must be in 0..=1000000, got -1",
    );
    assert_error(
        "[proxy]\nejection_base_time = \"10s\"\nejection_max_time = \"5s\"\n",
        3,
        21,
        "`ejection_max_time` must be at least `ejection_base_time`",
    );
    assert_error(
        "[proxy]\nejection_base_time = \"0s\"\n",
        2,
        22,
        "`ejection_base_time` must be above zero",
    );
}

#[test]
fn ejection_keys_are_read_and_default_to_5_failures_5s_5m() {
    let parse = |text: &str| match parse_str(text, Path::new(FILE)) {
        Ok(c) => c.proxy.ejection,
        Err(e) => panic!("rejected: {e}"),
    };
    let d = parse(ROUTE);
    assert_eq!(
        (d.failures, d.base, d.max),
        (5, Duration::from_secs(5), Duration::from_secs(300))
    );
    let e = parse(&format!(
        "[proxy]\nejection_failures = 0\nejection_base_time = \"1s\"\nejection_max_time = \"1s\"\n{ROUTE}"
    ));
    assert_eq!(
        (e.failures, e.base, e.max),
        (0, Duration::from_secs(1), Duration::from_secs(1))
    );
}

#[test]
fn bad_route_name() {
    assert_error(
        "[[route]]\nname = \"Shop_1\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n",
        2,
        8,
        "a-z, 0-9 and '-'",
    );
}

#[test]
fn path_prefix_without_slash() {
    let text = "[[route]]\nname = \"shop\"\npath_prefix = \"api\"\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n";
    assert_error(text, 3, 15, "must start with '/'");
}

#[test]
fn host_with_port() {
    let text = "[[route]]\nname = \"shop\"\nhosts = [\"shop.example.com:8080\"]\n[route.primary]\nendpoints = [\"10.0.0.1:80\"]\n";
    assert_error(text, 3, 10, "has a port");
}

#[test]
fn match_without_canary() {
    let text = format!("{ROUTE}[[route.match]]\nheaders = {{ x-canary = \"1\" }}\n");
    assert_error(&text, 5, 1, "[[route.match]] needs a [route.canary]");
}

#[test]
fn match_rule_without_conditions() {
    let text = format!("{ROUTE_CANARY}[[route.match]]\nto = \"primary\"\n");
    assert_error(&text, 8, 1, "at least one entry in `headers` or `cookies`");
}

#[test]
fn sticky_with_both_keys() {
    let text = format!("{ROUTE_CANARY}[route.sticky]\ncookie = \"sid\"\nheader = \"x-user\"\n");
    assert_error(&text, 10, 10, "exactly one of `cookie` or `header`");
}

#[test]
fn lower_case_mirror_method() {
    let text = format!("{ROUTE_CANARY}[route.mirror]\nmethods = [\"GET\", \"post\"]\n");
    assert_error(&text, 9, 19, "write \"POST\"");
}

#[test]
fn bad_log_format() {
    assert_error("[log]\nformat = \"yaml\"\n", 2, 10, "\"text\" or \"json\"");
}

#[test]
fn bad_version_header() {
    assert_error(
        "[proxy]\nversion_header = \"x version\"\n",
        2,
        18,
        "not a valid HTTP header name",
    );
}

#[test]
fn tls_files_must_be_readable() {
    assert_error(
        "[proxy.tls]\ncert = \"missing.crt\"\nkey = \"missing.key\"\n",
        2,
        8,
        "cannot read TLS certificate /etc/canaryd/missing.crt",
    );
}

#[test]
fn earliest_error_in_the_file_is_reported() {
    // The route (validated after [log] internally) comes first in the file, so it is reported.
    let text =
        "[[route]]\nname = \"shop\"\n[route.primary]\nendpoints = []\n[log]\nformat = \"yaml\"\n";
    assert_error(text, 4, 13, "at least one endpoint");
}

#[test]
fn read_error_names_the_file() {
    let e = match load_file(Path::new("/nonexistent/dir/canaryd.toml")) {
        Ok(_) => panic!("read a missing file"),
        Err(e) => e,
    };
    assert!(
        e.to_string()
            .starts_with("/nonexistent/dir/canaryd.toml: cannot read: "),
        "{e}"
    );
    assert_eq!(e.line(), None);
    assert!(std::error::Error::source(&e).is_some());
}

const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// The example with every core key at its default (docs/configuration.md#keys-and-defaults),
/// as the product's contract first gave it: commented lines stay commented.
const CORE_KEYS_EXAMPLE: &str = r##"[proxy]
listen = ["0.0.0.0:8080"]        # plain HTTP/1.1 and HTTP/2 (h2c, prior knowledge)
workers = 0                      # worker threads; 0 = one per CPU core
connect_timeout = "2s"           # TCP connect to an upstream endpoint
request_timeout = "60s"          # until the upstream's response headers arrive; then 504
idle_timeout = "90s"             # idle keep-alive connection from a client is closed
header_read_timeout = "10s"      # a client must send its full request head within this (slowloris)
max_connections = 20000          # further clients wait in the listen backlog
max_header_bytes = 65536         # request head larger than this: 431
retries = 1                      # extra attempts on another endpoint after a connect failure (idempotent methods only)
failover_to_primary = true       # a canary request that cannot connect is retried on the primary (still counted against the canary)
drain_timeout = "30s"
version_header = ""              # if set, e.g. "x-canaryd-version": response header naming "primary" or "canary"
trusted_proxies = []             # CIDRs whose X-Forwarded-For is extended; from anyone else it is replaced

[proxy.tls]                      # optional TLS termination (rustls); HTTP/2 via ALPN
listen = ["0.0.0.0:8443"]
cert = "certs/tls.crt"           # PEM chain; re-read on reload
key = "certs/tls.key"            # PEM private key

[admin]
listen = "127.0.0.1:9901"        # /metrics, /healthz, /readyz, /api/v1/*, / (status page)
token_file = ""                  # if set, POST endpoints require "Authorization: Bearer <token>"

[state]
path = "canaryd-state.json"      # rollout state, written atomically on every transition

[log]
level = "info"
format = "text"                  # or "json"

[[route]]
name = "shop"                    # unique; [a-z0-9-]+
hosts = ["shop.example.com"]     # exact or "*.example.com"; empty = any host
path_prefix = "/"

[route.primary]
revision = "v1.4.2"              # free text naming the version behind these endpoints
endpoints = ["10.0.0.11:8080", "shop-primary.default.svc:8080"]   # IP:port or DNS name:port
load_balancing = "p2c"           # "p2c" (power of two choices, least in-flight) or "round-robin"

[route.canary]                   # optional; without it every request goes to the primary
revision = "v1.5.0"
endpoints = ["10.0.0.21:8080"]
weight = 0                       # only without [route.analysis]: a fixed split, 0..100 (phase Static)

[route.analysis]                 # optional; present = automated rollout of the canary revision
interval = "60s"                 # how often the canary is judged
threshold = 5                    # failed checks before rollback
step_weight = 10                 # weight increment per passed check ...
max_weight = 50                  # ... up to this; the check passed at max_weight promotes
# step_weights = [1, 5, 10, 25, 50]   # instead of step_weight/max_weight: explicit steps
# iterations = 10                # instead of weights: A/B or blue/green (section 4)
min_requests = 20                # canary requests needed before a check concludes
inconclusive_limit = 10          # consecutive inconclusive checks before rollback

[[route.analysis.metrics]]
name = "request-success-rate"    # share of responses that are not 5xx (proxy-made 502/504 count as 5xx)
threshold = 99.0                 # canary success rate (%) must be >= this
# max_drop = 1.0                 # and at most this many points below the primary's in the same window

[[route.analysis.metrics]]
name = "request-duration"        # latency quantile of the canary, from HDR histograms
threshold = "500ms"              # canary quantile must be <= this
quantile = 0.99
# max_ratio = 1.5                # and at most this multiple of the primary's quantile in the same window

[[route.match]]                  # optional rules, first match wins; matching requests ignore the weight
headers = { "x-canary" = "always" }          # a string is an exact match
to = "canary"                                # "canary" (default) or "primary"
[[route.match]]
cookies = { "canary" = { regex = "^(yes|always)$" } }  # also { exact = ".." }, { prefix = ".." }

[route.sticky]                   # optional: one user keeps one version while the weight grows
cookie = "session_id"            # or header = "x-user-id"; requests without the key are split at random

[route.mirror]                   # optional: shadow traffic to the canary, responses discarded
percent = 100                    # share of primary-bound requests copied to the canary
methods = ["GET", "HEAD", "OPTIONS"]
max_body_bytes = 1048576         # larger request bodies are not mirrored

[[route.webhooks]]               # optional, any number (section 5)
type = "pre-rollout"
url = "http://127.0.0.1:7000/smoke"
timeout = "10s"
metadata = { suite = "smoke" }
"##;

#[test]
fn tls_key_must_be_pem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.crt"), PEM_CERT).unwrap();
    std::fs::write(dir.path().join("c.key"), "not a key").unwrap();
    let file = dir.path().join("canaryd.toml");
    std::fs::write(&file, "[proxy.tls]\ncert = \"c.crt\"\nkey = \"c.key\"\n").unwrap();
    let e = match load_file(&file) {
        Ok(_) => panic!("accepted a non-PEM key"),
        Err(e) => e,
    };
    assert_eq!((e.line(), e.column()), (Some(3), Some(7)), "{e}");
    assert!(
        e.message().contains("holds no PEM PRIVATE KEY block"),
        "{e}"
    );
}

#[test]
fn a_config_that_serves_nothing_is_not_refused_for_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canaryd.toml");
    let text = format!(
        "[proxy.tls]\ncert = \"missing.crt\"\nkey = \"missing.key\"\n{}",
        hook(
            "event",
            "url = \"https://127.0.0.1:7000/\"\nca = \"missing-ca.pem\"\nheaders = { Authorization = \"file:missing-token\" }\n"
        )
    );
    std::fs::write(&file, text).unwrap();
    let e = match load_file(&file) {
        Ok(_) => panic!("a config with missing files was served"),
        Err(e) => e,
    };
    assert!(e.message().contains("cannot read TLS certificate"), "{e}");
    // `canaryd simulate` reads the same file without touching the files it names.
    let c = load_file_unread(&file).unwrap();
    assert_eq!(c.routes[0].webhooks.len(), 1);
}

#[test]
fn a_config_that_serves_nothing_reads_no_upstream_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canaryd.toml");
    let text = format!(
        "{ROUTE}protocol = \"http2\"\n[route.primary.tls]\nca = \"missing-ca.pem\"\ncert = \"missing.pem\"\nkey = \"missing.key\"\n"
    );
    std::fs::write(&file, text).unwrap();
    let e = match load_file(&file) {
        Ok(_) => panic!("a config with missing upstream TLS files was served"),
        Err(e) => e,
    };
    assert!(e.message().contains("cannot read TLS CA file"), "{e}");
    // `canaryd simulate` keeps the shape (TLS, HTTP/2, a client certificate) without the files.
    let c = load_file_unread(&file).unwrap();
    let transport = &c.routes[0].primary.transport;
    assert_eq!(transport.protocol, canaryd::config::UpstreamProtocol::Http2);
    let tls = transport.tls.as_ref().unwrap();
    assert!(tls.ca_pem.is_some() && tls.client_pem.is_some());
}

#[test]
fn core_keys_example_parses_with_its_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/tls.crt"), PEM_CERT).unwrap();
    std::fs::write(dir.path().join("certs/tls.key"), PEM_KEY).unwrap();
    let file = dir.path().join("canaryd.toml");
    std::fs::write(&file, CORE_KEYS_EXAMPLE).unwrap();
    let c = match load_file(&file) {
        Ok(c) => c,
        Err(e) => panic!("core-keys example rejected: {e}"),
    };

    assert_eq!(c.source, file);
    let p = &c.proxy;
    assert_eq!(p.listen, ["0.0.0.0:8080".parse().unwrap()]);
    assert!(p.workers >= 1);
    assert_eq!(p.connect_timeout, Duration::from_secs(2));
    assert_eq!(p.request_timeout, Duration::from_secs(60));
    assert_eq!(p.idle_timeout, Duration::from_secs(90));
    assert_eq!(p.header_read_timeout, Duration::from_secs(10));
    assert_eq!(p.max_connections, 20000);
    assert_eq!(p.max_header_bytes, 65536);
    assert_eq!(p.retries, 1);
    assert!(p.failover_to_primary);
    assert_eq!(
        (p.retry_budget.percent, p.retry_budget.min_per_second),
        (20, 10)
    );
    assert_eq!(p.drain_timeout, Duration::from_secs(30));
    assert!(p.version_header.is_none());
    assert!(p.trusted_proxies.is_empty());
    let tls = p.tls.as_ref().unwrap();
    assert_eq!(tls.listen, ["0.0.0.0:8443".parse().unwrap()]);
    assert_eq!(tls.cert, dir.path().join("certs/tls.crt"));
    assert_eq!(tls.key, dir.path().join("certs/tls.key"));

    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.admin.token_file, None);
    assert_eq!(c.state.path, dir.path().join("canaryd-state.json"));
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);

    assert_eq!(c.routes.len(), 1);
    let r = &c.routes[0];
    assert_eq!(r.name, "shop");
    assert_eq!(r.hosts, [HostPattern::Exact("shop.example.com".into())]);
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.primary.revision, "v1.4.2");
    let eps: Vec<String> = r.primary.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(eps, ["10.0.0.11:8080", "shop-primary.default.svc:8080"]);
    assert_eq!(r.primary.load_balancing, LoadBalancing::P2c);

    let canary = r.canary.as_ref().unwrap();
    assert_eq!(canary.version.revision, "v1.5.0");
    assert_eq!(canary.version.endpoints[0].to_string(), "10.0.0.21:8080");
    assert_eq!(canary.weight, 0);

    let a = r.analysis.as_ref().unwrap();
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(a.threshold, 5);
    assert_eq!(a.steps, Steps::Weights(vec![10, 20, 30, 40, 50]));
    assert_eq!(a.min_requests, 20);
    assert_eq!(a.inconclusive_limit, 10);
    assert_eq!(
        a.metrics,
        [
            MetricCheck::SuccessRate {
                threshold: 99.0,
                max_drop: None
            },
            MetricCheck::Duration {
                threshold: Duration::from_millis(500),
                quantile: 0.99,
                max_ratio: None
            },
        ]
    );

    assert_eq!(r.matches.len(), 2);
    let m0 = &r.matches[0];
    assert_eq!(m0.headers.len(), 1);
    assert_eq!(m0.headers[0].0.as_str(), "x-canary");
    assert!(matches!(&m0.headers[0].1, ValueMatch::Exact(v) if v == "always"));
    assert_eq!(m0.to, Version::Canary);
    let m1 = &r.matches[1];
    assert_eq!(m1.cookies[0].0, "canary");
    match &m1.cookies[0].1 {
        ValueMatch::Regex(re) => {
            assert!(re.is_match("always"));
            assert!(!re.is_match("no"));
        }
        other => panic!("expected a regex, got {other:?}"),
    }
    assert_eq!(m1.to, Version::Canary);

    assert_eq!(r.sticky, Some(StickyKey::Cookie("session_id".into())));
    let mirror = r.mirror.as_ref().unwrap();
    assert_eq!(mirror.percent, 100);
    assert_eq!(
        mirror.methods,
        [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS]
    );
    assert_eq!(mirror.max_body_bytes, 1_048_576);

    assert_eq!(r.webhooks.len(), 1);
    let w = &r.webhooks[0];
    assert_eq!(w.kind, WebhookKind::PreRollout);
    assert_eq!(w.url.to_string(), "http://127.0.0.1:7000/smoke");
    assert_eq!(w.timeout, Duration::from_secs(10));
    assert_eq!(w.metadata.get("suite").map(String::as_str), Some("smoke"));
}

#[test]
fn minimal_config_gets_every_default() {
    let c = match parse_str(ROUTE, Path::new("conf/canaryd.toml")) {
        Ok(c) => c,
        Err(e) => panic!("minimal config rejected: {e}"),
    };
    let p = &c.proxy;
    assert_eq!(p.listen, ["0.0.0.0:8080".parse().unwrap()]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(p.workers, cores);
    assert_eq!(p.connect_timeout, Duration::from_secs(2));
    assert_eq!(p.request_timeout, Duration::from_secs(60));
    assert_eq!(p.idle_timeout, Duration::from_secs(90));
    assert_eq!(p.header_read_timeout, Duration::from_secs(10));
    assert_eq!(p.max_connections, 20000);
    assert_eq!(p.max_header_bytes, 65536);
    assert_eq!(p.retries, 1);
    assert!(p.failover_to_primary);
    assert_eq!(
        (p.retry_budget.percent, p.retry_budget.min_per_second),
        (20, 10)
    );
    assert_eq!(p.drain_timeout, Duration::from_secs(30));
    assert!(p.version_header.is_none());
    assert!(p.trusted_proxies.is_empty());
    assert!(p.tls.is_none());
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.admin.token_file, None);
    assert_eq!(c.state.path, PathBuf::from("conf/canaryd-state.json"));
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);

    let r = &c.routes[0];
    assert_eq!(r.name, "shop");
    assert!(r.hosts.is_empty());
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.primary.revision, "");
    assert_eq!(r.primary.load_balancing, LoadBalancing::P2c);
    assert!(r.canary.is_none() && r.analysis.is_none() && r.sticky.is_none());
    assert!(r.mirror.is_none() && r.matches.is_empty() && r.webhooks.is_empty());
}

#[test]
fn optional_tables_get_their_defaults() {
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\nstep_weight = 30\nmax_weight = 50\n\
[[route.analysis.metrics]]\nname = \"request-duration\"\nthreshold = \"1s\"\n\
[[route.match]]\ncookies = {{ beta = {{ prefix = \"y\" }} }}\n[route.mirror]\n\
[[route.webhooks]]\ntype = \"event\"\nurl = \"http://127.0.0.1:7000/e\"\n"
    );
    let c = match parse_str(&text, Path::new(FILE)) {
        Ok(c) => c,
        Err(e) => panic!("rejected: {e}"),
    };
    let r = &c.routes[0];
    let a = r.analysis.as_ref().unwrap();
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(
        (a.threshold, a.min_requests, a.inconclusive_limit),
        (5, 20, 10)
    );
    assert_eq!(a.steps, Steps::Weights(vec![30, 50]));
    assert_eq!(
        a.metrics,
        [MetricCheck::Duration {
            threshold: Duration::from_secs(1),
            quantile: 0.99,
            max_ratio: None
        }]
    );
    assert!(matches!(&r.matches[0].cookies[0].1, ValueMatch::Prefix(p) if p == "y"));
    assert_eq!(r.matches[0].to, Version::Canary);
    let m = r.mirror.as_ref().unwrap();
    assert_eq!((m.percent, m.max_body_bytes), (100, 1_048_576));
    assert_eq!(
        m.methods,
        [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS]
    );
    assert_eq!(r.webhooks[0].timeout, Duration::from_secs(10));
}

#[test]
fn zero_routes_is_valid() {
    let c = match parse_str("", Path::new(FILE)) {
        Ok(c) => c,
        Err(e) => panic!("empty config rejected: {e}"),
    };
    assert!(c.routes.is_empty());
}

#[test]
fn pool_keys_are_read_and_default() {
    let c = parse_str(&format!("[proxy]\n{ROUTE}"), Path::new(FILE)).unwrap();
    assert_eq!(
        c.proxy.pool.max_idle_per_endpoint,
        usize::MAX,
        "no bound unless written"
    );
    assert_eq!(c.proxy.pool.idle_timeout, Duration::from_secs(30));
    let text =
        format!("[proxy]\npool_max_idle_per_endpoint = 0\npool_idle_timeout = \"250ms\"\n{ROUTE}");
    let c = parse_str(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.proxy.pool.max_idle_per_endpoint, 0);
    assert_eq!(c.proxy.pool.idle_timeout, Duration::from_millis(250));
}

#[test]
fn pool_keys_are_checked() {
    assert_error(
        "[proxy]\npool_max_idle_per_endpoint = -1\n",
        2,
        30,
        "`pool_max_idle_per_endpoint` must be in 0..=100000, got -1",
    );
    assert_error(
        "[proxy]\nretries = 1\npool_max_idle_per_endpoint = 100001\n",
        3,
        30,
        "`pool_max_idle_per_endpoint` must be in 0..=100000, got 100001",
    );
    assert_error(
        "[proxy]\npool_idle_timeout = \"0s\"\n",
        2,
        21,
        "`pool_idle_timeout` must be above zero",
    );
    assert_error(
        "[proxy]\npool_idle_timeout = \"30\"\n",
        2,
        21,
        "`pool_idle_timeout` = \"30\"",
    );
}

#[test]
fn http1_engine_is_read_defaults_and_is_checked() {
    use canaryd::config::Http1Engine;
    let c = parse_str(&format!("[proxy]\n{ROUTE}"), Path::new(FILE)).unwrap();
    assert_eq!(c.proxy.pool.http1_engine, Http1Engine::DEFAULT);
    for (written, engine) in [
        ("canaryd", Http1Engine::Canaryd),
        ("hyper", Http1Engine::Hyper),
    ] {
        let text = format!("[proxy]\nhttp1_engine = \"{written}\"\n{ROUTE}");
        let c = parse_str(&text, Path::new(FILE)).unwrap();
        assert_eq!(c.proxy.pool.http1_engine, engine);
    }
    assert_error(
        "[proxy]\nretries = 1\nhttp1_engine = \"Hyper\"\n",
        3,
        16,
        "`http1_engine` must be \"canaryd\" or \"hyper\", got \"Hyper\"",
    );
}

#[test]
fn fast_path_is_on_unless_written_false() {
    for (text, on) in [
        (ROUTE.to_owned(), true),
        (format!("[proxy]\n{ROUTE}"), true),
        (format!("[proxy]\nfast_path = false\n{ROUTE}"), false),
        (format!("[proxy]\nfast_path = true\n{ROUTE}"), true),
    ] {
        let c = parse_str(&text, Path::new(FILE)).unwrap();
        assert_eq!(c.proxy.fast_path, on, "{text}");
    }
}

#[test]
fn release_buffers_after_defaults_to_100ms_and_takes_zero() {
    let c = parse_str(&format!("[proxy]\n{ROUTE}"), Path::new(FILE)).unwrap();
    assert_eq!(c.proxy.release_buffers_after, Duration::from_millis(100));
    let text = format!("[proxy]\nrelease_buffers_after = \"0s\"\n{ROUTE}");
    let c = parse_str(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.proxy.release_buffers_after, Duration::ZERO);
    assert_error(
        "[proxy]\nrelease_buffers_after = \"soon\"\n",
        2,
        25,
        "`release_buffers_after` = \"soon\" is not a duration",
    );
}

/// ROUTE_CANARY with `[route.analysis]` at line 8 and `step_weights` at line 9; `extra` starts
/// at line 10.
fn sequential(extra: &str) -> String {
    format!("{ROUTE_CANARY}[route.analysis]\nstep_weights = [10, 50]\n{extra}")
}

#[test]
fn sequential_judge_keys_are_validated_with_positions() {
    assert_error(
        &sequential("judge = \"bayes\"\n"),
        10,
        9,
        "unknown judge \"bayes\"",
    );
    assert_error(
        &sequential("max_false_rollback = 0.7\n"),
        10,
        22,
        "`max_false_rollback` must be a probability in (0, 0.5)",
    );
    assert_error(
        &sequential("max_false_promotion = 0\n"),
        10,
        23,
        "`max_false_promotion` must be a probability",
    );
    assert_error(
        &sequential("good_multiple = 1.2\n"),
        10,
        17,
        "`good_multiple` must be in (0, 1)",
    );
    assert_error(
        &sequential("bad_multiple = 0.9\n"),
        10,
        16,
        "`bad_multiple` must be above 1",
    );
    assert_error(
        &sequential("interval = \"60s\"\nmax_step_duration = \"30s\"\n"),
        11,
        21,
        "`max_step_duration` must be at least one `interval`",
    );
    assert_error(
        &sequential("on_inconclusive = \"promote\"\n"),
        10,
        19,
        "unknown on_inconclusive \"promote\"; use \"hold\" or \"rollback\"",
    );
    assert_error(
        &sequential("evidence = \"forever\"\n"),
        10,
        12,
        "unknown evidence \"forever\"",
    );
}

#[test]
fn sequential_keys_are_refused_with_the_threshold_judge() {
    assert_error(
        &sequential("judge = \"threshold\"\nmax_false_rollback = 0.02\n"),
        11,
        22,
        "`max_false_rollback` applies only to judge = \"sequential\"",
    );
}

#[test]
fn the_sequential_judge_needs_a_testable_allowance() {
    // 100% allows no failure at all: nothing tells 0.5x from 1.5x of nothing.
    let text = sequential(
        "[[route.analysis.metrics]]\nname = \"request-success-rate\"\nthreshold = 100.0\n",
    );
    assert_error(
        &text,
        12,
        13,
        "the sequential judge needs an allowed failure rate",
    );
    // With the threshold judge the same metric is fine.
    let text = sequential(
        "judge = \"threshold\"\n[[route.analysis.metrics]]\nname = \"request-success-rate\"\nthreshold = 100.0\n",
    );
    assert!(parse_str(&text, Path::new(FILE)).is_ok());
}

#[test]
fn sequential_defaults() {
    let config = parse_str(&sequential("interval = \"30s\"\n"), Path::new(FILE)).unwrap();
    let analysis = config.routes[0].analysis.as_ref().unwrap();
    assert_eq!(analysis.judge, canaryd::config::JudgeKind::Sequential);
    let s = &analysis.sequential;
    assert_eq!((s.max_false_rollback, s.max_false_promotion), (0.01, 0.05));
    assert_eq!((s.good_multiple, s.bad_multiple), (0.5, 1.5));
    assert_eq!(
        s.max_step_duration,
        Duration::from_secs(300),
        "10 intervals"
    );
    assert_eq!(s.on_inconclusive, canaryd::config::OnInconclusive::Hold);
    assert_eq!(s.evidence, canaryd::config::EvidenceScope::Rollout);
}

// === upstream protocol, upstream TLS and [route.failures] ===

#[test]
fn an_unknown_protocol_is_refused_at_its_value() {
    assert_error(
        &format!("{ROUTE}protocol = \"h3\"\n"),
        5,
        12,
        "`protocol` must be \"http1\", \"http2\" or \"auto\"",
    );
}

#[test]
fn auto_needs_tls() {
    assert_error(&format!("{ROUTE}protocol = \"auto\"\n"), 5, 12, "needs TLS");
    // The canary's own settings are checked too.
    assert_error(
        &format!("{ROUTE_CANARY}protocol = \"auto\"\n"),
        8,
        12,
        "needs TLS",
    );
}

#[test]
fn an_unreadable_ca_file_is_refused_at_its_value() {
    assert_error(
        &format!("{ROUTE}[route.primary.tls]\nca = \"no-such-ca.pem\"\n"),
        6,
        6,
        "cannot read TLS CA file /etc/canaryd/no-such-ca.pem",
    );
}

#[test]
fn a_client_certificate_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    assert_error(
        &format!(
            "{ROUTE}[route.primary.tls]\ncert = \"{}\"\n",
            cert.display()
        ),
        6,
        8,
        "`cert` needs `key`",
    );
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    assert_error(
        &format!("{ROUTE}[route.primary.tls]\nca = \"{}\"\n", ca.display()),
        6,
        6,
        "holds no PEM CERTIFICATE block",
    );
}

#[test]
fn an_unknown_grpc_code_or_status_class_is_refused_at_the_entry() {
    assert_error(
        &format!("{ROUTE}[route.failures]\ngrpc_codes = [\"UNAVAILABLE\", \"BROKEN\"]\n"),
        6,
        30,
        "unknown gRPC code \"BROKEN\"",
    );
    assert_error(
        &format!("{ROUTE}[route.failures]\nhttp_statuses = [\"5xx\", \"6xx\"]\n"),
        6,
        25,
        "neither a status class",
    );
    assert_error(
        &format!("{ROUTE}[route.failures]\nignore_paths = [\"healthz\"]\n"),
        6,
        17,
        "must be a path prefix",
    );
}

#[test]
fn the_whole_upstream_contract_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
    let client = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("client.key"),
        client.signing_key.serialize_pem(),
    )
    .unwrap();
    let text = "[[route]]\nname = \"orders\"\n[route.primary]\nendpoints = [\"10.0.0.1:50051\"]\n\
                protocol = \"http2\"\n[route.primary.tls]\nca = \"ca.pem\"\n\
                server_name = \"orders.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n\
                [route.canary]\nrevision = \"v2\"\nendpoints = [\"10.0.0.2:50051\"]\n\
                protocol = \"http2\"\n\
                [route.failures]\nhttp_statuses = [\"5xx\", \"429\"]\n\
                grpc_codes = [\"UNAVAILABLE\"]\nignore_paths = [\"/healthz\"]\n\
                outcome_header = \"x-canaryd-outcome\"\n";
    let c = parse_str(text, &dir.path().join("canaryd.toml")).unwrap();
    let route = &c.routes[0];
    let primary = &route.primary.transport;
    assert_eq!(primary.protocol, canaryd::config::UpstreamProtocol::Http2);
    let tls = primary.tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("orders.internal"));
    assert!(tls.verify && tls.ca_pem.is_some() && tls.client_pem.is_some());
    let canary = &route.canary.as_ref().unwrap().version.transport;
    assert!(
        canary.tls.is_none(),
        "h2c: each version has its own settings"
    );
    let f = &route.failures;
    assert!(f.status_fails(429) && f.status_fails(502) && !f.status_fails(404));
    assert!(f.grpc_fails(14) && !f.grpc_fails(13));
    assert!(f.ignores("/healthz/ready"));
    assert_eq!(
        f.outcome_header.as_ref().unwrap().as_str(),
        "x-canaryd-outcome"
    );
    // And the defaults: HTTP/1.1 cleartext, 5xx and the server-fault gRPC codes.
    let c = parse_str(ROUTE, Path::new(FILE)).unwrap();
    assert_eq!(
        c.routes[0].primary.transport,
        canaryd::config::UpstreamTransport::default()
    );
    assert_eq!(
        c.routes[0].failures,
        canaryd::config::FailurePolicy::default()
    );
}

/// ROUTE_CANARY with an analysis and one external metric whose keys (line 12 on) are `body`.
fn external(body: &str) -> String {
    format!(
        "{ROUTE_CANARY}[route.analysis]\nstep_weight = 10\nmax_weight = 50\n[[route.analysis.metrics]]\nname = \"checkout-errors\"\n{body}"
    )
}

#[test]
fn external_metric_unknown_provider() {
    let text = external("provider = \"datadog\"\n");
    assert_error(&text, 13, 12, "unknown metric provider \"datadog\"");
}

#[test]
fn external_metric_unknown_placeholder() {
    let text = external(
        "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\nquery = 'sum(rate(errors_total{revision=\"{canary}\"}[{interval}]))'\nmax = 1\n",
    );
    assert_error(&text, 15, 9, "unknown placeholder {canary}");
}

#[test]
fn external_metric_min_above_max() {
    let text = external(
        "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\nquery = 'up'\nmin = 2\nmax = 1\n",
    );
    assert_error(&text, 17, 7, "`min` (2) is above `max` (1)");
}

#[test]
fn external_metric_count_form_incomplete() {
    let text = external(
        "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\nfailures = 'sum(increase(failed_total[{interval}]))'\nthreshold = 99.5\n",
    );
    assert_error(&text, 15, 12, "missing `total`");
}

#[test]
fn external_metric_header_file_must_be_readable() {
    let text = external(
        "provider = \"http-json\"\nurl = \"http://127.0.0.1:8000/m\"\npath = \"$.value\"\nmax = 1\nheaders = { Authorization = \"file:/nonexistent/prom-token\" }\n",
    );
    assert_error(
        &text,
        17,
        29,
        "cannot read metric header \"Authorization\" from /nonexistent/prom-token",
    );
}

#[test]
fn external_metric_path_and_bounds() {
    let text = external(
        "provider = \"http-json\"\nurl = \"http://127.0.0.1:8000/m\"\npath = \"data.value\"\nmax = 1\n",
    );
    assert_error(&text, 15, 8, "does not start with `$`");
    let text = external(
        "provider = \"http-json\"\nurl = \"http://127.0.0.1:8000/m\"\npath = \"$.value\"\n",
    );
    assert_error(&text, 12, 8, "needs `min`, `max` or both");
    let text = external("provider = \"prometheus\"\nquery = 'up'\nmax = 1\n");
    assert_error(&text, 12, 8, "needs `address`");
}

#[test]
fn external_metric_on_error_is_inconclusive_only() {
    let text = external(
        "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\nquery = 'up'\nmax = 1\non_error = \"pass\"\n",
    );
    assert_error(&text, 17, 12, "`on_error` is \"inconclusive\"");
}

#[test]
fn external_metrics_that_are_valid_load() {
    let text = external(
        "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\nquery = 'sum(rate(errors_total{revision=\"{revision}\",route=\"{route}\"}[{interval}]))'\nmax = 0.5\ndry_run = true\n\
         [[route.analysis.metrics]]\nname = \"payment-failures\"\nprovider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\n\
         failures = 'sum(increase(payments_failed_total[{interval}]))'\ntotal = 'sum(increase(payments_total[{interval}]))'\nthreshold = 99.5\n",
    );
    let config = parse_str(&text, Path::new(FILE)).unwrap();
    let analysis = config.routes[0].analysis.as_ref().unwrap();
    assert_eq!(analysis.external.len(), 2);
    assert!(analysis.external[0].dry_run);
    assert_eq!(analysis.external[0].max, Some(0.5));
}

#[test]
fn a_count_form_the_sequential_judge_cannot_test_is_refused() {
    // 100%: no failure allowed, so "good" and "bad" are both 0 (sequential is the default).
    let count = "provider = \"prometheus\"\naddress = \"http://127.0.0.1:9090\"\n\
                 failures = 'sum(increase(failed_total[{interval}]))'\ntotal = 'sum(increase(all_total[{interval}]))'\n";
    let text = external(&format!("{count}threshold = 100\n"));
    assert_error(&text, 17, 13, "needs an allowed failure rate");
    // The same as a dry run decides nothing, so it needs no test.
    let text = external(&format!("{count}threshold = 100\ndry_run = true\n"));
    assert!(parse_str(&text, Path::new(FILE)).is_ok());
}

#[test]
fn bake_is_a_positive_duration() {
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\nstep_weight = 10\nmax_weight = 50\nbake = \"15\"\n"
    );
    assert_error(&text, 11, 8, "bake");
    let text = format!(
        "{ROUTE_CANARY}[route.analysis]\nstep_weight = 10\nmax_weight = 50\nbake = \"15m\"\n"
    );
    let config = parse_str(&text, Path::new(FILE)).unwrap();
    assert_eq!(
        config.routes[0].analysis.as_ref().unwrap().bake,
        Some(std::time::Duration::from_secs(900))
    );
}
