//! `[route.failures]`: which answers the checks, the fast rollback, passive ejection and
//! `canaryd_requests_total{outcome}` count as failed requests
//! (docs/rollouts.md#what-counts-as-a-failure), and the rules that validate it.

use http::header::HeaderName;
use toml::Spanned;

use super::error::Issue;
use super::raw::RawFailures;
use super::validate::Checked;

/// The gRPC status code names of the gRPC specification, indexed by code.
pub const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// gRPC code 2: what a code outside the specification's range is read as.
const GRPC_UNKNOWN: u32 = 2;

/// The gRPC codes counted as failures when `grpc_codes` is not written: the server's faults,
/// as Envoy and Linkerd count them; the caller's mistakes (`INVALID_ARGUMENT`, `NOT_FOUND`, …)
/// are answers, not failures.
const DEFAULT_GRPC_CODES: [u32; 6] = [2, 4, 12, 13, 14, 15];

/// `[route.failures]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Bit `status - 100` for every failing HTTP status 100..=611.
    statuses: [u64; 8],
    /// Bit `code` for every failing gRPC status code 0..=16.
    grpc_codes: u32,
    /// Path prefixes served but never counted.
    pub ignore_paths: Vec<String>,
    /// The response header by which the upstream marks a request `failure` or `success`
    /// itself; removed before the response reaches the client.
    pub outcome_header: Option<HeaderName>,
}

impl Default for FailurePolicy {
    /// Every 5xx, and the server-fault gRPC codes.
    fn default() -> Self {
        let mut policy = FailurePolicy {
            statuses: [0; 8],
            grpc_codes: 0,
            ignore_paths: Vec::new(),
            outcome_header: None,
        };
        policy.add_class(5);
        for code in DEFAULT_GRPC_CODES {
            policy.grpc_codes |= 1 << code;
        }
        policy
    }
}

impl FailurePolicy {
    fn add_status(&mut self, status: u16) {
        if let Some(bit) = status.checked_sub(100).map(usize::from) {
            if let Some(word) = self.statuses.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    fn add_class(&mut self, class: u16) {
        for status in class * 100..class * 100 + 100 {
            self.add_status(status);
        }
    }

    /// Whether an HTTP answer with this status is a failure.
    #[inline]
    pub fn status_fails(&self, status: u16) -> bool {
        let Some(bit) = status.checked_sub(100).map(usize::from) else {
            return false;
        };
        self.statuses
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    /// Whether a gRPC call that ended with this `grpc-status` is a failure; a code outside the
    /// specification's range is read as `UNKNOWN`.
    #[inline]
    pub fn grpc_fails(&self, code: u32) -> bool {
        let code = if code < 17 { code } else { GRPC_UNKNOWN };
        self.grpc_codes & (1 << code) != 0
    }

    /// Whether requests to this path are never counted.
    #[inline]
    pub fn ignores(&self, path: &str) -> bool {
        self.ignore_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }
}

/// `[route.failures]`.
pub(crate) fn failure_policy(raw: &RawFailures) -> Checked<FailurePolicy> {
    let mut policy = FailurePolicy::default();
    if let Some(statuses) = &raw.http_statuses {
        policy.statuses = [0; 8];
        for value in statuses.get_ref() {
            match http_status_entry(value)? {
                StatusEntry::Class(class) => policy.add_class(class),
                StatusEntry::Single(status) => policy.add_status(status),
            }
        }
    }
    if let Some(codes) = &raw.grpc_codes {
        policy.grpc_codes = 0;
        for value in codes.get_ref() {
            policy.grpc_codes |= 1 << grpc_code(value)?;
        }
    }
    for prefix in &raw.ignore_paths {
        if !prefix.get_ref().starts_with('/') {
            return Err(Issue::new(
                prefix.span(),
                format!(
                    "`ignore_paths` entry {:?} must be a path prefix starting with '/', e.g. \"/healthz\"",
                    prefix.get_ref()
                ),
            ));
        }
        policy.ignore_paths.push(prefix.get_ref().clone());
    }
    if let Some(name) = &raw.outcome_header {
        if !name.get_ref().is_empty() {
            let header = HeaderName::from_bytes(name.get_ref().as_bytes()).map_err(|_| {
                Issue::new(
                    name.span(),
                    format!(
                        "`outcome_header` {:?} is not a valid header name",
                        name.get_ref()
                    ),
                )
            })?;
            policy.outcome_header = Some(header);
        }
    }
    Ok(policy)
}

enum StatusEntry {
    Class(u16),
    Single(u16),
}

/// `"5xx"`, `"4xx"` (any class 1xx..5xx) or a single status `"429"`.
fn http_status_entry(value: &Spanned<String>) -> Checked<StatusEntry> {
    let text = value.get_ref().to_ascii_lowercase();
    let class = text
        .strip_suffix("xx")
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (1..=5).contains(c));
    if let Some(class) = class {
        return Ok(StatusEntry::Class(class));
    }
    match text.parse::<u16>() {
        Ok(status) if (100..=599).contains(&status) => Ok(StatusEntry::Single(status)),
        _ => Err(Issue::new(
            value.span(),
            format!(
                "`http_statuses` entry {:?} is neither a status class (\"4xx\", \"5xx\") nor a status 100..=599 such as \"429\"",
                value.get_ref()
            ),
        )),
    }
}

/// A gRPC code by its name, as the gRPC specification spells it.
fn grpc_code(value: &Spanned<String>) -> Checked<u32> {
    let name = value.get_ref();
    GRPC_CODE_NAMES
        .iter()
        .position(|n| n == name)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            Issue::new(
                value.span(),
                format!(
                    "unknown gRPC code {name:?}; write one of {}",
                    GRPC_CODE_NAMES.join(", ")
                ),
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sp(v: &str) -> Spanned<String> {
        Spanned::new(1..2, v.to_owned())
    }

    #[test]
    fn defaults_are_5xx_and_the_server_fault_codes() {
        let p = FailurePolicy::default();
        assert!(p.status_fails(500) && p.status_fails(599));
        assert!(!p.status_fails(499) && !p.status_fails(200) && !p.status_fails(429));
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(p.grpc_fails(code), "{code}");
        }
        for code in [0, 1, 3, 5, 16] {
            assert!(!p.grpc_fails(code), "{code}");
        }
        assert!(p.grpc_fails(99), "an out-of-range code is UNKNOWN");
    }

    #[test]
    fn written_lists_replace_the_defaults() {
        let raw = RawFailures {
            http_statuses: Some(Spanned::new(0..1, vec![sp("5xx"), sp("429")])),
            grpc_codes: Some(Spanned::new(0..1, vec![sp("UNAVAILABLE")])),
            ignore_paths: vec![sp("/healthz")],
            outcome_header: Some(sp("X-Canaryd-Outcome")),
        };
        let p = failure_policy(&raw).unwrap();
        assert!(p.status_fails(429) && p.status_fails(503) && !p.status_fails(404));
        assert!(p.grpc_fails(14) && !p.grpc_fails(13));
        assert!(p.ignores("/healthz/live") && !p.ignores("/api"));
        assert_eq!(p.outcome_header.unwrap().as_str(), "x-canaryd-outcome");
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(http_status_entry(&sp("6xx")).is_err());
        assert!(http_status_entry(&sp("42")).is_err());
        assert!(grpc_code(&sp("unavailable")).is_err());
        assert_eq!(grpc_code(&sp("DATA_LOSS")).unwrap(), 15);
    }
}
