//! Whole rollouts driven by synthetic traffic: the weight schedule, failed checks, latency,
//! comparative metrics and missing traffic.

use std::time::Duration;

use super::*;
use crate::analysis::{CheckOutcome, Failure, RollbackReason};
use crate::config::MetricCheck;
use crate::routing::Phase;

#[test]
fn seed_schedule_advances_10_to_50_then_promotes() {
    // The rollout starts at once: no gate is configured, so the canary gets its first step.
    let mut run = Runner::start(seed());
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(
        run.messages(),
        [
            "New revision detected! Rolling out shop v1.5.0 (primary v1.4.2)",
            "Starting canary analysis for shop",
            "Advance shop canary weight 10",
        ]
    );

    // Each healthy check moves one step.
    for expected in [20, 30, 40, 50] {
        assert_eq!(run.tick(&healthy()), Decision::Advance(expected));
        assert_eq!(run.rollout.phase(), Phase::Progressing);
        assert_eq!(
            run.last_message(),
            format!("Advance shop canary weight {expected}")
        );
    }

    // The check passed at max_weight promotes: all traffic to the canary.
    assert_eq!(run.tick(&healthy()), Decision::Promote);
    assert_eq!(run.rollout.phase(), Phase::Succeeded);
    assert_eq!(run.rollout.weight(), 100);
    assert_eq!(
        run.last_message(),
        "Promotion completed! shop is now serving v1.5.0"
    );
    assert_eq!(run.seconds, 5 * 60);

    // And it stays so: nothing is judged any more.
    assert_eq!(run.tick(&healthy()), Decision::Skip);
    assert_eq!(run.rollout.weight(), 100);
}

/// One row: a route's parameters, the traffic of every interval, and what must come of it.
struct Scenario {
    name: &'static str,
    params: Params,
    traffic: Window,
    /// The canary's weight after each tick.
    weights: &'static [u8],
    phase: Phase,
    /// The warning or info that explains the end state.
    message: &'static str,
}

fn comparative(success_drop: Option<f64>, ratio: Option<f64>) -> Params {
    tuned(|a| {
        a.metrics = vec![
            MetricCheck::SuccessRate {
                threshold: 99.0,
                max_drop: success_drop,
            },
            MetricCheck::Duration {
                threshold: Duration::from_millis(500),
                quantile: 0.99,
                max_ratio: ratio,
            },
        ];
    })
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "healthy canary is promoted through every step",
            params: seed(),
            traffic: healthy(),
            weights: &[20, 30, 40, 50, 100],
            phase: Phase::Succeeded,
            message: "Promotion completed! shop is now serving v1.5.0",
        },
        Scenario {
            name: "5% errors: rolled back after threshold failed checks",
            params: seed(),
            traffic: window(traffic(900, 0, 40), traffic(100, 5, 50)),
            weights: &[10, 10, 10, 10, 0],
            phase: Phase::Failed,
            message: "Rolling back shop failed checks threshold reached 5",
        },
        Scenario {
            name: "P99 over the threshold: rolled back",
            params: seed(),
            traffic: window(traffic(900, 0, 40), latencies(98, 50, 2, 620)),
            weights: &[10, 10, 10, 10, 0],
            phase: Phase::Failed,
            message: "Rolling back shop failed checks threshold reached 5",
        },
        Scenario {
            name: "canary 2x slower than the primary with max_ratio 1.5 fails",
            params: comparative(None, Some(1.5)),
            traffic: window(traffic(900, 0, 100), traffic(100, 0, 200)),
            weights: &[10, 10, 10, 10, 0],
            phase: Phase::Failed,
            message: "Rolling back shop failed checks threshold reached 5",
        },
        Scenario {
            name: "comparative ratio not applied when the primary has < min_requests",
            params: comparative(None, Some(1.5)),
            traffic: window(traffic(19, 0, 100), traffic(100, 0, 200)),
            weights: &[20, 30, 40, 50, 100],
            phase: Phase::Succeeded,
            message: "Promotion completed! shop is now serving v1.5.0",
        },
        Scenario {
            name: "success rate more than max_drop below the primary fails",
            params: comparative(Some(0.5), None),
            traffic: window(traffic(1000, 0, 40), traffic(100, 1, 50)),
            weights: &[10, 10, 10, 10, 0],
            phase: Phase::Failed,
            message: "Rolling back shop failed checks threshold reached 5",
        },
        Scenario {
            name: "99% exactly meets a 99% threshold",
            params: seed(),
            traffic: window(traffic(900, 0, 40), traffic(100, 1, 50)),
            weights: &[20, 30, 40, 50, 100],
            phase: Phase::Succeeded,
            message: "Promotion completed! shop is now serving v1.5.0",
        },
        Scenario {
            name: "no traffic at all: inconclusive, then failed at the limit",
            params: seed(),
            traffic: silence(),
            weights: &[10, 10, 10, 10, 10, 10, 10, 10, 10, 0],
            phase: Phase::Failed,
            message: "Canary failed! shop v1.5.0 gets no traffic; shop serves v1.4.2",
        },
    ]
}

#[test]
fn scenario_table() {
    for s in scenarios() {
        let mut run = Runner::start(s.params.clone());
        let weights = run.weights(s.weights.len(), &s.traffic);
        assert_eq!(weights, s.weights, "{}: weights", s.name);
        assert_eq!(run.rollout.phase(), s.phase, "{}: phase", s.name);
        assert!(
            run.messages().contains(&s.message),
            "{}: expected {:?} in {:#?}",
            s.name,
            s.message,
            run.messages()
        );
    }
}

#[test]
fn failed_checks_are_explained_in_flaggers_words() {
    let mut run = Runner::start(seed());

    // 97 of 100: the success rate event names the value and the threshold.
    let decision = run.tick(&window(traffic(900, 0, 40), traffic(100, 3, 50)));
    assert_eq!(
        decision,
        Decision::Halt(vec![Failure::SuccessRate {
            value: 97.0,
            threshold: 99.0
        }])
    );
    assert_eq!(
        run.last_message(),
        "Halt shop advancement success rate 97.00% < 99%"
    );
    assert_eq!(run.rollout.failed_checks(), 1);
    assert_eq!(run.rollout.weight(), 10, "a failed check holds the weight");

    // A slow P99: the duration event, in milliseconds.
    run.tick(&window(traffic(900, 0, 40), latencies(98, 50, 2, 620)));
    assert_eq!(
        run.last_message(),
        "Halt shop advancement request duration 620ms > 500ms"
    );

    // A passing check advances but does not forgive earlier failures (Flagger's counting).
    assert_eq!(run.tick(&healthy()), Decision::Advance(20));
    assert_eq!(run.rollout.failed_checks(), 2);
}

#[test]
fn last_check_reports_both_versions_and_every_metric() {
    let mut run = Runner::start(seed());
    run.tick(&window(traffic(900, 9, 40), traffic(100, 3, 50)));

    let report = run.rollout.last_check().unwrap();
    assert_eq!(report.outcome, CheckOutcome::Fail);
    assert_eq!(report.at, "2023-11-14T22:14:20.000Z");
    assert_eq!(report.window_seconds, 60);
    assert_eq!(report.primary.requests, 900);
    assert_eq!(report.primary.success_rate, Some(99.0));
    assert_eq!(report.canary.requests, 100);
    assert_eq!(report.canary.success_rate, Some(97.0));
    let p99 = report.canary.p99_ms.unwrap();
    assert!((49.9..=50.0).contains(&p99), "{p99}");

    let json = serde_json::to_value(report).unwrap();
    assert_eq!(json["outcome"], "fail");
    assert_eq!(json["metrics"][0]["name"], "request-success-rate");
    assert_eq!(json["metrics"][0]["value"], 97.0);
    assert_eq!(json["metrics"][0]["threshold"], 99.0);
    assert_eq!(json["metrics"][0]["passed"], false);
    assert_eq!(json["metrics"][1]["name"], "request-duration");
    assert_eq!(json["metrics"][1]["threshold"], 500.0);
    assert_eq!(json["metrics"][1]["passed"], true);
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "at",
            "canary",
            "metrics",
            "outcome",
            "primary",
            "window_seconds"
        ]
    );
}

#[test]
fn traffic_that_stops_mid_rollout_fails_for_lack_of_data() {
    // Two healthy checks: the canary reaches 30%.
    let mut run = Runner::start(seed());
    assert_eq!(run.weights(2, &healthy()), [20, 30]);

    // Then the traffic stops. Each check is inconclusive: weight held, window kept.
    for n in 1..=9 {
        let decision = run.tick(&silence());
        assert_eq!(
            decision,
            Decision::Inconclusive {
                checks: n,
                limit: 10
            }
        );
        assert!(!decision.concludes_window());
        assert_eq!(run.rollout.weight(), 30);
        assert_eq!(run.rollout.inconclusive_checks(), n);
        assert_eq!(
            run.rollout.last_check().unwrap().outcome,
            CheckOutcome::Inconclusive
        );
    }
    assert_eq!(
        run.rollout.failed_checks(),
        0,
        "no data is not a failure..."
    );

    // ...but it is never a success either: the tenth in a row rolls back.
    assert_eq!(
        run.tick(&silence()),
        Decision::Rollback(RollbackReason::NotEnoughTraffic { limit: 10 })
    );
    assert_eq!(run.rollout.phase(), Phase::Failed);
    assert_eq!(run.rollout.weight(), 0);
    assert!(run.messages().contains(
        &"Rolling back shop not enough traffic to judge (10 inconclusive checks in a row)"
    ));
}

#[test]
fn an_inconclusive_window_keeps_growing_until_it_concludes() {
    let mut run = Runner::start(seed());
    let trickle = window(traffic(90, 0, 40), traffic(10, 0, 50));

    // 10 canary requests < 20: inconclusive, the window is kept.
    assert_eq!(
        run.tick(&trickle),
        Decision::Inconclusive {
            checks: 1,
            limit: 10
        }
    );
    assert_eq!(run.window.canary.requests, 10);

    // 10 more: the same window now has 20 and concludes over both intervals.
    assert_eq!(run.tick(&trickle), Decision::Advance(20));
    let report = run.rollout.last_check().unwrap();
    assert_eq!(report.canary.requests, 20);
    assert_eq!(report.window_seconds, 120);
    assert_eq!(
        run.rollout.inconclusive_checks(),
        0,
        "a concluded check ends the streak"
    );
    assert_eq!(
        run.window.canary.requests, 0,
        "and the runner starts a new window"
    );
}

#[test]
fn min_requests_zero_still_needs_one_canary_request() {
    let mut run = Runner::start(tuned(|a| a.min_requests = 0));
    assert_eq!(
        run.tick(&silence()),
        Decision::Inconclusive {
            checks: 1,
            limit: 10
        }
    );
}

#[test]
fn explicit_step_weights_are_followed() {
    let mut run = Runner::start(tuned(|a| a.steps = Steps::Weights(vec![1, 5, 10, 25, 50])));
    assert_eq!(run.rollout.weight(), 1);
    assert_eq!(run.weights(5, &healthy()), [5, 10, 25, 50, 100]);
}
