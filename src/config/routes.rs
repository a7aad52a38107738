//! The rules of docs/configuration.md#validation-rules that concern a `[[route]]` table as a whole: its name, hosts,
//! `path_prefix`, primary and canary endpoints, the tables that need a canary — and the rules
//! between routes (unique names, no two routes on the same host and `path_prefix`). The
//! analysis rules live in `analysis.rs`, match/sticky/mirror rules in `traffic.rs`, webhook rules in `webhook.rs`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use toml::Spanned;

use super::analysis::analysis_config;
use super::error::Issue;
use super::failures::{failure_policy, FailurePolicy};
use super::raw::{RawCanary, RawRoute};
use super::traffic::{match_rule, mirror_config, sticky_key};
use super::types::{
    CanaryConfig, EndpointAddr, HostPattern, LoadBalancing, RouteConfig, VersionConfig,
};
use super::upstream::upstream_transport;
use super::validate::{int_in, span_or, Checked, Files};
use super::webhook::webhooks;

/// Validates one `[[route]]` on its own (rules between routes are in [`conflicts`]).
pub(crate) fn route_config(raw: &Spanned<RawRoute>, files: Files<'_>) -> Checked<RouteConfig> {
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
    let primary = VersionConfig {
        transport: upstream_transport(&p.protocol, p.tls.as_ref(), files)?,
        ..primary
    };
    let failures = match &r.failures {
        Some(f) => failure_policy(f.get_ref())?,
        None => FailurePolicy::default(),
    };

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
            webhooks: webhooks(&r.webhooks, files)?,
            failures,
        });
    };
    let canary = canary_config(canary_raw, files)?;
    let analysis = match &r.analysis {
        Some(a) => Some(analysis_config(a, canary_raw, files)?),
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
        webhooks: webhooks(&r.webhooks, files)?,
        failures,
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
        // Filled in by `validate::parse_str`, which has the text to count lines in.
        endpoints_line: 0,
        load_balancing: load_balancing(lb)?,
        transport: Default::default(),
    })
}

fn canary_config(raw: &Spanned<RawCanary>, files: Files<'_>) -> Checked<CanaryConfig> {
    let c = raw.get_ref();
    let version = version_config(
        c.revision.get_ref().clone(),
        &c.endpoints,
        &c.load_balancing,
    )?;
    let version = VersionConfig {
        transport: upstream_transport(&c.protocol, c.tls.as_ref(), files)?,
        ..version
    };
    let weight = int_in(&c.weight, "weight", 0, 100)?;
    Ok(CanaryConfig { version, weight })
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Spanned<String> {
        Spanned::new(1..2, s.to_owned())
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
}
