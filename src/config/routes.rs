//! The rules of SPEC section 2 that concern `[[route]]` tables: names, hosts, prefixes,
//! endpoints, the canary and its analysis schedule and metrics, match rules, sticky keys,
//! mirroring and webhooks — and the rules between routes (unique names, no two routes on the
//! same host and `path_prefix`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use http::Method;
use regex::Regex;
use toml::Spanned;

use super::error::Issue;
use super::raw::{
    RawAnalysis, RawCanary, RawMatch, RawMatchValue, RawMetric, RawMirror, RawRoute, RawSticky,
    RawWebhook,
};
use super::types::{
    AnalysisConfig, CanaryConfig, EndpointAddr, HostPattern, LoadBalancing, MatchRule, MetricCheck,
    MirrorConfig, RouteConfig, Steps, StickyKey, ValueMatch, Version, VersionConfig, WebhookConfig,
    WebhookKind,
};
use super::validate::{header_name, int_in, positive_duration, span_or, Checked};

/// Validates one `[[route]]` on its own (rules between routes are in [`conflicts`]).
pub(crate) fn route_config(raw: &Spanned<RawRoute>) -> Checked<RouteConfig> {
    let r = raw.get_ref();
    let name = route_name(&r.name)?;
    let hosts = r
        .hosts
        .iter()
        .map(host_pattern)
        .collect::<Checked<Vec<_>>>()?;
    let path_prefix = r.path_prefix.get_ref();
    if !path_prefix.starts_with('/') {
        return Err(Issue::new(
            r.path_prefix.span(),
            format!("`path_prefix` must start with '/', got {path_prefix:?}"),
        ));
    }
    let p = r.primary.get_ref();
    let primary = version_config(p.revision.clone(), &p.endpoints, &p.load_balancing)?;

    let Some(canary_raw) = &r.canary else {
        // Everything below steers traffic to a canary; without one it would silently do nothing.
        if let Some(span) = first_canary_only_table(r) {
            return Err(Issue::new(
                span.0,
                format!(
                    "{} needs a [route.canary] in route {name:?}; add one or remove this table",
                    span.1
                ),
            ));
        }
        return Ok(RouteConfig {
            name,
            hosts,
            path_prefix: path_prefix.clone(),
            primary,
            canary: None,
            analysis: None,
            matches: Vec::new(),
            sticky: None,
            mirror: None,
            webhooks: webhooks(&r.webhooks)?,
        });
    };
    let canary = canary_config(canary_raw)?;
    let analysis = match &r.analysis {
        Some(a) => Some(analysis_config(a, canary_raw)?),
        None => None,
    };
    let matches = r
        .matches
        .iter()
        .map(match_rule)
        .collect::<Checked<Vec<_>>>()?;
    let sticky = match &r.sticky {
        Some(s) => Some(sticky_key(s)?),
        None => None,
    };
    let mirror = match &r.mirror {
        Some(m) => Some(mirror_config(m.get_ref())?),
        None => None,
    };
    Ok(RouteConfig {
        name,
        hosts,
        path_prefix: path_prefix.clone(),
        primary,
        canary: Some(canary),
        analysis,
        matches,
        sticky,
        mirror,
        webhooks: webhooks(&r.webhooks)?,
    })
}

/// The first table (in file order) that only makes sense with a canary, with its name.
fn first_canary_only_table(r: &RawRoute) -> Option<(Range<usize>, &'static str)> {
    let mut found: Vec<(Range<usize>, &'static str)> = Vec::new();
    if let Some(a) = &r.analysis {
        found.push((a.span(), "[route.analysis]"));
    }
    if let Some(m) = r.matches.first() {
        found.push((m.span(), "[[route.match]]"));
    }
    if let Some(s) = &r.sticky {
        found.push((s.span(), "[route.sticky]"));
    }
    if let Some(m) = &r.mirror {
        found.push((m.span(), "[route.mirror]"));
    }
    found.into_iter().min_by_key(|(span, _)| span.start)
}

/// A route name: `[a-z0-9-]+` (it appears in URLs, metric labels and CLI arguments).
fn route_name(name: &Spanned<String>) -> Checked<String> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(n.clone())
    } else {
        Err(Issue::new(
            name.span(),
            format!("route name {n:?} must be non-empty and use only a-z, 0-9 and '-'"),
        ))
    }
}

/// A DNS name: dot-separated labels of letters, digits and '-', not starting or ending in '-'.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A `hosts` entry: `shop.example.com` or `*.example.com`, lower-cased, without port.
pub(crate) fn host_pattern(value: &Spanned<String>) -> Checked<HostPattern> {
    let host = value.get_ref().to_ascii_lowercase();
    let bad = |why: &str| {
        Issue::new(
            value.span(),
            format!("`hosts` entry {:?} {why}", value.get_ref()),
        )
    };
    if host.is_empty() {
        return Err(bad(
            "is empty; remove it (an empty `hosts` list matches any host)",
        ));
    }
    if host.contains(':') {
        return Err(bad(
            "has a port; write the host alone, the port is ignored when matching",
        ));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if is_hostname(suffix) {
            return Ok(HostPattern::Wildcard(format!(".{suffix}")));
        }
    } else if !host.contains('*') && is_hostname(&host) {
        return Ok(HostPattern::Exact(host));
    }
    if host.contains('*') {
        Err(bad(
            "is not a valid pattern; the only wildcard allowed is a leading \"*.\" as in \"*.example.com\"",
        ))
    } else {
        Err(bad(
            "is not a valid host name (letters, digits, '-' and '.')",
        ))
    }
}

/// An endpoint: `IP:port`, `[IPv6]:port` or `hostname:port`.
fn endpoint(value: &Spanned<String>) -> Checked<EndpointAddr> {
    let text = value.get_ref();
    let bad = |why: &str| {
        Issue::new(
            value.span(),
            format!("endpoint {text:?} {why}; write IP:port, [IPv6]:port or hostname:port"),
        )
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("is not a bracketed IPv6 address with a port"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("has an invalid IPv6 address"))?;
        (ip.to_string(), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        if host.contains(':') {
            return Err(bad("is an IPv6 address without brackets"));
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_hostname(host) {
            return Err(bad("has an invalid host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(bad("has an invalid port (1..=65535)")),
    };
    Ok(EndpointAddr { host, port })
}

fn load_balancing(value: &Spanned<String>) -> Checked<LoadBalancing> {
    match value.get_ref().as_str() {
        "p2c" => Ok(LoadBalancing::P2c),
        "round-robin" => Ok(LoadBalancing::RoundRobin),
        other => Err(Issue::new(
            value.span(),
            format!("`load_balancing` must be \"p2c\" or \"round-robin\", got {other:?}"),
        )),
    }
}

fn version_config(
    revision: String,
    endpoints: &Spanned<Vec<Spanned<String>>>,
    lb: &Spanned<String>,
) -> Checked<VersionConfig> {
    if endpoints.get_ref().is_empty() {
        return Err(Issue::new(
            endpoints.span(),
            "`endpoints` must list at least one endpoint, e.g. [\"10.0.0.11:8080\"]",
        ));
    }
    let endpoints = endpoints
        .get_ref()
        .iter()
        .map(endpoint)
        .collect::<Checked<Vec<_>>>()?;
    Ok(VersionConfig {
        revision,
        endpoints,
        load_balancing: load_balancing(lb)?,
    })
}

fn canary_config(raw: &Spanned<RawCanary>) -> Checked<CanaryConfig> {
    let c = raw.get_ref();
    let version = version_config(
        c.revision.get_ref().clone(),
        &c.endpoints,
        &c.load_balancing,
    )?;
    let weight = int_in(&c.weight, "weight", 0, 100)?;
    Ok(CanaryConfig { version, weight })
}

fn analysis_config(
    raw: &Spanned<RawAnalysis>,
    canary: &Spanned<RawCanary>,
) -> Checked<AnalysisConfig> {
    let a = raw.get_ref();
    let c = canary.get_ref();
    if c.revision.get_ref().trim().is_empty() {
        return Err(Issue::new(
            span_or(c.revision.span(), canary.span()),
            "[route.analysis] needs `canary.revision`: set it to the revision being rolled out (e.g. \"v1.5.0\")",
        ));
    }
    if *c.weight.get_ref() != 0 {
        return Err(Issue::new(
            c.weight.span(),
            "`weight` is a fixed split and cannot be combined with [route.analysis], which sets the weight itself; remove it",
        ));
    }
    let interval = positive_duration(&a.interval, "interval")?;
    let threshold = int_in(&a.threshold, "threshold", 1, i64::from(u32::MAX))?;
    let steps = steps(raw)?;
    let min_requests = int_in(&a.min_requests, "min_requests", 1, i64::MAX)?;
    let inconclusive_limit = int_in(
        &a.inconclusive_limit,
        "inconclusive_limit",
        1,
        i64::from(u32::MAX),
    )?;
    let metrics = a.metrics.iter().map(metric).collect::<Checked<Vec<_>>>()?;
    Ok(AnalysisConfig {
        interval,
        threshold,
        steps,
        min_requests,
        inconclusive_limit,
        metrics,
    })
}

/// Exactly one schedule: `step_weight` + `max_weight`, `step_weights`, or `iterations`.
fn steps(raw: &Spanned<RawAnalysis>) -> Checked<Steps> {
    let a = raw.get_ref();
    let mut ways: Vec<(Range<usize>, &str)> = Vec::new();
    if let Some(sw) = &a.step_weights {
        ways.push((sw.span(), "`step_weights`"));
    }
    let pair_span = [&a.step_weight, &a.max_weight]
        .into_iter()
        .flatten()
        .map(|v| v.span())
        .min_by_key(|s| s.start);
    if let Some(span) = pair_span {
        ways.push((span, "`step_weight`/`max_weight`"));
    }
    if let Some(it) = &a.iterations {
        ways.push((it.span(), "`iterations`"));
    }
    ways.sort_by_key(|(span, _)| span.start);
    match ways.as_slice() {
        [] => {
            return Err(Issue::new(
                raw.span(),
                "[route.analysis] needs a schedule: `step_weight` + `max_weight`, `step_weights`, or `iterations`",
            ))
        }
        [_] => {}
        [(_, first), (span, second), ..] => {
            return Err(Issue::new(
                span.clone(),
                format!("{second} cannot be combined with {first}; choose one schedule"),
            ))
        }
    }

    if let Some(list) = &a.step_weights {
        if list.get_ref().is_empty() {
            return Err(Issue::new(
                list.span(),
                "`step_weights` must list at least one weight, e.g. [1, 5, 10, 25, 50]",
            ));
        }
        let mut weights: Vec<u8> = Vec::with_capacity(list.get_ref().len());
        for w in list.get_ref() {
            let value: u8 = int_in(w, "step_weights entry", 1, 100)?;
            if let Some(&prev) = weights.last() {
                if value <= prev {
                    return Err(Issue::new(
                        w.span(),
                        format!("`step_weights` must be strictly increasing, but {value} follows {prev}"),
                    ));
                }
            }
            weights.push(value);
        }
        return Ok(Steps::Weights(weights));
    }
    if let Some(it) = &a.iterations {
        return Ok(Steps::Iterations(int_in(
            it,
            "iterations",
            1,
            i64::from(u32::MAX),
        )?));
    }
    match (&a.step_weight, &a.max_weight) {
        (Some(step), Some(max)) => {
            let step: u8 = int_in(step, "step_weight", 1, 100)?;
            let max_value = *max.get_ref();
            if !(i64::from(step)..=100).contains(&max_value) {
                return Err(Issue::new(
                    max.span(),
                    format!("`max_weight` must be in {step}..=100 (at least `step_weight`), got {max_value}"),
                ));
            }
            let max: u8 = int_in(max, "max_weight", i64::from(step), 100)?;
            Ok(Steps::Weights(expand_steps(step, max)))
        }
        (Some(step), None) => Err(Issue::new(
            step.span(),
            "`step_weight` needs `max_weight` (the weight whose passed check promotes); set both",
        )),
        (None, Some(max)) => Err(Issue::new(
            max.span(),
            "`max_weight` needs `step_weight` (the increment per passed check); set both",
        )),
        // Unreachable: exactly one schedule exists and it is this pair.
        (None, None) => Err(Issue::new(raw.span(), "[route.analysis] needs a schedule")),
    }
}

/// `step`, `2*step`, … below `max`, then `max` itself: 10/50 → [10,20,30,40,50]; 30/50 → [30,50].
pub(crate) fn expand_steps(step: u8, max: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = step;
    while w < max {
        out.push(w);
        w = w.saturating_add(step);
    }
    out.push(max);
    out
}

/// A finite number in `min..=max`.
fn number(
    value: f64,
    span: Range<usize>,
    key: &str,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Checked<f64> {
    if value.is_finite() && ok(value) {
        Ok(value)
    } else {
        Err(Issue::new(
            span,
            format!("`{key}` must be {rule}, got {value}"),
        ))
    }
}

fn metric(raw: &Spanned<RawMetric>) -> Checked<MetricCheck> {
    let m = raw.get_ref();
    let not_for = |v: Range<usize>, key: &str, name: &str| {
        Issue::new(
            v,
            format!("`{key}` does not apply to metric {name:?}; remove it"),
        )
    };
    match m.name.get_ref().as_str() {
        "request-success-rate" => {
            let threshold = match m.threshold.get_ref() {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => {
                    return Err(Issue::new(
                        m.threshold.span(),
                        "`threshold` of request-success-rate is a percentage such as 99.0",
                    ))
                }
            };
            let threshold = number(
                threshold,
                m.threshold.span(),
                "threshold",
                |v| (0.0..=100.0).contains(&v),
                "a percentage in 0..=100",
            )?;
            let max_drop = match &m.max_drop {
                Some(d) => Some(number(
                    d.get_ref().0,
                    d.span(),
                    "max_drop",
                    |v| v >= 0.0,
                    "at least 0",
                )?),
                None => None,
            };
            if let Some(q) = &m.quantile {
                return Err(not_for(q.span(), "quantile", "request-success-rate"));
            }
            if let Some(r) = &m.max_ratio {
                return Err(not_for(r.span(), "max_ratio", "request-success-rate"));
            }
            Ok(MetricCheck::SuccessRate {
                threshold,
                max_drop,
            })
        }
        "request-duration" => {
            let threshold = match m.threshold.get_ref() {
                toml::Value::String(s) => {
                    positive_duration(&Spanned::new(m.threshold.span(), s.clone()), "threshold")?
                }
                _ => {
                    return Err(Issue::new(
                        m.threshold.span(),
                        "`threshold` of request-duration is a duration such as \"500ms\"",
                    ))
                }
            };
            let quantile = match &m.quantile {
                Some(q) => number(
                    q.get_ref().0,
                    q.span(),
                    "quantile",
                    |v| v > 0.0 && v < 1.0,
                    "in the open interval (0, 1), e.g. 0.99",
                )?,
                None => 0.99,
            };
            let max_ratio = match &m.max_ratio {
                Some(r) => Some(number(
                    r.get_ref().0,
                    r.span(),
                    "max_ratio",
                    |v| v > 0.0,
                    "above 0",
                )?),
                None => None,
            };
            if let Some(d) = &m.max_drop {
                return Err(not_for(d.span(), "max_drop", "request-duration"));
            }
            Ok(MetricCheck::Duration {
                threshold,
                quantile,
                max_ratio,
            })
        }
        other => Err(Issue::new(
            m.name.span(),
            format!(
                "unknown metric {other:?}; use \"request-success-rate\" or \"request-duration\""
            ),
        )),
    }
}

fn match_rule(raw: &Spanned<RawMatch>) -> Checked<MatchRule> {
    let m = raw.get_ref();
    if m.headers.0.is_empty() && m.cookies.0.is_empty() {
        return Err(Issue::new(
            raw.span(),
            "a [[route.match]] rule needs at least one entry in `headers` or `cookies`",
        ));
    }
    let headers = m
        .headers
        .0
        .iter()
        .map(|(name, value)| Ok((header_name(name, "match header")?, value_match(value)?)))
        .collect::<Checked<Vec<_>>>()?;
    let cookies = m
        .cookies
        .0
        .iter()
        .map(|(name, value)| Ok((cookie_name(name, "match cookie")?, value_match(value)?)))
        .collect::<Checked<Vec<_>>>()?;
    let to = match m.to.get_ref().as_str() {
        "canary" => Version::Canary,
        "primary" => Version::Primary,
        other => {
            return Err(Issue::new(
                m.to.span(),
                format!("`to` must be \"canary\" or \"primary\", got {other:?}"),
            ))
        }
    };
    Ok(MatchRule {
        headers,
        cookies,
        to,
    })
}

/// A cookie name: an RFC 6265 token (visible ASCII without separators).
fn cookie_name(value: &Spanned<String>, what: &str) -> Checked<String> {
    let name = value.get_ref();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok {
        Ok(name.clone())
    } else {
        Err(Issue::new(
            value.span(),
            format!("{what} {name:?} is not a valid cookie name"),
        ))
    }
}

fn value_match(raw: &Spanned<RawMatchValue>) -> Checked<ValueMatch> {
    let table = match raw.get_ref() {
        RawMatchValue::Plain(s) => return Ok(ValueMatch::Exact(s.clone())),
        RawMatchValue::Table(t) => t,
    };
    let given = [&table.exact, &table.prefix, &table.regex]
        .into_iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(Issue::new(
            raw.span(),
            "a match condition needs exactly one of `exact`, `prefix` or `regex`",
        ));
    }
    if let Some(v) = &table.exact {
        return Ok(ValueMatch::Exact(v.get_ref().clone()));
    }
    if let Some(v) = &table.prefix {
        return Ok(ValueMatch::Prefix(v.get_ref().clone()));
    }
    match &table.regex {
        Some(v) => Regex::new(v.get_ref()).map(ValueMatch::Regex).map_err(|e| {
            Issue::new(
                v.span(),
                format!("invalid regex {:?}: {}", v.get_ref(), regex_reason(&e)),
            )
        }),
        None => Err(Issue::new(
            raw.span(),
            "a match condition needs `exact`, `prefix` or `regex`",
        )),
    }
}

/// The regex crate prints a multi-line diagram; keep the one line that says what is wrong so
/// the message stays on the `FILE:LINE:COL:` line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

fn sticky_key(raw: &Spanned<RawSticky>) -> Checked<StickyKey> {
    let s = raw.get_ref();
    match (&s.cookie, &s.header) {
        (Some(c), None) => Ok(StickyKey::Cookie(cookie_name(c, "sticky cookie")?)),
        (None, Some(h)) => Ok(StickyKey::Header(header_name(h, "sticky header")?)),
        (Some(c), Some(h)) => Err(Issue::new(
            if c.span().start > h.span().start {
                c.span()
            } else {
                h.span()
            },
            "[route.sticky] takes exactly one of `cookie` or `header`, not both",
        )),
        (None, None) => Err(Issue::new(
            raw.span(),
            "[route.sticky] needs `cookie` or `header`, e.g. cookie = \"session_id\"",
        )),
    }
}

/// The methods HTTP defines; a lower-case spelling of one of them is surely a typo, since
/// methods are case-sensitive.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn mirror_config(m: &RawMirror) -> Checked<MirrorConfig> {
    let percent = int_in(&m.percent, "percent", 0, 100)?;
    let methods = m
        .methods
        .iter()
        .map(|v| {
            let text = v.get_ref();
            let upper = text.to_ascii_uppercase();
            if upper != *text && STANDARD_METHODS.contains(&upper.as_str()) {
                return Err(Issue::new(
                    v.span(),
                    format!("HTTP methods are case-sensitive; write {upper:?}, not {text:?}"),
                ));
            }
            Method::from_bytes(text.as_bytes())
                .map_err(|_| Issue::new(v.span(), format!("{text:?} is not a valid HTTP method")))
        })
        .collect::<Checked<Vec<_>>>()?;
    let max_body_bytes = int_in(&m.max_body_bytes, "max_body_bytes", 0, i64::MAX)?;
    Ok(MirrorConfig {
        percent,
        methods,
        max_body_bytes,
    })
}

fn webhooks(raw: &[Spanned<RawWebhook>]) -> Checked<Vec<WebhookConfig>> {
    raw.iter().map(|w| webhook(w.get_ref())).collect()
}

fn webhook(w: &RawWebhook) -> Checked<WebhookConfig> {
    let kind = WebhookKind::ALL
        .into_iter()
        .find(|k| k.as_str() == w.kind.get_ref())
        .ok_or_else(|| {
            let names: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
            Issue::new(
                w.kind.span(),
                format!(
                    "unknown webhook type {:?}; use one of {}",
                    w.kind.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
    let url = w
        .url
        .get_ref()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| {
            Issue::new(
                w.url.span(),
                format!(
                    "webhook `url` must be an absolute http:// URL such as \"http://127.0.0.1:7000/hook\", got {:?}",
                    w.url.get_ref()
                ),
            )
        })?;
    let timeout = positive_duration(&w.timeout, "timeout")?;
    Ok(WebhookConfig {
        kind,
        url,
        timeout,
        metadata: w.metadata.clone(),
    })
}

/// Rules between routes: unique names, and no two routes on the same host and `path_prefix`
/// (hosts compared case-insensitively; two routes without hosts and with the same prefix
/// collide too). Issues point at the later route.
pub(crate) fn conflicts(routes: &[Spanned<RawRoute>]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut names: HashMap<&str, ()> = HashMap::new();
    // (lower-cased host or None for "any host", path_prefix) -> (route index, route name)
    let mut claimed: HashMap<(Option<String>, &str), (usize, &str)> = HashMap::new();
    for (index, route) in routes.iter().enumerate() {
        let r = route.get_ref();
        let name = r.name.get_ref().as_str();
        if names.insert(name, ()).is_some() {
            issues.push(Issue::new(
                r.name.span(),
                format!("duplicate route name {name:?}: route names must be unique"),
            ));
        }
        let prefix = r.path_prefix.get_ref().as_str();
        let keys: Vec<(Option<String>, Range<usize>)> = if r.hosts.is_empty() {
            vec![(None, span_or(r.path_prefix.span(), route.span()))]
        } else {
            r.hosts
                .iter()
                .map(|h| (Some(h.get_ref().to_ascii_lowercase()), h.span()))
                .collect()
        };
        for (host, span) in keys {
            match claimed.get(&(host.clone(), prefix)) {
                Some((other, _)) if *other == index => {}
                Some((_, other_name)) => {
                    let what = match &host {
                        Some(h) => format!("host {h:?}"),
                        None => "any host (no `hosts`)".to_owned(),
                    };
                    issues.push(Issue::new(
                        span,
                        format!(
                            "route {name:?} overlaps route {other_name:?}: both serve {what} with path_prefix {prefix:?}; change `hosts` or `path_prefix`"
                        ),
                    ));
                }
                None => {
                    claimed.insert((host, prefix), (index, name));
                }
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Spanned<String> {
        Spanned::new(1..2, s.to_owned())
    }

    #[test]
    fn steps_expand_up_to_and_including_max() {
        assert_eq!(expand_steps(10, 50), [10, 20, 30, 40, 50]);
        assert_eq!(expand_steps(30, 50), [30, 50]);
        assert_eq!(expand_steps(50, 50), [50]);
        assert_eq!(expand_steps(1, 3), [1, 2, 3]);
        assert_eq!(expand_steps(100, 100), [100]);
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            host_pattern(&sp("Shop.Example.com")).unwrap(),
            HostPattern::Exact("shop.example.com".into())
        );
        assert_eq!(
            host_pattern(&sp("*.example.com")).unwrap(),
            HostPattern::Wildcard(".example.com".into())
        );
        for bad in [
            "shop.example.com:80",
            "a.*.com",
            "*example.com",
            "*",
            "",
            "a b",
            "-a.com",
        ] {
            assert!(host_pattern(&sp(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints() {
        let e = endpoint(&sp("10.0.0.1:8080")).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.1", 8080));
        let e = endpoint(&sp("[::1]:80")).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 80));
        assert_eq!(e.to_string(), "[::1]:80");
        let e = endpoint(&sp("Shop-Primary.default.svc:8080")).unwrap();
        assert_eq!(e.host, "shop-primary.default.svc");
        for bad in [
            "10.0.0.1",
            "::1:80",
            "host:0",
            "host:65536",
            "ho st:80",
            "[::1]80",
            ":80",
            "[zz]:80",
        ] {
            assert!(endpoint(&sp(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn route_names() {
        assert!(route_name(&sp("shop-2")).is_ok());
        for bad in ["", "Shop", "shop_2", "shop 2"] {
            assert!(route_name(&sp(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regex_errors_fit_on_one_line() {
        let Err(e) = Regex::new("(unclosed") else {
            panic!("regex compiled")
        };
        let reason = regex_reason(&e);
        assert!(!reason.contains('\n'));
        assert!(reason.contains("unclosed group"), "{reason}");
    }

    #[test]
    fn cookie_names() {
        assert!(cookie_name(&sp("session_id"), "c").is_ok());
        assert!(cookie_name(&sp("a=b"), "c").is_err());
        assert!(cookie_name(&sp(""), "c").is_err());
    }
}
