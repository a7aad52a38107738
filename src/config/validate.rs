//! Turns the raw TOML structures into a validated [`Config`]: every rule of docs/configuration.md#validation-rules
//! for the global sections (`[proxy]`, `[admin]`, `[state]`, `[log]`; `[proxy.tls]` in
//! `tls.rs`), the entry points [`parse_str`] and [`load_file`], and the small checkers shared
//! with the route rules in `routes.rs` and `tls.rs`.
//!
//! Every section and every route is validated independently and all broken rules are
//! collected; the one earliest in the file is reported, so fixing errors top to bottom works.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, Issue};
use super::raw::{RawAdmin, RawConfig, RawLog, RawProxy, RawState};
use super::routes;
use super::tls::tls_config;
use super::types::{
    AdminConfig, Config, EjectionConfig, Http1Engine, LogConfig, LogFormat, PoolConfig,
    ProxyConfig, RetryBudgetConfig, StateConfig,
};

/// Result of one rule check: the value, or where and why it is wrong.
pub(crate) type Checked<T> = Result<T, Issue>;

/// Where the files a config names are, and whether they are read: a config that serves
/// nothing (`canaryd simulate`) is not refused for a missing certificate or token file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Files<'a> {
    /// The config file's directory, against which relative paths resolve.
    pub base: &'a Path,
    /// Read the TLS pairs, webhook `ca` files and `file:` header values (and refuse the
    /// config if one cannot be read).
    pub read: bool,
}

/// hyper cannot buffer less than this, so a smaller `max_header_bytes` could not be honoured.
const MIN_HEADER_BYTES: i64 = 8192;

/// A floor above a million retries per second would be no budget at all.
const MAX_RETRY_BUDGET_MIN_PER_SECOND: i64 = 1_000_000;

/// More idle connections than this per endpoint and worker is a typo, not a pool.
const MAX_POOL_IDLE_PER_ENDPOINT: i64 = 100_000;

/// Reads and validates the configuration file at `path`.
///
/// Relative paths inside it (`proxy.tls.cert`, `proxy.tls.key`, those of `[[proxy.tls.sni]]`,
/// `admin.token_file`, `state.path`) are resolved against the file's directory, and the TLS
/// files are read to check they hold PEM data.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// [`load_file`] for a config that will serve nothing (`canaryd simulate`): every rule is
/// checked, but the files it names — TLS pairs, webhook `ca` files, `file:` header values —
/// are not read, so their absence on this machine is no error.
pub fn load_file_unread(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, false)
}

/// Validates configuration `text` as if it had been read from `source`.
///
/// `source` names the file in error messages and is the base directory for relative paths;
/// like [`load_file`] this reads the TLS certificate and key if `[proxy.tls]` is present.
pub fn parse_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    parse(text, source, true)
}

fn parse(text: &str, source: &Path, read: bool) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ConfigError::at(
            source,
            text,
            offset,
            super::hints::with_hint(e.message(), text, offset),
        )
    })?;
    let base = source.parent().unwrap_or_else(|| Path::new(""));
    let files = Files { base, read };

    let mut issues = Vec::new();
    let proxy = keep(&mut issues, proxy_config(&raw.proxy, files));
    let admin = keep(&mut issues, admin_config(&raw.admin, base));
    let state = keep(&mut issues, state_config(&raw.state, base));
    let log = keep(&mut issues, log_config(&raw.log));
    let fleet = raw
        .fleet
        .as_ref()
        .and_then(|f| keep(&mut issues, super::fleet::fleet_config(f, base)));
    let mut route_list = Vec::with_capacity(raw.route.len());
    for route in &raw.route {
        if let Some(r) = keep(&mut issues, routes::route_config(route, files)) {
            route_list.push(r);
        }
    }
    issues.extend(routes::conflicts(&raw.route));
    if let Some(url) = admin.as_ref().and_then(|a| a.public_url.as_ref()) {
        for hook in route_list.iter_mut().flat_map(|r| r.webhooks.iter_mut()) {
            hook.status_page = Some(url.to_string());
        }
    }

    // Report the issue that comes first in the file.
    if let Some(first) = issues.iter().min_by_key(|i| i.span.start) {
        return Err(ConfigError::at(
            source,
            text,
            first.span.start,
            first.message.clone(),
        ));
    }
    // No issue, so every raw route became one route, in order.
    for (route, raw) in route_list.iter_mut().zip(&raw.route) {
        let raw = raw.get_ref();
        route.primary.endpoints_line = line_of(text, raw.primary.get_ref().endpoints.span());
        if let (Some(canary), Some(raw)) = (&mut route.canary, &raw.canary) {
            canary.version.endpoints_line = line_of(text, raw.get_ref().endpoints.span());
        }
    }
    match (proxy, admin, state, log) {
        (Some(proxy), Some(admin), Some(state), Some(log)) => Ok(Config {
            source: source.to_path_buf(),
            proxy,
            admin,
            state,
            log,
            routes: route_list,
            fleet,
        }),
        // Unreachable: a section is `None` only when it pushed an issue. Still, fail rather
        // than panic.
        _ => Err(ConfigError::at(
            source,
            text,
            0,
            "internal error: invalid section without a message",
        )),
    }
}

/// The 1-based line where `span` starts in `text`.
fn line_of(text: &str, span: Range<usize>) -> usize {
    text.get(..span.start)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// Moves an issue into `issues`, keeping the value if there was none.
pub(crate) fn keep<T>(issues: &mut Vec<Issue>, checked: Checked<T>) -> Option<T> {
    match checked {
        Ok(v) => Some(v),
        Err(issue) => {
            issues.push(issue);
            None
        }
    }
}

/// The span of a value, or `fallback` (its table) when the value was defaulted, not written.
pub(crate) fn span_or(span: Range<usize>, fallback: Range<usize>) -> Range<usize> {
    if span.is_empty() {
        fallback
    } else {
        span
    }
}

/// Parses a duration string such as `"250ms"`, `"10s"` or `"5m"`.
pub(crate) fn duration(value: &Spanned<String>, key: &str) -> Checked<Duration> {
    humantime::parse_duration(value.get_ref()).map_err(|e| {
        Issue::new(
            value.span(),
            format!(
                "`{key}` = {:?} is not a duration ({e}); write a number with a unit, e.g. \"250ms\", \"10s\", \"5m\"",
                value.get_ref()
            ),
        )
    })
}

/// A duration that must be above zero.
pub(crate) fn positive_duration(value: &Spanned<String>, key: &str) -> Checked<Duration> {
    let d = duration(value, key)?;
    if d.is_zero() {
        return Err(Issue::new(
            value.span(),
            format!("`{key}` must be above zero"),
        ));
    }
    Ok(d)
}

/// An integer in `min..=max`, converted to the target type.
pub(crate) fn int_in<T: TryFrom<i64>>(
    value: &Spanned<i64>,
    key: &str,
    min: i64,
    max: i64,
) -> Checked<T> {
    let v = *value.get_ref();
    let out_of_range = || {
        // Bounds that only mirror the target type's size are noise in a message.
        if max >= i64::from(u32::MAX) {
            Issue::new(
                value.span(),
                format!("`{key}` must be at least {min}, got {v}"),
            )
        } else {
            Issue::new(
                value.span(),
                format!("`{key}` must be in {min}..={max}, got {v}"),
            )
        }
    };
    if !(min..=max).contains(&v) {
        return Err(out_of_range());
    }
    T::try_from(v).map_err(|_| out_of_range())
}

/// A listen address: `IP:port`, or `[IPv6]:port`.
pub(crate) fn socket_addr(value: &Spanned<String>, key: &str) -> Checked<SocketAddr> {
    value.get_ref().parse().map_err(|_| {
        Issue::new(
            value.span(),
            format!(
                "`{key}` entry {:?} is not a listen address; write IP:port such as \"0.0.0.0:8080\" or \"[::]:8080\"",
                value.get_ref()
            ),
        )
    })
}

/// A non-empty list of listen addresses.
pub(crate) fn listen_list(
    list: &Spanned<Vec<Spanned<String>>>,
    key: &str,
) -> Checked<Vec<SocketAddr>> {
    if list.get_ref().is_empty() {
        return Err(Issue::new(
            list.span(),
            format!("`{key}` must list at least one address"),
        ));
    }
    list.get_ref().iter().map(|a| socket_addr(a, key)).collect()
}

/// A header name, lower-cased.
pub(crate) fn header_name(value: &Spanned<String>, what: &str) -> Checked<HeaderName> {
    HeaderName::from_bytes(value.get_ref().to_ascii_lowercase().as_bytes()).map_err(|_| {
        Issue::new(
            value.span(),
            format!(
                "{what} {:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                value.get_ref()
            ),
        )
    })
}

/// A path from the file, resolved against the config file's directory when relative.
pub(crate) fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn proxy_config(raw: &RawProxy, files: Files<'_>) -> Checked<ProxyConfig> {
    let listen = listen_list(&raw.listen, "proxy.listen")?;
    let workers: usize = int_in(&raw.workers, "workers", 0, 4096)?;
    let workers = if workers == 0 {
        // 0 means one worker per core; fall back to one if the count is unknowable.
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        workers
    };
    let connect_timeout = positive_duration(&raw.connect_timeout, "connect_timeout")?;
    let request_timeout = positive_duration(&raw.request_timeout, "request_timeout")?;
    let idle_timeout = positive_duration(&raw.idle_timeout, "idle_timeout")?;
    let header_read_timeout = positive_duration(&raw.header_read_timeout, "header_read_timeout")?;
    // Zero is allowed: buffers are given back after every response.
    let release_buffers_after = duration(&raw.release_buffers_after, "release_buffers_after")?;
    let max_connections = int_in(&raw.max_connections, "max_connections", 1, i64::MAX)?;
    let max_header_bytes = int_in(
        &raw.max_header_bytes,
        "max_header_bytes",
        MIN_HEADER_BYTES,
        i64::MAX,
    )
    .map_err(|i| {
        Issue::new(
            i.span,
            format!("{} (hyper's minimum read buffer)", i.message),
        )
    })?;
    let retries = int_in(&raw.retries, "retries", 0, i64::from(u32::MAX))?;
    let retry_budget = RetryBudgetConfig {
        percent: int_in(&raw.retry_budget_percent, "retry_budget_percent", 0, 100)?,
        min_per_second: int_in(
            &raw.retry_budget_min_per_second,
            "retry_budget_min_per_second",
            0,
            MAX_RETRY_BUDGET_MIN_PER_SECOND,
        )?,
    };
    let ejection = ejection_config(raw)?;
    // Not written: no bound but the idle timeout, so the pool keeps the connections the
    // traffic uses (docs/configuration.md#keys-and-defaults).
    let max_idle_per_endpoint = if raw.pool_max_idle_per_endpoint.span().is_empty() {
        PoolConfig::default().max_idle_per_endpoint
    } else {
        int_in(
            &raw.pool_max_idle_per_endpoint,
            "pool_max_idle_per_endpoint",
            0,
            MAX_POOL_IDLE_PER_ENDPOINT,
        )?
    };
    let pool = PoolConfig {
        max_idle_per_endpoint,
        idle_timeout: positive_duration(&raw.pool_idle_timeout, "pool_idle_timeout")?,
        http1_engine: http1_engine(&raw.http1_engine)?,
    };
    // Zero is allowed: it means "do not wait for in-flight requests".
    let drain_timeout = duration(&raw.drain_timeout, "drain_timeout")?;
    let version_header = if raw.version_header.get_ref().is_empty() {
        None
    } else {
        Some(header_name(&raw.version_header, "`version_header`")?)
    };
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .map(trusted_proxy)
        .collect::<Checked<Vec<_>>>()?;
    let tls = match &raw.tls {
        Some(tls) => Some(tls_config(tls, files)?),
        None => None,
    };
    Ok(ProxyConfig {
        listen,
        workers,
        connect_timeout,
        request_timeout,
        idle_timeout,
        header_read_timeout,
        release_buffers_after,
        max_connections,
        max_header_bytes,
        retries,
        failover_to_primary: raw.failover_to_primary,
        fast_path: raw.fast_path,
        retry_budget,
        ejection,
        pool,
        drain_timeout,
        version_header,
        trusted_proxies,
        tls,
    })
}

/// `proxy.http1_engine`: `"canaryd"` or `"hyper"`.
fn http1_engine(value: &Spanned<String>) -> Checked<Http1Engine> {
    match value.get_ref().as_str() {
        "canaryd" => Ok(Http1Engine::Canaryd),
        "hyper" => Ok(Http1Engine::Hyper),
        other => Err(Issue::new(
            value.span(),
            format!("`http1_engine` must be \"canaryd\" or \"hyper\", got {other:?}"),
        )),
    }
}

fn ejection_config(raw: &RawProxy) -> Checked<EjectionConfig> {
    let failures = int_in(&raw.ejection_failures, "ejection_failures", 0, 1_000_000)?;
    let base = positive_duration(&raw.ejection_base_time, "ejection_base_time")?;
    let max = positive_duration(&raw.ejection_max_time, "ejection_max_time")?;
    if max < base {
        return Err(Issue::new(
            raw.ejection_max_time.span(),
            "`ejection_max_time` must be at least `ejection_base_time`",
        ));
    }
    Ok(EjectionConfig {
        failures,
        base,
        max,
    })
}

/// A CIDR such as `10.0.0.0/8`, or a bare IP meaning that one address (/32 or /128).
fn trusted_proxy(value: &Spanned<String>) -> Checked<IpNet> {
    let text = value.get_ref().trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(Issue::new(
        value.span(),
        format!(
            "`trusted_proxies` entry {:?} is not a CIDR; write e.g. \"10.0.0.0/8\", \"fd00::/8\" or a single IP",
            value.get_ref()
        ),
    ))
}

fn admin_config(raw: &RawAdmin, base: &Path) -> Checked<AdminConfig> {
    let listen = socket_addr(&raw.listen, "admin.listen")?;
    let token_file = if raw.token_file.get_ref().is_empty() {
        None
    } else {
        Some(resolve(base, raw.token_file.get_ref()))
    };
    let public_url = if raw.public_url.get_ref().is_empty() {
        None
    } else {
        let url = raw
            .public_url
            .get_ref()
            .parse::<http::Uri>()
            .ok()
            .filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            })
            .ok_or_else(|| {
                Issue::new(
                    raw.public_url.span(),
                    format!(
                        "`admin.public_url` must be an absolute http:// or https:// URL such as \"https://canaryd.example.com\", got {:?}",
                        raw.public_url.get_ref()
                    ),
                )
            })?;
        Some(url)
    };
    Ok(AdminConfig {
        listen,
        token_file,
        public_url,
    })
}

fn state_config(raw: &RawState, base: &Path) -> Checked<StateConfig> {
    if raw.path.get_ref().is_empty() {
        return Err(Issue::new(
            raw.path.span(),
            "`state.path` must name a file (e.g. \"canaryd-state.json\")",
        ));
    }
    Ok(StateConfig {
        path: resolve(base, raw.path.get_ref()),
    })
}

fn log_config(raw: &RawLog) -> Checked<LogConfig> {
    let level = raw.level.get_ref();
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map_err(|e| {
            Issue::new(
                raw.level.span(),
                format!(
                    "`log.level` = {level:?} is not a log filter ({e}); use e.g. \"info\", \"debug\" or \"canaryd=debug,info\""
                ),
            )
        })?;
    let format = match raw.format.get_ref().as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(Issue::new(
                raw.format.span(),
                format!("`log.format` must be \"text\" or \"json\", got {other:?}"),
            ))
        }
    };
    Ok(LogConfig {
        level: level.clone(),
        format,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Files resolved against the working directory, and read.
    fn files() -> Files<'static> {
        Files {
            base: Path::new(""),
            read: true,
        }
    }

    fn sp<T>(v: T) -> Spanned<T> {
        Spanned::new(3..5, v)
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            duration(&sp("250ms".into()), "x").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration(&sp("5m".into()), "x").unwrap(),
            Duration::from_secs(300)
        );
        let issue = duration(&sp("10".into()), "connect_timeout").unwrap_err();
        assert_eq!(issue.span, 3..5);
        assert!(
            issue.message.contains("`connect_timeout` = \"10\""),
            "{}",
            issue.message
        );
        assert!(positive_duration(&sp("0s".into()), "interval").is_err());
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(int_in::<u8>(&sp(100), "weight", 0, 100).unwrap(), 100);
        let issue = int_in::<u8>(&sp(101), "weight", 0, 100).unwrap_err();
        assert_eq!(issue.message, "`weight` must be in 0..=100, got 101");
        let issue = int_in::<usize>(&sp(0), "max_connections", 1, i64::MAX).unwrap_err();
        assert_eq!(issue.message, "`max_connections` must be at least 1, got 0");
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_bare_ips() {
        assert_eq!(
            trusted_proxy(&sp("10.0.0.0/8".into())).unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            trusted_proxy(&sp("10.1.2.3".into())).unwrap().prefix_len(),
            32
        );
        assert_eq!(trusted_proxy(&sp("::1".into())).unwrap().prefix_len(), 128);
        assert!(trusted_proxy(&sp("10.0.0.0/33".into())).is_err());
        assert!(trusted_proxy(&sp("example.com".into())).is_err());
    }

    #[test]
    fn header_names_are_lower_cased() {
        let h = header_name(&sp("X-Canaryd-Version".into()), "`version_header`").unwrap();
        assert_eq!(h.as_str(), "x-canaryd-version");
        assert!(header_name(&sp("bad header".into()), "`version_header`").is_err());
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        assert_eq!(
            resolve(Path::new("/etc/c"), "s.json"),
            PathBuf::from("/etc/c/s.json")
        );
        assert_eq!(
            resolve(Path::new("/etc/c"), "/var/s.json"),
            PathBuf::from("/var/s.json")
        );
    }

    #[test]
    fn log_level_and_format_are_checked() {
        let raw = RawLog {
            level: sp("canaryd=debug,info".into()),
            format: sp("json".into()),
        };
        assert_eq!(log_config(&raw).unwrap().format, LogFormat::Json);
        let raw = RawLog {
            level: sp("info".into()),
            format: sp("yaml".into()),
        };
        assert!(log_config(&raw)
            .unwrap_err()
            .message
            .contains("\"text\" or \"json\""));
    }

    #[test]
    fn workers_zero_means_one_per_core() {
        let p = proxy_config(&RawProxy::default(), files()).unwrap();
        assert!(p.workers >= 1);
        assert_eq!(p.max_header_bytes, 65536);
    }

    #[test]
    fn small_header_buffer_explains_why() {
        let raw = RawProxy {
            max_header_bytes: sp(1024),
            ..RawProxy::default()
        };
        let issue = proxy_config(&raw, files()).unwrap_err();
        assert!(issue.message.contains("at least 8192"), "{}", issue.message);
        assert!(issue.message.contains("hyper"), "{}", issue.message);
    }
}
