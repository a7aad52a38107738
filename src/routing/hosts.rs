//! Finding the route of a request by host and longest path prefix (docs/routing.md#1-route).

use std::collections::HashMap;
use std::sync::Arc;

use super::Route;
use crate::config::HostPattern;

/// Routes indexed by host: exact hosts, then `*.` wildcards (longest suffix first), then routes
/// without hosts. Within each group, candidates are sorted by path prefix, longest first.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<Box<str>, Vec<usize>>,
    wildcard: Vec<(Box<str>, Vec<usize>)>,
    any_host: Vec<usize>,
}

/// Longest hostname we bother to lower-case on the stack (DNS names are at most 253 bytes).
const MAX_HOST: usize = 256;

impl RouteTable {
    /// Index routes by their host patterns.
    pub fn new(routes: Vec<(Arc<Route>, Vec<HostPattern>)>) -> Self {
        let mut table = RouteTable::default();
        for (index, (route, hosts)) in routes.into_iter().enumerate() {
            if hosts.is_empty() {
                table.any_host.push(index);
            }
            for host in hosts {
                match host {
                    HostPattern::Exact(h) => table
                        .exact
                        .entry(h.into_boxed_str())
                        .or_default()
                        .push(index),
                    HostPattern::Wildcard(suffix) => {
                        match table.wildcard.iter_mut().find(|(s, _)| **s == *suffix) {
                            Some((_, list)) => list.push(index),
                            None => table.wildcard.push((suffix.into_boxed_str(), vec![index])),
                        }
                    }
                }
            }
            table.routes.push(route);
        }
        let by_prefix = |routes: &[Arc<Route>], list: &mut Vec<usize>| {
            list.sort_by_key(|&i| std::cmp::Reverse(routes[i].path_prefix.len()));
        };
        for list in table.exact.values_mut() {
            by_prefix(&table.routes, list);
        }
        for (_, list) in table.wildcard.iter_mut() {
            by_prefix(&table.routes, list);
        }
        by_prefix(&table.routes, &mut table.any_host);
        table
            .wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table
    }

    /// Every route, in config order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route of a request. `authority` may carry a port; it is ignored. An exact host beats
    /// a wildcard, which beats a route without hosts; within a group the longest matching
    /// `path_prefix` wins, and a group with no matching prefix falls through to the next.
    pub fn find(&self, authority: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        let mut buf = [0u8; MAX_HOST];
        let host = authority
            .map(strip_port)
            .and_then(|h| lowercase(h, &mut buf));
        let longest = |list: &[usize]| {
            list.iter()
                .map(|&i| &self.routes[i])
                .find(|r| path.starts_with(&*r.path_prefix))
        };
        if let Some(host) = host {
            if let Some(route) = self.exact.get(host).and_then(|l| longest(l)) {
                return Some(route);
            }
            for (suffix, list) in &self.wildcard {
                // "*.example.com" needs at least one label before the suffix.
                if host.len() > suffix.len() && host.ends_with(&**suffix) {
                    if let Some(route) = longest(list) {
                        return Some(route);
                    }
                }
            }
        }
        longest(&self.any_host)
    }
}

/// The host part of an authority: `[v6]:port` → `[v6]`, `name:port` → `name`, a trailing dot
/// dropped.
pub fn strip_port(authority: &str) -> &str {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Lower-case a host without allocating; `None` if it is too long or not valid UTF-8.
fn lowercase<'b>(host: &str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let bytes = host.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadBalancing;
    use crate::metrics::RouteMetrics;
    use crate::routing::{Backend, Phase, RolloutView};

    fn route(name: &str, prefix: &str) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            path_prefix: prefix.into(),
            primary: Arc::new(Backend::new("v1".into(), vec![], LoadBalancing::P2c)),
            canary: None,
            rollout: RolloutView {
                phase: Phase::Idle,
                weight: 0,
            },
            matches: vec![],
            sticky: None,
            mirror: None,
            metrics: Arc::new(RouteMetrics::default()),
            failures: Default::default(),
        })
    }

    fn exact(h: &str) -> HostPattern {
        HostPattern::Exact(h.into())
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            (route("any-root", "/"), vec![]),
            (route("shop-root", "/"), vec![exact("shop.example.com")]),
            (route("shop-api", "/api"), vec![exact("shop.example.com")]),
            (
                route("wild", "/"),
                vec![HostPattern::Wildcard(".example.com".into())],
            ),
            (
                route("wild-deep", "/"),
                vec![HostPattern::Wildcard(".eu.example.com".into())],
            ),
            (route("any-static", "/static"), vec![]),
            (
                route("admin-only", "/admin"),
                vec![exact("admin.example.com")],
            ),
        ])
    }

    fn find(t: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
        t.find(host, path).map(|r| r.name.to_string())
    }

    #[test]
    fn exact_beats_wildcard_beats_any_and_longest_prefix_wins() {
        let t = table();
        assert_eq!(
            find(&t, Some("shop.example.com"), "/api/x").as_deref(),
            Some("shop-api")
        );
        assert_eq!(
            find(&t, Some("SHOP.example.com:8080"), "/").as_deref(),
            Some("shop-root")
        );
        assert_eq!(
            find(&t, Some("shop.example.com."), "/a").as_deref(),
            Some("shop-root")
        );
        assert_eq!(
            find(&t, Some("x.example.com"), "/static").as_deref(),
            Some("wild")
        );
        assert_eq!(
            find(&t, Some("a.eu.example.com"), "/").as_deref(),
            Some("wild-deep")
        );
        assert_eq!(
            find(&t, Some("example.com"), "/static/a").as_deref(),
            Some("any-static")
        );
        assert_eq!(find(&t, None, "/").as_deref(), Some("any-root"));
        // An exact host whose prefixes do not match falls through to the wildcard.
        assert_eq!(
            find(&t, Some("admin.example.com"), "/x").as_deref(),
            Some("wild")
        );
    }

    #[test]
    fn no_match_is_none() {
        let t = RouteTable::new(vec![(route("api", "/api"), vec![exact("a.test")])]);
        assert_eq!(find(&t, Some("a.test"), "/other"), None);
        assert_eq!(find(&t, Some("b.test"), "/api"), None);
    }

    #[test]
    fn strip_port_handles_v6_and_names() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
