//! Tests of the rollout state machine, by behaviour, and the support they share: a clock that
//! only moves when told, synthetic windows, and a small runner that follows the protocol the
//! real runner must follow (gates → check → confirm → reset or keep the window).

mod bake;
mod commands;
mod connect_causes;
mod events;
mod external;
#[cfg(feature = "fleet")]
mod fleet;
mod gates;
mod revisions;
mod runner;
mod schedule;
mod sequential;
mod strategies;
mod window;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    Decision, Event, GateAnswers, Hooks, Params, Rollout, StepEvidence, VersionWindow, Window,
};
use crate::config::{AnalysisConfig, JudgeKind, MetricCheck, SequentialConfig, Steps, WebhookKind};

/// 2023-11-14T22:13:20Z: any fixed instant will do; tests never read the real clock.
pub(super) const T0: u64 = 1_700_000_000;

pub(super) fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// The seed schedule (docs/rollouts.md#worked-example-the-seed-schedule): interval 60s, threshold 5, step 10 up to 50, at least 20
/// canary requests, 10 inconclusive checks, success rate >= 99%, P99 <= 500ms.
pub(super) fn seed() -> Params {
    Params {
        route: "shop".to_owned(),
        analysis: AnalysisConfig {
            interval: Duration::from_secs(60),
            threshold: 5,
            steps: Steps::Weights(vec![10, 20, 30, 40, 50]),
            min_requests: 20,
            inconclusive_limit: 10,
            // The behaviour tests beside this file pin Flagger's semantics; the sequential
            // judge has its own (`sequential.rs`).
            judge: JudgeKind::Threshold,
            sequential: SequentialConfig::defaults(Duration::from_secs(60)),
            metrics: vec![
                MetricCheck::SuccessRate {
                    threshold: 99.0,
                    max_drop: None,
                },
                MetricCheck::Duration {
                    threshold: Duration::from_millis(500),
                    quantile: 0.99,
                    max_ratio: None,
                },
            ],
            external: Vec::new(),
            bake: None,
        },
        hooks: Hooks::default(),
        primary_revision: "v1.4.2".to_owned(),
        canary_revision: "v1.5.0".to_owned(),
        has_match_rules: false,
        has_mirror: false,
    }
}

/// The seed schedule with `[route.analysis]` changed by `tune`.
pub(super) fn tuned(tune: impl FnOnce(&mut AnalysisConfig)) -> Params {
    let mut params = seed();
    tune(&mut params.analysis);
    params
}

/// The seed schedule with these webhook kinds configured.
pub(super) fn with_hooks(kinds: &[WebhookKind]) -> Params {
    Params {
        hooks: Hooks::of(kinds.iter().copied()),
        ..seed()
    }
}

/// `requests` judged requests, `failures` of them failed, every one taking `latency_ms`.
pub(super) fn traffic(requests: u64, failures: u64, latency_ms: u64) -> VersionWindow {
    let mut window = VersionWindow::new().unwrap();
    for i in 0..requests {
        window.record(i >= failures, Duration::from_millis(latency_ms));
    }
    window
}

/// `fast` requests at `fast_ms` and `slow` at `slow_ms`, none failed.
pub(super) fn latencies(fast: u64, fast_ms: u64, slow: u64, slow_ms: u64) -> VersionWindow {
    let mut window = traffic(fast, 0, fast_ms);
    window.merge(&traffic(slow, 0, slow_ms));
    window
}

/// One interval's worth of traffic.
pub(super) fn window(primary: VersionWindow, canary: VersionWindow) -> Window {
    Window {
        primary,
        canary,
        duration: Duration::from_secs(60),
    }
}

/// A healthy interval: 900 primary and 100 canary requests, all fast and successful.
pub(super) fn healthy() -> Window {
    window(traffic(900, 0, 40), traffic(100, 0, 50))
}

/// An interval without a single request.
pub(super) fn silence() -> Window {
    window(traffic(0, 0, 0), traffic(0, 0, 0))
}

/// Follows the runner protocol of `check.rs` with a clock that moves one interval per tick.
pub(super) struct Runner {
    pub rollout: Rollout,
    pub params: Params,
    pub seconds: u64,
    /// Everything the rollout said, oldest first.
    pub events: Vec<Event>,
    /// What each webhook answers; a configured hook without an entry gives the harmless
    /// answer: yes, except `rollback` which says no.
    pub answers: HashMap<WebhookKind, bool>,
    /// Webhooks called, in order (gates and confirms).
    pub called: Vec<WebhookKind>,
    /// The window being accumulated since the last concluded check.
    pub window: Window,
    /// The sequential judge's evidence, kept as the real runner keeps it.
    pub evidence: StepEvidence,
}

impl Runner {
    /// Start the rollout of `params` at T0 with no previous state.
    pub fn start(params: Params) -> Runner {
        let (rollout, events) = Rollout::start_or_resume(&params, None, at(0));
        Runner {
            rollout,
            seconds: 0,
            events,
            answers: HashMap::new(),
            called: Vec::new(),
            window: Window::new().unwrap(),
            evidence: StepEvidence::new(&params.analysis.metrics),
            params,
        }
    }

    pub fn now(&self) -> SystemTime {
        at(self.seconds)
    }

    pub fn answer(&mut self, kind: WebhookKind, yes: bool) {
        self.answers.insert(kind, yes);
    }

    fn ask(&mut self, kind: WebhookKind) -> bool {
        self.called.push(kind);
        let harmless = kind != WebhookKind::Rollback;
        self.answers.get(&kind).copied().unwrap_or(harmless)
    }

    /// One interval passes with `traffic`; returns the final decision.
    pub fn tick(&mut self, traffic: &Window) -> Decision {
        self.seconds += self.params.interval().as_secs();
        self.window.primary.merge(&traffic.primary);
        self.window.canary.merge(&traffic.canary);
        self.window.duration += traffic.duration;
        self.evidence
            .add(&mut traffic.primary.clone(), &mut traffic.canary.clone());

        let mut answers = GateAnswers::default();
        for kind in self.rollout.gates(&self.params) {
            let yes = self.ask(kind);
            answers.set(kind, yes);
            if kind == WebhookKind::ConfirmRollout && !yes {
                break;
            }
        }
        let now = self.now();
        let (mut decision, events) =
            self.rollout
                .check(&self.params, &self.window, &self.evidence, &answers, now);
        self.events.extend(events);
        while let Decision::Confirm(confirm) = decision {
            let yes = self.ask(confirm.webhook());
            let (next, events) = self.rollout.confirm(yes, now).unwrap();
            self.events.extend(events);
            decision = next;
        }
        if decision.concludes_window() {
            self.window.clear();
        }
        if decision.restarts_evidence(self.params.analysis.sequential.evidence) {
            self.evidence.clear();
        }
        decision
    }

    /// Tick `n` times with the same traffic, returning the weight after each tick.
    pub fn weights(&mut self, n: usize, traffic: &Window) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.tick(traffic);
                self.rollout.weight()
            })
            .collect()
    }

    pub fn messages(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.message.as_str()).collect()
    }

    pub fn last_message(&self) -> &str {
        self.events.last().map_or("", |e| e.message.as_str())
    }
}

/// Evidence of nothing, for calls that only exercise the threshold judge or a gate.
pub(super) fn no_evidence() -> StepEvidence {
    StepEvidence::new(&seed().analysis.metrics)
}
