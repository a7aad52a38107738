//! The rollout parameters of one route, taken from its validated config.
//!
//! The state machine receives a fresh [`Params`] with every call, so a reload's new analysis
//! settings apply from the next check (docs/configuration.md#reloading) without any extra plumbing.

use std::time::Duration;

use crate::config::{AnalysisConfig, RouteConfig, Steps, WebhookKind};

/// How the canary receives traffic while it is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Weighted steps: the canary's share grows step by step.
    Canary,
    /// `iterations` with `match` rules: only matching requests reach the canary.
    AbTesting,
    /// `iterations` without `match` rules: the canary sees only mirrored traffic until
    /// promotion, then all of it at once.
    BlueGreen,
}

/// Which webhook kinds a route configures (any number of hooks per kind is the runner's
/// business; the state machine only needs to know whether a gate exists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    configured: [bool; WebhookKind::ALL.len()],
}

// === impl Hooks ===

impl Hooks {
    /// The set of kinds present in `kinds`.
    pub fn of(kinds: impl IntoIterator<Item = WebhookKind>) -> Self {
        let mut hooks = Hooks::default();
        for kind in kinds {
            hooks.configured[index(kind)] = true;
        }
        hooks
    }

    /// Whether at least one hook of this kind is configured.
    pub fn has(&self, kind: WebhookKind) -> bool {
        self.configured[index(kind)]
    }
}

fn index(kind: WebhookKind) -> usize {
    match kind {
        WebhookKind::ConfirmRollout => 0,
        WebhookKind::PreRollout => 1,
        WebhookKind::Rollout => 2,
        WebhookKind::ConfirmTrafficIncrease => 3,
        WebhookKind::ConfirmPromotion => 4,
        WebhookKind::PostRollout => 5,
        WebhookKind::Rollback => 6,
        WebhookKind::Event => 7,
    }
}

/// Everything the state machine needs to know about one route with an automated rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Route name (used in event messages).
    pub route: String,
    /// The validated `[route.analysis]`: schedule, judge and metrics, as written.
    pub analysis: AnalysisConfig,
    /// Which webhook kinds exist (gates are only asked when configured).
    pub hooks: Hooks,
    /// Revision behind the primary endpoints.
    pub primary_revision: String,
    /// Revision behind the canary endpoints: the one being rolled out.
    pub canary_revision: String,
    /// The route has `[[route.match]]` rules (A/B testing with `iterations`).
    pub has_match_rules: bool,
    /// The route has `[route.mirror]` (usual for blue/green).
    pub has_mirror: bool,
}

// === impl Params ===

impl Params {
    /// The parameters of `route`; `None` when it has no `[route.analysis]` or no canary, i.e.
    /// nothing is rolled out automatically (phases `Idle` or `Static`).
    pub fn from_route(route: &RouteConfig) -> Option<Params> {
        let analysis = route.analysis.as_ref()?;
        let canary = route.canary.as_ref()?;
        Some(Params {
            route: route.name.clone(),
            analysis: analysis.clone(),
            hooks: Hooks::of(route.webhooks.iter().map(|w| w.kind)),
            primary_revision: route.primary.revision.clone(),
            canary_revision: canary.version.revision.clone(),
            has_match_rules: !route.matches.is_empty(),
            has_mirror: route.mirror.is_some(),
        })
    }

    /// Canary weights or A/B or blue/green (docs/rollouts.md#ab-testing-and-bluegreen).
    pub fn strategy(&self) -> Strategy {
        match (&self.analysis.steps, self.has_match_rules) {
            (Steps::Weights(_), _) => Strategy::Canary,
            (Steps::Iterations(_), true) => Strategy::AbTesting,
            (Steps::Iterations(_), false) => Strategy::BlueGreen,
        }
    }

    /// The first weight of the schedule, or `None` in iterations mode (the weight stays 0).
    pub fn first_weight(&self) -> Option<u8> {
        match &self.analysis.steps {
            Steps::Weights(weights) => weights.first().copied(),
            Steps::Iterations(_) => None,
        }
    }

    /// The schedule's next weight above `current`, or `None` at (or past) the last step.
    ///
    /// Derived from the weight rather than a step index so that a reload that changes the
    /// schedule continues from where the canary's traffic actually is.
    pub fn next_weight(&self, current: u8) -> Option<u8> {
        match &self.analysis.steps {
            Steps::Weights(weights) => weights.iter().copied().find(|&w| w > current),
            Steps::Iterations(_) => None,
        }
    }

    /// The number of passed checks that promotes in iterations mode.
    pub fn iterations(&self) -> Option<u32> {
        match self.analysis.steps {
            Steps::Iterations(n) => Some(n),
            Steps::Weights(_) => None,
        }
    }

    /// `analysis.bake` in checks (at least one), `None` without a bake.
    pub fn bake_checks(&self) -> Option<u32> {
        let bake = self.analysis.bake?;
        let interval = self.interval().as_millis().max(1);
        let checks = bake.as_millis().div_ceil(interval).max(1);
        Some(u32::try_from(checks).unwrap_or(u32::MAX))
    }

    /// How often the canary is judged.
    pub fn interval(&self) -> Duration {
        self.analysis.interval
    }

    /// Checks in `max_step_duration` (at least 1): an undecided step warns at this many.
    pub fn max_step_checks(&self) -> u32 {
        let interval = self.analysis.interval.as_secs_f64().max(1e-3);
        let checks = (self.analysis.sequential.max_step_duration.as_secs_f64() / interval).ceil();
        (checks as u32).max(1)
    }

    /// Canary requests a window needs to conclude. Never below 1: a window without canary
    /// requests is inconclusive even with `min_requests = 0`, since no data is never success.
    pub fn required_requests(&self) -> u64 {
        self.analysis.min_requests.max(1)
    }
}

/// The version of [`Params::canonical_settings`]' shape; part of the text, so a change of
/// shape reads as drift rather than as agreement.
pub const SETTINGS_SCHEMA: u32 = 1;

impl Params {
    /// The settings fleet members must agree on before the leader judges (docs/fleet.md#wire-format),
    /// as canonical JSON: fixed keys in a fixed order, durations in whole milliseconds or
    /// microseconds, numbers as serde_json writes them (shortest round-trip form). The same
    /// settings give the same text in every build, unlike `Debug` output.
    pub fn canonical_settings(&self) -> String {
        use crate::config::{EvidenceScope, JudgeKind, MetricCheck, OnInconclusive};
        use serde_json::json;
        let a = &self.analysis;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let steps = match &a.steps {
            Steps::Weights(weights) => json!({ "weights": weights }),
            Steps::Iterations(n) => json!({ "iterations": n }),
        };
        let metrics: Vec<_> = a
            .metrics
            .iter()
            .map(|metric| match metric {
                MetricCheck::SuccessRate {
                    threshold,
                    max_drop,
                } => json!({
                    "name": "request-success-rate",
                    "threshold": threshold,
                    "max_drop": max_drop,
                }),
                MetricCheck::Duration {
                    threshold,
                    quantile,
                    max_ratio,
                } => json!({
                    "name": "request-duration",
                    "threshold_micros": u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX),
                    "quantile": quantile,
                    "max_ratio": max_ratio,
                }),
            })
            .collect();
        let sequential = &a.sequential;
        let hooks: Vec<&str> = WebhookKind::ALL
            .into_iter()
            .filter(|kind| self.hooks.has(*kind))
            .map(WebhookKind::as_str)
            .collect();
        json!([
            SETTINGS_SCHEMA,
            { "route": self.route },
            { "primary_revision": self.primary_revision },
            { "canary_revision": self.canary_revision },
            { "interval_ms": millis(a.interval) },
            { "threshold": a.threshold },
            { "steps": steps },
            { "min_requests": a.min_requests },
            { "inconclusive_limit": a.inconclusive_limit },
            { "judge": match a.judge {
                JudgeKind::Sequential => "sequential",
                JudgeKind::Threshold => "threshold",
            } },
            { "sequential": [
                sequential.max_false_rollback,
                sequential.max_false_promotion,
                sequential.good_multiple,
                sequential.bad_multiple,
                millis(sequential.max_step_duration),
                match sequential.on_inconclusive {
                    OnInconclusive::Hold => "hold",
                    OnInconclusive::Rollback => "rollback",
                },
                match sequential.evidence {
                    EvidenceScope::Rollout => "rollout",
                    EvidenceScope::Step => "step",
                },
            ] },
            { "metrics": metrics },
            { "hooks": hooks },
            { "has_match_rules": self.has_match_rules },
            { "has_mirror": self.has_mirror },
        ])
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::analysis::tests::seed;
    use crate::fleet::settings_hash;

    /// Checked in: a build whose canonical text (or hash) differs would see every older
    /// replica as drifted during a rolling upgrade. Change it only with [`super::SETTINGS_SCHEMA`].
    const SEED_SETTINGS: &str = r#"[1,{"route":"shop"},{"primary_revision":"v1.4.2"},{"canary_revision":"v1.5.0"},{"interval_ms":60000},{"threshold":5},{"steps":{"weights":[10,20,30,40,50]}},{"min_requests":20},{"inconclusive_limit":10},{"judge":"threshold"},{"sequential":[0.01,0.05,0.5,1.5,600000,"hold","rollout"]},{"metrics":[{"max_drop":null,"name":"request-success-rate","threshold":99.0},{"max_ratio":null,"name":"request-duration","quantile":0.99,"threshold_micros":500000}]},{"hooks":[]},{"has_match_rules":false},{"has_mirror":false}]"#;

    #[test]
    fn the_seed_schedules_settings_serialise_and_hash_to_the_checked_in_vector() {
        let text = seed().canonical_settings();
        assert_eq!(text, SEED_SETTINGS);
        assert_eq!(settings_hash(&text), "80609e9b206b6500");
    }

    #[test]
    fn any_setting_that_matters_changes_the_text() {
        let base = seed();
        let mut other = seed();
        other.analysis.sequential.bad_multiple = 2.0;
        assert_ne!(base.canonical_settings(), other.canonical_settings());
        let mut other = seed();
        other.hooks = crate::analysis::Hooks::of([crate::config::WebhookKind::Rollback]);
        assert_ne!(base.canonical_settings(), other.canonical_settings());
    }
}
