//! The validated configuration: immutable domain types that the rest of canaryd reads.
//!
//! Everything here has already passed every rule of docs/configuration.md#validation-rules; code that holds a
//! [`Config`] never re-validates. Raw TOML structures live in `raw.rs`, the rules in
//! `validate.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Method, Uri};
use ipnet::IpNet;
use regex::Regex;

/// One complete, validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (used for reloads and messages).
    pub source: PathBuf,
    /// `[proxy]`: listeners, timeouts and limits of the data plane.
    pub proxy: ProxyConfig,
    /// `[admin]`: the separate admin listener.
    pub admin: AdminConfig,
    /// `[state]`: where rollout state is persisted.
    pub state: StateConfig,
    /// `[log]`: log level and format.
    pub log: LogConfig,
    /// `[[route]]`, in file order.
    pub routes: Vec<RouteConfig>,
    /// `[fleet]`: share rollouts with other replicas through etcd (docs/fleet.md).
    pub fleet: Option<super::FleetConfig>,
}

/// `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain HTTP/1.1 + h2c listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 in the file is resolved to the number of CPU cores here.
    pub workers: usize,
    /// TCP connect timeout towards an upstream endpoint.
    pub connect_timeout: Duration,
    /// Until the upstream's response head arrives; then 504.
    pub request_timeout: Duration,
    /// An idle keep-alive client connection is closed after this.
    pub idle_timeout: Duration,
    /// A client must send its whole request head within this.
    pub header_read_timeout: Duration,
    /// A plain HTTP/1.1 connection quiet this long, with nothing in flight, gives back its
    /// per-connection buffers; zero gives them back after every response (an extension:
    /// docs/performance.md#memory-per-idle-connection).
    pub release_buffers_after: Duration,
    /// Concurrent client connections; further clients wait in the backlog.
    pub max_connections: usize,
    /// Largest accepted request head; larger gets 431.
    pub max_header_bytes: usize,
    /// Extra attempts on another endpoint after a connect failure (idempotent methods).
    pub retries: u32,
    /// A canary request that cannot connect is retried on the primary.
    pub failover_to_primary: bool,
    /// How many retries may be made across requests (an extension: docs/configuration.md#keys-and-defaults).
    pub retry_budget: RetryBudgetConfig,
    /// Passive ejection of failing endpoints (an extension: docs/configuration.md#keys-and-defaults).
    pub ejection: EjectionConfig,
    /// Bounds of the per-worker upstream keep-alive pools (an extension: docs/configuration.md#keys-and-defaults).
    pub pool: PoolConfig,
    /// Simple plain HTTP/1.1 requests to routes on canaryd's engine are served without hyper's
    /// server (an extension: docs/performance.md#the-client-side-fast-path).
    pub fast_path: bool,
    /// How long a shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Response header naming the version that served the request, if set.
    pub version_header: Option<HeaderName>,
    /// Peers whose `X-Forwarded-For` is extended instead of replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// `[proxy.tls]`, if present.
    pub tls: Option<TlsConfig>,
}

/// `proxy.pool_max_idle_per_endpoint` and `proxy.pool_idle_timeout`: each worker keeps at most
/// `max_idle_per_endpoint` idle upstream connections per endpoint (no bound unless written), each
/// for at most `idle_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle connections kept per endpoint and worker; 0 keeps none.
    pub max_idle_per_endpoint: usize,
    /// An idle pooled connection is closed after this.
    pub idle_timeout: Duration,
    /// `proxy.http1_engine`: who drives the exchanges on the pool's cleartext HTTP/1.1
    /// connections (docs/architecture.md#the-upstream-http11-engine).
    pub http1_engine: Http1Engine,
}

/// `proxy.http1_engine`: the client that speaks HTTP/1.1 to cleartext upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Engine {
    /// canaryd's own client, driven in the request's task (`upstream::http1`).
    Canaryd,
    /// hyper's client connection, a task of its own per connection.
    Hyper,
}

impl Http1Engine {
    /// What a file that leaves the key out gets.
    pub const DEFAULT: Http1Engine = Http1Engine::Canaryd;

    /// The value as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Http1Engine::Canaryd => "canaryd",
            Http1Engine::Hyper => "hyper",
        }
    }
}

impl Default for PoolConfig {
    /// The defaults of a file that leaves both keys out: the connections the traffic used stay
    /// until idle for 30 s; a fixed bound below the concurrency in use would close and reopen
    /// connections under load.
    fn default() -> Self {
        PoolConfig {
            max_idle_per_endpoint: usize::MAX,
            idle_timeout: Duration::from_secs(30),
            http1_engine: Http1Engine::DEFAULT,
        }
    }
}

/// `proxy.retry_budget_percent` and `proxy.retry_budget_min_per_second`: per route and version,
/// over a sliding 10 s window, retries may add at most `percent` % of the requests the version
/// finished plus `min_per_second` retries per second (`metrics::retry_budget` has the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of recent requests, 0..=100; 0 leaves only the floor.
    pub percent: u8,
    /// Retries per second allowed whatever the traffic, so a quiet route can still retry; with
    /// `percent = 0` too, no retry is ever made.
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    /// Linkerd's and Finagle's defaults: 20 % of requests plus 10 retries per second.
    fn default() -> Self {
        RetryBudgetConfig {
            percent: 20,
            min_per_second: 10,
        }
    }
}

/// `proxy.ejection_failures`, `proxy.ejection_base_time`, `proxy.ejection_max_time`: an
/// endpoint with `failures` consecutive failures (connect error, timeout, broken exchange, 5xx)
/// is skipped for `base`, doubling with each ejection in a row up to `max`
/// (`upstream::health` has the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionConfig {
    /// Consecutive failures that eject an endpoint; 0 never ejects.
    pub failures: u32,
    /// The first ejection's length.
    pub base: Duration,
    /// The longest ejection.
    pub max: Duration,
}

impl Default for EjectionConfig {
    /// Envoy's outlier detection defaults, roughly: 5 failures, 30 s is Envoy's base; canaryd
    /// starts at 5 s because a canary has few endpoints and is judged on every request.
    fn default() -> Self {
        EjectionConfig {
            failures: 5,
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

/// `[proxy.tls]`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// TLS listen addresses.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, resolved relative to the config file.
    pub cert: PathBuf,
    /// PEM private key, resolved relative to the config file.
    pub key: PathBuf,
    /// `[[proxy.tls.sni]]`, in file order: certificates chosen by the client's SNI. `cert` and
    /// `key` above are the default, served when no entry matches (or the client sends no SNI).
    pub sni: Vec<SniCertConfig>,
    /// Byte offset of the `[proxy.tls]` table in the configuration file: where a default pair
    /// that passes validation but does not load (a key not belonging to its certificate) is
    /// reported.
    pub offset: usize,
}

/// One `[[proxy.tls.sni]]` entry (an extension: docs/configuration.md#keys-and-defaults).
#[derive(Debug, Clone)]
pub struct SniCertConfig {
    /// Exact names and `*.` wildcards, lower-cased; no name appears in two entries.
    pub hosts: Vec<HostPattern>,
    /// PEM certificate chain, resolved relative to the config file.
    pub cert: PathBuf,
    /// PEM private key, resolved relative to the config file.
    pub key: PathBuf,
    /// Byte offset of this entry's `[[proxy.tls.sni]]` header in the configuration file, where
    /// a pair that does not load is reported.
    pub offset: usize,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Admin listen address.
    pub listen: SocketAddr,
    /// File holding the bearer token for POST endpoints, if any.
    pub token_file: Option<PathBuf>,
    /// `admin.public_url`: where people reach the status page (notifications link to it).
    pub public_url: Option<http::Uri>,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Rollout state file, resolved relative to the config file.
    pub path: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `canaryd=debug`.
    pub level: String,
    /// Human-readable or JSON lines.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which of a route's two versions a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The stable version.
    Primary,
    /// The new version under analysis.
    Canary,
}

impl Version {
    /// The label used in metrics, headers and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Primary => "primary",
            Version::Canary => "canary",
        }
    }
}

/// `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique route name, `[a-z0-9-]+`.
    pub name: String,
    /// Host patterns; empty matches any host.
    pub hosts: Vec<HostPattern>,
    /// Requests whose path starts with this belong to the route.
    pub path_prefix: String,
    /// `[route.primary]`.
    pub primary: VersionConfig,
    /// `[route.canary]`, if present.
    pub canary: Option<CanaryConfig>,
    /// `[route.analysis]`, if present.
    pub analysis: Option<AnalysisConfig>,
    /// `[[route.match]]`, first match wins.
    pub matches: Vec<MatchRule>,
    /// `[route.sticky]`, if present.
    pub sticky: Option<StickyKey>,
    /// `[route.mirror]`, if present.
    pub mirror: Option<MirrorConfig>,
    /// `[[route.webhooks]]`.
    pub webhooks: Vec<WebhookConfig>,
    /// `[route.failures]`: what counts as a failed request.
    pub failures: super::FailurePolicy,
}

/// A `hosts` entry, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `shop.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard(String),
}

impl std::fmt::Display for HostPattern {
    /// As written in the file (lower-cased): `shop.example.com`, `*.example.com`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// `[route.primary]` (and the shared part of `[route.canary]`).
#[derive(Debug, Clone)]
pub struct VersionConfig {
    /// Free text naming the version behind these endpoints.
    pub revision: String,
    /// Non-empty list of `host:port` endpoints.
    pub endpoints: Vec<EndpointAddr>,
    /// 1-based line of `endpoints` in the configuration file, for messages about them.
    pub endpoints_line: usize,
    /// How an endpoint is picked.
    pub load_balancing: LoadBalancing,
    /// `protocol` and `[route.<version>.tls]`: how the endpoints are reached.
    pub transport: super::UpstreamTransport,
}

/// `[route.canary]`.
#[derive(Debug, Clone)]
pub struct CanaryConfig {
    /// Revision, endpoints and balancing of the canary.
    pub version: VersionConfig,
    /// Fixed split 0..=100; only meaningful without analysis.
    pub weight: u8,
}

/// One upstream endpoint as written: an IP literal or DNS name, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointAddr {
    /// IP literal (without brackets) or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Endpoint selection within a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancing {
    /// Power of two choices: the less-loaded of two random endpoints.
    P2c,
    /// Rotate through the endpoints.
    RoundRobin,
}

/// `[route.analysis]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    /// How often the canary is judged.
    pub interval: Duration,
    /// Failed checks before rollback.
    pub threshold: u32,
    /// The weight schedule or the iteration count.
    pub steps: Steps,
    /// Canary requests needed before a check concludes.
    pub min_requests: u64,
    /// Consecutive inconclusive checks before rollback.
    pub inconclusive_limit: u32,
    /// Which judge decides (`docs/rollouts.md#the-sequential-judge`).
    pub judge: JudgeKind,
    /// The sequential judge's settings (defaults when `judge = "threshold"`).
    pub sequential: SequentialConfig,
    /// `[[route.analysis.metrics]]` that canaryd measures itself.
    pub metrics: Vec<MetricCheck>,
    /// `[[route.analysis.metrics]]` with a `provider`, asked at every check.
    pub external: Vec<ExternalMetric>,
    /// `bake`: after promotion the route is Baking this long, still judged.
    pub bake: Option<Duration>,
}

/// `judge`: how checks are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeKind {
    /// Wald's sequential probability ratio test on the evidence since the step began.
    Sequential,
    /// Flagger's semantics: each window passes or fails on fixed thresholds.
    Threshold,
}

/// `on_inconclusive`: what a step without a decision after `max_step_duration` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInconclusive {
    /// Warn and keep gathering evidence at the same weight (never promotes).
    Hold,
    /// Warn and roll back.
    Rollback,
}

/// `evidence`: how long the sequential judge's evidence lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceScope {
    /// Across the steps of one revision's rollout.
    Rollout,
    /// Restarted at every step.
    Step,
}

/// The sequential judge's keys of `[route.analysis]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialConfig {
    /// Probability that a healthy canary is rolled back, per rollout.
    pub max_false_rollback: f64,
    /// Probability that a bad canary is promoted, per rollout.
    pub max_false_promotion: f64,
    /// "Good" = this multiple of the allowed failure (or slow) rate.
    pub good_multiple: f64,
    /// "Bad" = this multiple of the allowed failure (or slow) rate.
    pub bad_multiple: f64,
    /// A step without a decision for this long warns and follows `on_inconclusive`.
    pub max_step_duration: Duration,
    /// What an undecided step does after `max_step_duration`.
    pub on_inconclusive: OnInconclusive,
    /// Whether evidence carries across steps.
    pub evidence: EvidenceScope,
}

impl SequentialConfig {
    /// The defaults for a route judged every `interval`.
    pub fn defaults(interval: Duration) -> Self {
        SequentialConfig {
            max_false_rollback: 0.01,
            max_false_promotion: 0.05,
            good_multiple: 0.5,
            bad_multiple: 1.5,
            max_step_duration: interval.saturating_mul(10),
            on_inconclusive: OnInconclusive::Hold,
            evidence: EvidenceScope::Rollout,
        }
    }
}

/// How a rollout advances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steps {
    /// Canary weights in order; `step_weight`/`max_weight` are expanded into this list.
    Weights(Vec<u8>),
    /// A/B or blue/green: this many passed checks, then promotion.
    Iterations(u32),
}

/// One `[[route.analysis.metrics]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricCheck {
    /// `request-success-rate`: canary non-5xx share in percent.
    SuccessRate {
        /// Canary success rate must be >= this (percent).
        threshold: f64,
        /// And at most this many points below the primary's.
        max_drop: Option<f64>,
    },
    /// `request-duration`: a canary latency quantile.
    Duration {
        /// Canary quantile must be <= this.
        threshold: Duration,
        /// The quantile, in (0, 1).
        quantile: f64,
        /// And at most this multiple of the primary's quantile.
        max_ratio: Option<f64>,
    },
}

/// One `[[route.match]]` rule: all listed headers and cookies must match.
#[derive(Debug, Clone)]
pub struct MatchRule {
    /// Header conditions (names lower-cased).
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Cookie conditions.
    pub cookies: Vec<(String, ValueMatch)>,
    /// Where a matching request goes.
    pub to: Version,
}

/// How a header or cookie value is compared.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Byte-for-byte equality.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The regex matches (unanchored unless the pattern anchors itself).
    Regex(Regex),
}

/// `[route.sticky]`: where a user's key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A cookie name.
    Cookie(String),
    /// A header name.
    Header(HeaderName),
}

/// `[route.mirror]`.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Share of primary-bound requests copied to the canary, 0..=100.
    pub percent: u8,
    /// Methods that are mirrored.
    pub methods: Vec<Method>,
    /// Larger request bodies are not mirrored.
    pub max_body_bytes: u64,
}

/// `[[route.webhooks]]`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// When the hook is called (docs/rollouts.md#webhooks).
    pub kind: WebhookKind,
    /// `http://` or `https://` URL the payload is POSTed to.
    pub url: http::Uri,
    /// Per-hook timeout (default 10 s).
    pub timeout: Duration,
    /// Free key/value pairs passed through in the payload.
    pub metadata: BTreeMap<String, String>,
    /// The body's shape (docs/rollouts.md#notifications).
    pub format: WebhookFormat,
    /// `event` hooks: events below this severity are not sent.
    pub severity: WebhookSeverity,
    /// Extra request headers. Every value is marked sensitive, so `Debug` prints `Sensitive`
    /// instead of a token read from a `file:`.
    pub headers: http::HeaderMap,
    /// Further attempts after a failed delivery (notice types only; gates are asked once).
    pub retries: u32,
    /// The roots an `https://` hook's certificate is verified against; `None` for `http://`.
    pub roots: Option<WebhookRoots>,
    /// The status page link chat notifications carry: `admin.public_url`, if set.
    pub status_page: Option<String>,
}

/// The certificate authorities an `https://` hook is verified against: the `ca` file's, or
/// the system's.
#[derive(Clone)]
pub struct WebhookRoots(pub std::sync::Arc<rustls::RootCertStore>);

/// The same roots only when the same load produced them: a reload re-reads a `ca` file, which
/// may have changed.
impl PartialEq for WebhookRoots {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for WebhookRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookRoots({} roots)", self.0.len())
    }
}

/// `format`: what the body of a hook looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// canaryd's JSON payload (docs/rollouts.md#webhooks).
    Generic,
    /// A Slack incoming-webhook message.
    Slack,
    /// A Microsoft Teams connector card.
    MsTeams,
    /// A Discord webhook message.
    Discord,
}

impl WebhookFormat {
    /// Every format, in the order docs/rollouts.md#notifications lists them.
    pub const ALL: [WebhookFormat; 4] = [
        WebhookFormat::Generic,
        WebhookFormat::Slack,
        WebhookFormat::MsTeams,
        WebhookFormat::Discord,
    ];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::MsTeams => "msteams",
            WebhookFormat::Discord => "discord",
        }
    }
}

/// `severity`: the lowest event severity an `event` hook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookSeverity {
    /// Every event (default).
    Info,
    /// Warnings only: failed checks, rollbacks, refusals.
    Warning,
}

impl WebhookSeverity {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookSeverity::Info => "info",
            WebhookSeverity::Warning => "warning",
        }
    }
}

/// The eight webhook types of docs/rollouts.md#webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookKind {
    /// `confirm-rollout`.
    ConfirmRollout,
    /// `pre-rollout`.
    PreRollout,
    /// `rollout`.
    Rollout,
    /// `confirm-traffic-increase`.
    ConfirmTrafficIncrease,
    /// `confirm-promotion`.
    ConfirmPromotion,
    /// `post-rollout`.
    PostRollout,
    /// `rollback`.
    Rollback,
    /// `event`.
    Event,
}

impl WebhookKind {
    /// Every kind, in the order of the table in docs/rollouts.md#webhooks.
    pub const ALL: [WebhookKind; 8] = [
        WebhookKind::ConfirmRollout,
        WebhookKind::PreRollout,
        WebhookKind::Rollout,
        WebhookKind::ConfirmTrafficIncrease,
        WebhookKind::ConfirmPromotion,
        WebhookKind::PostRollout,
        WebhookKind::Rollback,
        WebhookKind::Event,
    ];

    /// Whether the hook is a notice (`post-rollout`, `event`): its answer changes nothing, so
    /// a failed delivery is retried; the other kinds are gates, asked once per check.
    pub fn is_notice(self) -> bool {
        matches!(self, WebhookKind::PostRollout | WebhookKind::Event)
    }

    /// The name used in the config file and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::ConfirmRollout => "confirm-rollout",
            WebhookKind::PreRollout => "pre-rollout",
            WebhookKind::Rollout => "rollout",
            WebhookKind::ConfirmTrafficIncrease => "confirm-traffic-increase",
            WebhookKind::ConfirmPromotion => "confirm-promotion",
            WebhookKind::PostRollout => "post-rollout",
            WebhookKind::Rollback => "rollback",
            WebhookKind::Event => "event",
        }
    }
}

/// One external metric of `[[route.analysis.metrics]]` with a `provider`
/// (`docs/rollouts.md#external-metrics`): asked by the route's analysis task at every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalMetric {
    /// The `name`, unique in the route (the `metric` label and the report's name).
    pub name: String,
    /// Where and how the number is read.
    pub source: MetricSource,
    /// Pass only when the value is at least this.
    pub min: Option<f64>,
    /// Pass only when the value is at most this.
    pub max: Option<f64>,
    /// Extra request headers (values from `file:` marked sensitive).
    pub headers: HeaderMap,
    /// Roots an `https://` source is verified against.
    pub roots: Option<WebhookRoots>,
    /// How long one query may take.
    pub timeout: Duration,
    /// Measured, shown and evented, but never decides.
    pub dry_run: bool,
}

impl ExternalMetric {
    /// The count form's `threshold` (success rate, percent); `None` for a value metric.
    pub fn count_threshold(&self) -> Option<f64> {
        match &self.source {
            MetricSource::Prometheus {
                query: PromQuery::Count { threshold, .. },
                ..
            } => Some(*threshold),
            MetricSource::Prometheus { .. } | MetricSource::HttpJson { .. } => None,
        }
    }

    /// Whether it is in the count form (`failures`, `total`).
    pub fn counted(&self) -> bool {
        self.count_threshold().is_some()
    }
}

/// How an external metric's value is read. Texts may hold placeholders
/// ([`PLACEHOLDERS`]), filled at each check.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// `provider = "prometheus"`: `GET {address}/api/v1/query?query=…`, the instant vector's
    /// single value.
    Prometheus {
        /// The server's base URL.
        address: Uri,
        /// One query, or the count form.
        query: PromQuery,
    },
    /// `provider = "http-json"`: GET (or POST `body`) `url`, the number at `path`.
    HttpJson {
        /// The URL (placeholders allowed), checked to be absolute http(s) once filled.
        url: String,
        /// The request body; `Some` sends a POST.
        body: Option<String>,
        /// Where the number is in the answer.
        path: JsonPath,
    },
}

/// A Prometheus metric's queries.
#[derive(Debug, Clone, PartialEq)]
pub enum PromQuery {
    /// `query`: a value judged by `min`/`max`.
    Value(String),
    /// `failures` and `total`: a success rate `100 × (1 − failures/total)` that must be at
    /// least `threshold` percent.
    Count {
        /// Failed events in the interval.
        failures: String,
        /// All events in the interval.
        total: String,
        /// The lowest success rate that passes, percent.
        threshold: f64,
    },
}

/// The placeholders an external metric's texts may hold.
pub const PLACEHOLDERS: [&str; 5] = [
    "route",
    "revision",
    "primary_revision",
    "version",
    "interval",
];

/// `path` of an http-json metric: `$` then `.key` and `[index]` steps, e.g. `$.data[0].value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(pub Vec<JsonStep>);

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}
