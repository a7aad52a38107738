//! The configuration file exactly as written: serde structures mirroring the TOML schema of
//! docs/configuration.md#keys-and-defaults, with its defaults.
//!
//! Nothing here is validated beyond TOML syntax, types and unknown keys (every struct denies
//! unknown fields). Every value a rule in `validate.rs` may reject is wrapped in
//! [`Spanned`] so the error can point at it. Defaulted values carry the empty span `0..0`;
//! defaults are always valid, and validation treats an empty span as "not written" when it
//! needs a position (it then points at the enclosing table instead).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A defaulted value: the empty span marks it as not written in the file.
fn dflt<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// A defaulted string.
fn dstr(value: &str) -> Spanned<String> {
    dflt(value.to_owned())
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// `[proxy]`.
    #[serde(default)]
    pub proxy: RawProxy,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[state]`.
    #[serde(default)]
    pub state: RawState,
    /// `[log]`.
    #[serde(default)]
    pub log: RawLog,
    /// `[fleet]` (docs/fleet.md); absent: single-process mode.
    #[serde(default)]
    pub fleet: Option<Spanned<super::fleet::RawFleet>>,
    /// `[[route]]`; zero routes is valid (every request gets 404).
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

/// `[proxy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawProxy {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub workers: Spanned<i64>,
    pub connect_timeout: Spanned<String>,
    pub request_timeout: Spanned<String>,
    pub idle_timeout: Spanned<String>,
    pub header_read_timeout: Spanned<String>,
    /// Extension (docs/performance.md#memory-per-idle-connection): when a quiet plain HTTP/1.1
    /// connection gives back its buffers (see `proxy::http1_rounds`).
    pub release_buffers_after: Spanned<String>,
    pub max_connections: Spanned<i64>,
    pub max_header_bytes: Spanned<i64>,
    pub retries: Spanned<i64>,
    pub failover_to_primary: bool,
    /// Extension (docs/routing.md#retry-budget): the retry budget (see `metrics::retry_budget`).
    pub retry_budget_percent: Spanned<i64>,
    pub retry_budget_min_per_second: Spanned<i64>,
    /// Extension (docs/routing.md#3-endpoint): passive ejection (see `upstream::health`).
    pub ejection_failures: Spanned<i64>,
    pub ejection_base_time: Spanned<String>,
    pub ejection_max_time: Spanned<String>,
    /// Extension (docs/configuration.md#keys-and-defaults): bounds of the upstream keep-alive pool (see `upstream::pool`).
    pub pool_max_idle_per_endpoint: Spanned<i64>,
    pub pool_idle_timeout: Spanned<String>,
    /// Extension (docs/architecture.md#the-upstream-http11-engine): who drives upstream
    /// HTTP/1.1 exchanges, `"canaryd"` or `"hyper"` (see `upstream::http1`).
    pub http1_engine: Spanned<String>,
    /// Extension (docs/performance.md#the-client-side-fast-path): simple plain HTTP/1.1
    /// requests served without hyper's server (see `proxy::fast`); on unless `false` is written.
    pub fast_path: bool,
    pub drain_timeout: Spanned<String>,
    pub version_header: Spanned<String>,
    pub trusted_proxies: Vec<Spanned<String>>,
    pub tls: Option<Spanned<RawTls>>,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: dflt(vec![dstr("0.0.0.0:8080")]),
            workers: dflt(0),
            connect_timeout: dstr("2s"),
            request_timeout: dstr("60s"),
            idle_timeout: dstr("90s"),
            header_read_timeout: dstr("10s"),
            release_buffers_after: dstr("100ms"),
            max_connections: dflt(20000),
            max_header_bytes: dflt(65536),
            retries: dflt(1),
            failover_to_primary: true,
            retry_budget_percent: dflt(20),
            retry_budget_min_per_second: dflt(10),
            ejection_failures: dflt(5),
            ejection_base_time: dstr("5s"),
            ejection_max_time: dstr("5m"),
            pool_max_idle_per_endpoint: dflt(64),
            pool_idle_timeout: dstr("30s"),
            http1_engine: dstr(super::types::Http1Engine::DEFAULT.name()),
            fast_path: true,
            drain_timeout: dstr("30s"),
            version_header: dstr(""),
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

/// `[proxy.tls]`; `cert` and `key` have no sensible default, so they are required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default = "default_tls_listen")]
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    /// `[[proxy.tls.sni]]`: extra certificates chosen by the client's SNI (an extension,
    /// docs/tls.md#several-certificates-sni, beside the one pair above).
    #[serde(default)]
    pub sni: Vec<Spanned<RawSni>>,
}

/// `[[proxy.tls.sni]]`: a certificate/key pair and the host names it is served for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSni {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

fn default_tls_listen() -> Spanned<Vec<Spanned<String>>> {
    dflt(vec![dstr("0.0.0.0:8443")])
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAdmin {
    pub listen: Spanned<String>,
    pub token_file: Spanned<String>,
    /// The address people reach the status page at, for links in notifications.
    pub public_url: Spanned<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: dstr("127.0.0.1:9901"),
            token_file: dstr(""),
            public_url: dstr(""),
        }
    }
}

/// `[state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawState {
    pub path: Spanned<String>,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            path: dstr("canaryd-state.json"),
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub level: Spanned<String>,
    pub format: Spanned<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: dstr("info"),
            format: dstr("text"),
        }
    }
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    #[serde(default = "default_path_prefix")]
    pub path_prefix: Spanned<String>,
    pub primary: Spanned<RawPrimary>,
    #[serde(default)]
    pub canary: Option<Spanned<RawCanary>>,
    #[serde(default)]
    pub analysis: Option<Spanned<RawAnalysis>>,
    #[serde(default, rename = "match")]
    pub matches: Vec<Spanned<RawMatch>>,
    #[serde(default)]
    pub sticky: Option<Spanned<RawSticky>>,
    #[serde(default)]
    pub mirror: Option<Spanned<RawMirror>>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<RawWebhook>>,
    /// `[route.failures]` (docs/rollouts.md#what-counts-as-a-failure); absent: the defaults.
    #[serde(default)]
    pub failures: Option<Spanned<RawFailures>>,
}

fn default_path_prefix() -> Spanned<String> {
    dstr("/")
}

fn default_load_balancing() -> Spanned<String> {
    dstr("p2c")
}

/// `[route.primary]`. `endpoints` is required: an empty default could not be valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrimary {
    #[serde(default)]
    pub revision: String,
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_load_balancing")]
    pub load_balancing: Spanned<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Spanned<String>,
    #[serde(default)]
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

fn default_protocol() -> Spanned<String> {
    dstr("http1")
}

/// `[route.primary.tls]` / `[route.canary.tls]`: TLS to the version's endpoints
/// (docs/security.md#upstream-tls). Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub cert: Option<Spanned<String>>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub verify: Option<Spanned<bool>>,
}

/// `[route.failures]`: what the checks count as a failed request. Absent keys keep their
/// defaults (`config::FailurePolicy::default`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailures {
    #[serde(default)]
    pub http_statuses: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub grpc_codes: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub ignore_paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub outcome_header: Option<Spanned<String>>,
}

/// `[route.canary]`: the primary's keys plus `weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCanary {
    /// Optional for a static split; `[route.analysis]` requires it (checked in validation).
    #[serde(default = "default_empty")]
    pub revision: Spanned<String>,
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_load_balancing")]
    pub load_balancing: Spanned<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Spanned<String>,
    #[serde(default)]
    pub tls: Option<Spanned<RawUpstreamTls>>,
    #[serde(default = "default_zero")]
    pub weight: Spanned<i64>,
}

fn default_empty() -> Spanned<String> {
    dstr("")
}

fn default_zero() -> Spanned<i64> {
    dflt(0)
}

/// `[route.analysis]`. The step settings are optional here; validation requires exactly one
/// way of stepping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnalysis {
    #[serde(default = "default_interval")]
    pub interval: Spanned<String>,
    #[serde(default = "default_threshold")]
    pub threshold: Spanned<i64>,
    #[serde(default)]
    pub step_weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub step_weights: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    pub iterations: Option<Spanned<i64>>,
    #[serde(default = "default_min_requests")]
    pub min_requests: Spanned<i64>,
    #[serde(default = "default_inconclusive_limit")]
    pub inconclusive_limit: Spanned<i64>,
    /// `"sequential"` (default) or `"threshold"`; the remaining keys are the sequential
    /// judge's and are rejected with `"threshold"`.
    #[serde(default)]
    pub judge: Option<Spanned<String>>,
    #[serde(default)]
    pub max_false_rollback: Option<Spanned<Number>>,
    #[serde(default)]
    pub max_false_promotion: Option<Spanned<Number>>,
    #[serde(default)]
    pub good_multiple: Option<Spanned<Number>>,
    #[serde(default)]
    pub bad_multiple: Option<Spanned<Number>>,
    #[serde(default)]
    pub max_step_duration: Option<Spanned<String>>,
    #[serde(default)]
    pub on_inconclusive: Option<Spanned<String>>,
    #[serde(default)]
    pub evidence: Option<Spanned<String>>,
    #[serde(default)]
    pub metrics: Vec<Spanned<RawMetric>>,
    /// After promotion, keep judging at 100% this long (`docs/rollouts.md#bake`).
    #[serde(default)]
    pub bake: Option<Spanned<String>>,
}

fn default_interval() -> Spanned<String> {
    dstr("60s")
}

fn default_threshold() -> Spanned<i64> {
    dflt(5)
}

fn default_min_requests() -> Spanned<i64> {
    dflt(20)
}

fn default_inconclusive_limit() -> Spanned<i64> {
    dflt(10)
}

/// `[[route.analysis.metrics]]`: the union of both metrics' keys; validation rejects the keys
/// that do not belong to the named metric.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetric {
    pub name: Spanned<String>,
    /// A number (success rate, an external count form) or a duration string (request
    /// duration), so kept untyped.
    #[serde(default)]
    pub threshold: Option<Spanned<toml::Value>>,
    /// Set: an external metric (`docs/rollouts.md#external-metrics`), `"prometheus"` or
    /// `"http-json"`; the keys below are its.
    #[serde(default)]
    pub provider: Option<Spanned<String>>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    #[serde(default)]
    pub failures: Option<Spanned<String>>,
    #[serde(default)]
    pub total: Option<Spanned<String>>,
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub min: Option<Spanned<Number>>,
    #[serde(default)]
    pub max: Option<Spanned<Number>>,
    /// Extra request headers; a value `file:/path` is read from that file.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub on_error: Option<Spanned<String>>,
    #[serde(default)]
    pub dry_run: Option<Spanned<bool>>,
    #[serde(default)]
    pub quantile: Option<Spanned<Number>>,
    #[serde(default)]
    pub max_drop: Option<Spanned<Number>>,
    #[serde(default)]
    pub max_ratio: Option<Spanned<Number>>,
}

/// A TOML integer or float, as `f64`: `quantile = 1` and `max_ratio = 2` are natural to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                // Config numbers are small; the precision lost above 2^53 does not matter.
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// `[[route.match]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    pub headers: Entries<Spanned<RawMatchValue>>,
    #[serde(default)]
    pub cookies: Entries<Spanned<RawMatchValue>>,
    #[serde(default = "default_to")]
    pub to: Spanned<String>,
}

fn default_to() -> Spanned<String> {
    dstr("canary")
}

/// The entries of a TOML table in file order, each key with its span (header and cookie
/// names must be validated and pointed at).
#[derive(Debug)]
pub(crate) struct Entries<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<V>()?;
                    entries.push((key, value));
                }
                // toml hands keys over sorted unless its `preserve_order` feature is on; the
                // spans restore the order they were written in.
                entries.sort_by_key(|(key, _)| key.span().start);
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A header or cookie condition: a plain string (exact match) or an inline table with one of
/// `exact`, `prefix`, `regex` (validation enforces "exactly one").
#[derive(Debug)]
pub(crate) enum RawMatchValue {
    /// `"value"`.
    Plain(String),
    /// `{ exact = .. }`, `{ prefix = .. }` or `{ regex = .. }`.
    Table(RawMatchTable),
}

/// The inline-table form of a match condition.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatchTable {
    #[serde(default)]
    pub exact: Option<Spanned<String>>,
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawMatchValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written instead of `#[serde(untagged)]`: untagged enums buffer their input, which
        // loses the spans inside the table and turns every mistake into "did not match any
        // variant".
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = RawMatchValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a table with one of `exact`, `prefix`, `regex`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMatchValue, E> {
                Ok(RawMatchValue::Plain(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawMatchValue, E> {
                Ok(RawMatchValue::Plain(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawMatchValue, A::Error> {
                RawMatchTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawMatchValue::Table)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// `[route.sticky]`: validation requires exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    #[serde(default)]
    pub cookie: Option<Spanned<String>>,
    #[serde(default)]
    pub header: Option<Spanned<String>>,
}

/// `[route.mirror]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirror {
    #[serde(default = "default_percent")]
    pub percent: Spanned<i64>,
    #[serde(default = "default_methods")]
    pub methods: Vec<Spanned<String>>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: Spanned<i64>,
}

fn default_percent() -> Spanned<i64> {
    dflt(100)
}

fn default_methods() -> Vec<Spanned<String>> {
    vec![dstr("GET"), dstr("HEAD"), dstr("OPTIONS")]
}

fn default_max_body_bytes() -> Spanned<i64> {
    dflt(1_048_576)
}

/// `[[route.webhooks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub url: Spanned<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Spanned<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `https://` only: PEM file of the CA that signs the hook's certificate (default: the
    /// system's roots).
    pub ca: Option<Spanned<String>>,
    #[serde(default = "default_webhook_format")]
    pub format: Spanned<String>,
    /// `event` hooks only: the lowest severity sent.
    pub severity: Option<Spanned<String>>,
    /// Extra request headers; a value `file:/path` is read from that file.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Notice types only (`post-rollout`, `event`): further attempts after a failed one.
    pub retries: Option<Spanned<i64>>,
}

fn default_webhook_timeout() -> Spanned<String> {
    dstr("10s")
}

fn default_webhook_format() -> Spanned<String> {
    dstr("generic")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_file_gets_every_default() {
        let raw = parse("").unwrap();
        assert_eq!(raw.proxy.listen.get_ref().len(), 1);
        assert_eq!(raw.proxy.listen.get_ref()[0].get_ref(), "0.0.0.0:8080");
        assert_eq!(*raw.proxy.max_header_bytes.get_ref(), 65536);
        assert!(raw.proxy.failover_to_primary);
        assert_eq!(*raw.proxy.retry_budget_percent.get_ref(), 20);
        assert_eq!(*raw.proxy.retry_budget_min_per_second.get_ref(), 10);
        assert_eq!(raw.admin.listen.get_ref(), "127.0.0.1:9901");
        assert_eq!(raw.state.path.get_ref(), "canaryd-state.json");
        assert_eq!(raw.log.format.get_ref(), "text");
        assert!(raw.route.is_empty());
    }

    #[test]
    fn unknown_key_is_rejected_at_the_key() {
        let text = "[proxy]\nlisten = []\nlisen = []\n";
        let err = parse(text).unwrap_err();
        assert!(err.message().contains("unknown field `lisen`"), "{err}");
        assert_eq!(err.span(), Some(20..25));
    }

    #[test]
    fn match_values_keep_spans_and_file_order() {
        let text = "[[route]]\nname = \"a\"\nprimary = { endpoints = [\"a:1\"] }\n\
                    [[route.match]]\nheaders = { b = \"x\", a = { regex = \"^y\" } }\n";
        let raw = parse(text).unwrap();
        let rule = raw.route[0].get_ref().matches[0].get_ref();
        let names: Vec<&str> = rule
            .headers
            .0
            .iter()
            .map(|(k, _)| k.get_ref().as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
        match rule.headers.0[1].1.get_ref() {
            RawMatchValue::Table(t) => {
                let re = t.regex.as_ref().unwrap();
                assert_eq!(&text[re.span()], "\"^y\"");
            }
            RawMatchValue::Plain(_) => panic!("expected a table"),
        }
    }

    #[test]
    fn match_table_rejects_unknown_keys() {
        let text = "[[route]]\nname = \"a\"\nprimary = { endpoints = [\"a:1\"] }\n\
                    [[route.match]]\nheaders = { a = { glob = \"y\" } }\n";
        let err = parse(text).unwrap_err();
        assert!(err.message().contains("unknown field `glob`"), "{err}");
    }

    #[test]
    fn numbers_accept_integers_and_floats() {
        let text = "[[route]]\nname = \"a\"\nprimary = { endpoints = [\"a:1\"] }\n\
                    [route.analysis]\n[[route.analysis.metrics]]\nname = \"x\"\nthreshold = 1\n\
                    max_ratio = 2\nquantile = 0.5\n";
        let raw = parse(text).unwrap();
        let analysis = raw.route[0].get_ref().analysis.as_ref().unwrap();
        let metric = analysis.get_ref().metrics[0].get_ref();
        assert_eq!(metric.max_ratio.as_ref().unwrap().get_ref().0, 2.0);
        assert_eq!(metric.quantile.as_ref().unwrap().get_ref().0, 0.5);
    }
}
