//! What one finished request reports, and the per-route, per-version counters it lands in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::duration::DurationHistogram;
use super::retry_budget::{RetryBudget, RetryOutcome};
use super::window::{VersionSample, WindowShards};
use crate::config::{RetryBudgetConfig, Version, WebhookKind};
use crate::upstream::{ConnectFailure, CONNECT_FAILURES};

/// How an upstream exchange failed when the proxy had to answer for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect (after retries), for this reason: the proxy answered 502.
    Connect(ConnectFailure),
    /// No response head within `request_timeout`: the proxy answered 504.
    Timeout,
    /// The upstream broke the exchange (reset, invalid framing, died mid-body).
    Reset,
}

impl UpstreamErrorKind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect(_) => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
        }
    }

    fn index(self) -> usize {
        match self {
            UpstreamErrorKind::Connect(_) => 0,
            UpstreamErrorKind::Timeout => 1,
            UpstreamErrorKind::Reset => 2,
        }
    }
}

/// The result of one request as the analysis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status and the response completed; judged by the
    /// default rule (a 5xx is a failure).
    Status(u16),
    /// The upstream answered and the response completed, judged by the route's
    /// `[route.failures]` (docs/rollouts.md#what-counts-as-a-failure).
    Answer(Answer),
    /// The proxy answered for a broken upstream (502/504) or the upstream broke mid-response.
    UpstreamError(UpstreamErrorKind),
    /// The client went away before the response completed: neither success nor failure.
    ClientGone,
}

/// A completed answer, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Whether it counts against the version.
    pub failed: bool,
    /// The `grpc-status` (0..=16) of a gRPC call answered with HTTP 200.
    pub grpc_code: Option<u8>,
}

/// The `outcome` label values, by index.
pub const OUTCOMES: [&str; 2] = ["success", "failure"];

/// Whether an outcome counts for or against a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// Any status below 500.
    Success,
    /// A 5xx from the upstream, or an upstream error the proxy answered for.
    Failure,
    /// Not judged (client went away).
    Ignored,
}

impl Outcome {
    /// Success, failure, or not judged.
    pub fn class(self) -> OutcomeClass {
        match self {
            Outcome::Status(s) if s >= 500 => OutcomeClass::Failure,
            Outcome::Status(_) => OutcomeClass::Success,
            Outcome::Answer(a) if a.failed => OutcomeClass::Failure,
            Outcome::Answer(_) => OutcomeClass::Success,
            Outcome::UpstreamError(_) => OutcomeClass::Failure,
            Outcome::ClientGone => OutcomeClass::Ignored,
        }
    }

    /// Index into the `code_class` counters (`1xx`..`5xx` → 0..4); proxy errors are 5xx.
    fn code_class_index(self) -> Option<usize> {
        match self {
            Outcome::Status(s) | Outcome::Answer(Answer { status: s, .. }) => {
                Some(usize::from((s / 100).clamp(1, 5)) - 1)
            }
            Outcome::UpstreamError(_) => Some(4),
            Outcome::ClientGone => None,
        }
    }
}

/// Counters of one version of one route. Every field is a plain atomic so recording never locks.
#[derive(Debug, Default)]
pub struct VersionMetrics {
    /// By `code_class` and `outcome` (success, failure): every answer but gRPC ones.
    by_code_class: [[AtomicU64; 2]; 5],
    /// gRPC calls answered with HTTP 200, by `grpc-status` and `outcome`.
    by_grpc_code: [[AtomicU64; 2]; 17],
    upstream_errors: [AtomicU64; 3],
    /// The `connect` upstream errors again, by [`ConnectFailure`].
    connect_failures: [AtomicU64; CONNECT_FAILURES.len()],
    client_gone: AtomicU64,
    /// `canaryd_request_duration_seconds`: every request that ended with a status or an
    /// upstream error (not clients that went away, whose latency says nothing of the upstream).
    duration: DurationHistogram,
    window: WindowShards,
}

impl VersionMetrics {
    fn record(&self, outcome: Outcome, latency: Duration) {
        let failed = usize::from(outcome.class() == OutcomeClass::Failure);
        match (outcome, outcome.code_class_index()) {
            (
                Outcome::Answer(Answer {
                    grpc_code: Some(code),
                    ..
                }),
                _,
            ) => {
                if let Some(counters) = self.by_grpc_code.get(usize::from(code)) {
                    counters[failed].fetch_add(1, Ordering::Relaxed);
                }
            }
            (_, Some(i)) => {
                self.by_code_class[i][failed].fetch_add(1, Ordering::Relaxed);
            }
            (_, None) => {
                self.client_gone.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Outcome::UpstreamError(kind) = outcome {
            self.upstream_errors[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        if outcome != Outcome::ClientGone {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.duration.observe_micros(micros);
        }
        let connect = match outcome {
            Outcome::UpstreamError(UpstreamErrorKind::Connect(failure)) => {
                self.connect_failures[failure.index()].fetch_add(1, Ordering::Relaxed);
                Some(failure)
            }
            _ => None,
        };
        match outcome.class() {
            OutcomeClass::Success => self.window.record(false, None, latency),
            OutcomeClass::Failure => self.window.record(true, connect, latency),
            OutcomeClass::Ignored => {}
        }
    }

    /// Move the judged requests recorded since the last drain into `into`.
    pub fn drain_window(&self, into: &mut VersionSample) {
        self.window.drain_into(into);
    }

    /// Responses counted in a `code_class` (`1` for 1xx … `5` for 5xx), gRPC calls included
    /// (they are 2xx).
    pub fn code_class(&self, class: u8) -> u64 {
        let grpc = if class == 2 { self.grpc_calls() } else { 0 };
        self.code_class_outcome(class, false) + self.code_class_outcome(class, true) + grpc
    }

    /// Responses other than gRPC calls in a `code_class` with one `outcome`.
    pub fn code_class_outcome(&self, class: u8, failed: bool) -> u64 {
        match class {
            1..=5 => self.by_code_class[usize::from(class) - 1][usize::from(failed)]
                .load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// gRPC calls (answered with HTTP 200) that ended with this `grpc-status` and `outcome`.
    pub fn grpc_code_outcome(&self, code: u8, failed: bool) -> u64 {
        self.by_grpc_code
            .get(usize::from(code))
            .map_or(0, |c| c[usize::from(failed)].load(Ordering::Relaxed))
    }

    fn grpc_calls(&self) -> u64 {
        self.by_grpc_code
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Upstream errors with `kind`'s label (`connect`: every [`ConnectFailure`] alike).
    pub fn upstream_errors(&self, kind: UpstreamErrorKind) -> u64 {
        self.upstream_errors[kind.index()].load(Ordering::Relaxed)
    }

    /// Failed connects (answered 502) of one kind.
    pub fn connect_failures(&self, failure: ConnectFailure) -> u64 {
        self.connect_failures[failure.index()].load(Ordering::Relaxed)
    }

    /// Requests that ended with a status (any class), proxy-made ones included.
    pub fn requests(&self) -> u64 {
        self.by_code_class
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.grpc_calls()
    }

    /// Requests whose client went away before the response completed.
    pub fn client_gone(&self) -> u64 {
        self.client_gone.load(Ordering::Relaxed)
    }

    /// The request-duration histogram (requests with a status or an upstream error).
    pub fn duration(&self) -> &DurationHistogram {
        &self.duration
    }
}

/// The retry counters and the retry budget of one version: touched only after a connect
/// failure, or when an upstream did not process a request.
#[derive(Debug, Default)]
struct VersionRetries {
    /// `canaryd_retries_total` by [`RetryOutcome`].
    outcomes: [AtomicU64; 2],
    budget: RetryBudget,
    /// `canaryd_upstream_resends_total`.
    resent: AtomicU64,
}

/// The counters of one route, one set per version. Shared across routing snapshots by route name
/// so a reload never resets them.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    primary: VersionMetrics,
    canary: VersionMetrics,
    /// Primary, canary. Out of line: the retry path's state stays off the cache lines every
    /// request writes, and leaves the per-request counters' layout as it was.
    retries: Box<[VersionRetries; 2]>,
    /// `canaryd_webhook_failures_total` by notice type (`post-rollout`, `event`), written by
    /// the analysis, never by a request.
    undelivered: Box<[AtomicU64; 2]>,
}

/// The notice types whose failed deliveries are counted, in `canaryd_webhook_failures_total`
/// order.
pub const NOTICE_KINDS: [WebhookKind; 2] = [WebhookKind::PostRollout, WebhookKind::Event];

impl RouteMetrics {
    /// Count a notice that could not be delivered after every retry (other kinds are gates,
    /// whose "no" is an answer, not a failure, and are not counted).
    pub fn count_undelivered(&self, kind: WebhookKind) {
        if let Some(i) = NOTICE_KINDS.iter().position(|k| *k == kind) {
            self.undelivered[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notices of `kind` that could not be delivered, since start.
    pub fn undelivered(&self, kind: WebhookKind) -> u64 {
        NOTICE_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.undelivered[i].load(Ordering::Relaxed))
    }

    /// Start keeping check windows (latency histograms) for both versions: only routes under
    /// analysis are judged, so only they pay for histograms.
    pub fn enable_windows(&self) {
        self.primary.window.enable();
        self.canary.window.enable();
    }

    /// Move one version's judged requests recorded since the last drain into `into`.
    pub fn drain_window(&self, version: Version, into: &mut VersionSample) {
        self.version(version).drain_window(into);
    }

    /// The one hook every finished request goes through.
    #[inline]
    pub fn record(&self, version: Version, outcome: Outcome, latency: Duration) {
        self.version(version).record(outcome, latency);
    }

    /// The counters of one version.
    pub fn version(&self, version: Version) -> &VersionMetrics {
        match version {
            Version::Primary => &self.primary,
            Version::Canary => &self.canary,
        }
    }

    /// Ask a version's retry budget for one retry, after a connect failure, and count the
    /// answer. The budget's deposits are the requests the version finished (with a status, or
    /// whose client went away): the counters above, read only here.
    pub fn try_retry(&self, version: Version, config: &RetryBudgetConfig) -> bool {
        let counters = self.version(version);
        let finished = counters.requests() + counters.client_gone();
        let retries = self.version_retries(version);
        let granted = retries.budget.try_withdraw(finished, config);
        let outcome = if granted {
            RetryOutcome::Retried
        } else {
            RetryOutcome::BudgetExhausted
        };
        retries.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        granted
    }

    /// Retries a version's budget granted or refused (`canaryd_retries_total`).
    pub fn retries(&self, version: Version, outcome: RetryOutcome) -> u64 {
        self.version_retries(version).outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    /// Count a request sent again on another connection because the upstream had not processed
    /// it (docs/routing.md#4-forward): not a retry, and free of the retry budget.
    pub fn count_resend(&self, version: Version) {
        self.version_retries(version)
            .resent
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of a version sent again because the upstream had not processed them
    /// (`canaryd_upstream_resends_total`).
    pub fn resends(&self, version: Version) -> u64 {
        self.version_retries(version).resent.load(Ordering::Relaxed)
    }

    fn version_retries(&self, version: Version) -> &VersionRetries {
        match version {
            Version::Primary => &self.retries[0],
            Version::Canary => &self.retries[1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connect_reaches_the_check_window_with_its_kind() {
        let m = RouteMetrics::default();
        m.enable_windows();
        let dns = Outcome::UpstreamError(UpstreamErrorKind::Connect(ConnectFailure::Dns));
        m.record(Version::Canary, dns, Duration::ZERO);
        m.record(Version::Canary, dns, Duration::ZERO);
        let timeout = Outcome::UpstreamError(UpstreamErrorKind::Timeout);
        m.record(Version::Canary, timeout, Duration::ZERO);
        let mut window = VersionSample::default();
        m.drain_window(Version::Canary, &mut window);
        assert_eq!((window.requests, window.failures), (3, 3));
        assert_eq!(window.connect.of(ConnectFailure::Dns), 2);
        assert_eq!(
            window.connect.total(),
            2,
            "a response timeout is no connect failure"
        );
        let mut again = VersionSample::default();
        m.drain_window(Version::Canary, &mut again);
        assert_eq!(again.connect.total(), 0, "a drain empties the kinds too");
    }

    #[test]
    fn proxy_errors_are_5xx_failures_and_gone_clients_are_not_judged() {
        let m = RouteMetrics::default();
        m.record(
            Version::Canary,
            Outcome::Status(200),
            Duration::from_millis(1),
        );
        m.record(
            Version::Canary,
            Outcome::Status(503),
            Duration::from_millis(1),
        );
        m.record(
            Version::Canary,
            Outcome::UpstreamError(UpstreamErrorKind::Connect(ConnectFailure::Refused)),
            Duration::ZERO,
        );
        m.record(Version::Canary, Outcome::ClientGone, Duration::ZERO);
        let c = m.version(Version::Canary);
        assert_eq!(c.code_class(2), 1);
        assert_eq!(c.code_class(5), 2);
        assert_eq!(c.requests(), 3);
        assert_eq!(c.client_gone(), 1);
        let connect = UpstreamErrorKind::Connect(ConnectFailure::Timeout);
        assert_eq!(
            c.upstream_errors(connect),
            1,
            "every kind counts as `connect`"
        );
        assert_eq!(m.version(Version::Primary).requests(), 0);
        assert_eq!(Outcome::Status(404).class(), OutcomeClass::Success);
        assert_eq!(Outcome::Status(500).class(), OutcomeClass::Failure);
        assert_eq!(Outcome::ClientGone.class(), OutcomeClass::Ignored);
        let d = c.duration().snapshot();
        assert_eq!(
            d.count, 3,
            "the gone client is not in the duration histogram"
        );
        assert_eq!(d.cumulative[0], 3, "1 ms, 1 ms and 0 are all le=0.001");
        assert!((d.sum_seconds - 0.002).abs() < 1e-12);
    }
}
