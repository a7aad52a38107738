//! The sequential judge: its arithmetic against hand-computed boundaries, and the rollout
//! decisions it drives (advance on "good", roll back on "bad", hold and warn when undecided).

use super::*;
use crate::analysis::{binomial_llr, canary_share, Bounds, RollbackReason, TestName};
use crate::config::{EvidenceScope, OnInconclusive};
use crate::routing::Phase;

fn sequential() -> Params {
    tuned(|a| a.judge = JudgeKind::Sequential)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn llr_of_one_failure_and_one_success_at_the_seed_hypotheses() {
    // good = 0.5 x 1% = 0.005, bad = 1.5 x 1% = 0.015.
    close(binomial_llr(1, 1, 0.005, 0.015), 3f64.ln());
    close(binomial_llr(0, 1, 0.005, 0.015), (0.985f64 / 0.995).ln());
    // Counts only: 3 failures in 1000 requests.
    close(
        binomial_llr(3, 1000, 0.005, 0.015),
        3.0 * 3f64.ln() + 997.0 * (0.985f64 / 0.995).ln(),
    );
}

#[test]
fn bounds_split_false_rollbacks_over_tests_and_steps_but_not_false_promotions() {
    let config = SequentialConfig::defaults(Duration::from_secs(60));
    // Two tests, evidence across the rollout: alpha' = 0.01 / 2 -> ln(200) = 5.298317.
    let b = Bounds::new(&config, 2, 1);
    close(b.rollback, 200f64.ln());
    close(b.pass, 0.05f64.ln());
    assert!((b.rollback - 5.298317).abs() < 1e-6);
    assert!((b.pass + 2.995732).abs() < 1e-6);
    // Per step over 5 steps: alpha' = 0.01 / 10 -> ln(1000).
    close(Bounds::new(&config, 2, 5).rollback, 1000f64.ln());
    let per_step = tuned(|a| {
        a.judge = JudgeKind::Sequential;
        a.sequential.evidence = EvidenceScope::Step;
    });
    close(Bounds::of(&per_step, 2).rollback, 1000f64.ln());
    close(Bounds::of(&sequential(), 2).rollback, 200f64.ln());
}

#[test]
fn hand_computed_boundaries_297_clean_requests_pass_5_straight_failures_roll_back() {
    // Per clean request the LLR falls by ln(0.995/0.985) = 0.0101010; ln(20) / that = 296.6.
    let pass = 0.05f64.ln();
    assert!(binomial_llr(0, 296, 0.005, 0.015) > pass);
    assert!(binomial_llr(0, 297, 0.005, 0.015) <= pass);
    // Per failure it rises by ln 3 = 1.0986; ln(200) / that = 4.82.
    let rollback = 200f64.ln();
    assert!(binomial_llr(4, 4, 0.005, 0.015) < rollback);
    assert!(binomial_llr(5, 5, 0.005, 0.015) >= rollback);
}

#[test]
fn canary_share_of_events_follows_its_share_of_traffic_and_the_rate_ratio() {
    close(canary_share(100, 900, 1.0), 0.1);
    close(canary_share(100, 900, 3.0), 300.0 / 1200.0);
}

#[test]
fn a_clean_step_advances_once_the_evidence_suffices_and_not_before() {
    let mut run = Runner::start(sequential());
    assert_eq!(run.rollout.weight(), 10);
    // 290 clean canary requests (and clean latencies): not yet enough to pass.
    let decision = run.tick(&window(traffic(900, 0, 40), traffic(290, 0, 50)));
    assert_eq!(
        decision,
        Decision::Undecided {
            checks: 1,
            limit: 10
        }
    );
    assert!(
        run.last_message()
            .contains("0.00% over 290 requests, 98% of the evidence needed to pass"),
        "{}",
        run.last_message()
    );
    // 10 more: 300 > 297.
    assert_eq!(
        run.tick(&window(traffic(900, 0, 40), traffic(10, 0, 50))),
        Decision::Advance(20)
    );
    // Evidence carries across steps (same revision): the next check passes at once.
    assert_eq!(run.tick(&silence()), Decision::Advance(30));
}

#[test]
fn a_healthy_canary_gathering_evidence_is_collecting_not_halted_once_per_step() {
    let mut run = Runner::start(sequential());
    // Three checks of 100 clean requests: 300 > 297 only at the third.
    for _ in 0..2 {
        let decision = run.tick(&window(traffic(900, 0, 40), traffic(100, 0, 50)));
        assert!(
            matches!(decision, Decision::Undecided { .. }),
            "{decision:?}"
        );
    }
    let messages = run.messages();
    let collecting: Vec<&&str> = messages
        .iter()
        .filter(|m| m.starts_with("Collecting evidence for shop at weight 10: "))
        .collect();
    assert_eq!(collecting.len(), 1, "once per step: {messages:?}");
    assert!(
        !messages.iter().any(|m| m.starts_with("Halt")),
        "a healthy canary is not halted: {messages:?}"
    );
    // The status says what is being collected, in full.
    let reason = run.rollout.status().reason.unwrap();
    assert!(
        reason.contains("over 200 requests"),
        "the reason follows the evidence: {reason}"
    );
    assert_eq!(
        run.tick(&window(traffic(900, 0, 40), traffic(100, 0, 50))),
        Decision::Advance(20)
    );
    assert_eq!(
        run.rollout.status().reason,
        None,
        "a new step, nothing collected yet"
    );
}

#[test]
fn a_rollback_on_evidence_is_a_failed_check_with_its_reason() {
    let mut run = Runner::start(sequential());
    run.tick(&window(traffic(900, 0, 40), traffic(100, 10, 50)));
    let status = run.rollout.status();
    assert_eq!(status.phase, "Failed");
    assert_eq!(status.failed_checks, 1);
    assert_eq!(
        status.reason.as_deref(),
        Some("request-success-rate is worse than allowed (sequential test): error rate 10.00% over 100 requests, 100% of the evidence needed to roll back")
    );
}

#[test]
fn evidence_restarts_per_step_when_configured() {
    let mut run = Runner::start(tuned(|a| {
        a.judge = JudgeKind::Sequential;
        a.sequential.evidence = EvidenceScope::Step;
    }));
    // ln(20) / 0.0101010 = 297 clean requests per step.
    assert_eq!(
        run.tick(&window(traffic(900, 0, 40), traffic(300, 0, 50))),
        Decision::Advance(20)
    );
    assert_eq!(
        run.tick(&silence()),
        Decision::Undecided {
            checks: 1,
            limit: 10
        }
    );
}

#[test]
fn a_bad_canary_is_rolled_back_by_the_check_with_the_evidence_explained() {
    let mut run = Runner::start(sequential());
    let decision = run.tick(&window(traffic(900, 0, 40), traffic(100, 10, 50)));
    assert_eq!(
        decision,
        Decision::Rollback(RollbackReason::Evidence {
            test: TestName::SuccessRate
        })
    );
    assert_eq!(run.rollout.phase(), Phase::Failed);
    let messages = run.messages();
    assert!(
        messages.contains(
            &"Halt shop advancement: error rate 10.00% over 100 requests, 100% of the evidence needed to roll back"
        ),
        "{messages:?}"
    );
    let check = run.rollout.last_check().unwrap();
    let evidence = check.metrics[0].evidence.as_ref().unwrap();
    assert_eq!(evidence.requests, 100);
    assert_eq!(evidence.verdict, "rollback");
    close(evidence.rollback_bound, 200f64.ln());
}

#[test]
fn watch_rolls_back_between_checks_and_only_on_the_rollback_side() {
    let params = sequential();
    let mut run = Runner::start(params.clone());
    let mut evidence = StepEvidence::new(&params.analysis.metrics);
    let now = run.now();
    // Clean traffic never triggers the fast path, however strong.
    evidence.add(&mut traffic(900, 0, 40), &mut traffic(5000, 0, 50));
    assert!(run
        .rollout
        .watch(&params, &run.window, &evidence, now)
        .is_none());
    // Five straight failures (ln 3 each, ln 200 needed) roll back at once.
    let mut bursting = StepEvidence::new(&params.analysis.metrics);
    bursting.add(&mut traffic(90, 0, 40), &mut traffic(5, 5, 50));
    let (decision, events) = run
        .rollout
        .watch(&params, &run.window, &bursting, now)
        .unwrap();
    assert_eq!(
        decision,
        Decision::Rollback(RollbackReason::Evidence {
            test: TestName::SuccessRate
        })
    );
    assert!(events
        .iter()
        .any(|e| e.message.starts_with("Rolling back shop")));
    assert_eq!(run.rollout.view().weight, 0);
    // The threshold judge has no fast path.
    let mut flagger = Runner::start(seed());
    assert!(flagger
        .rollout
        .watch(&seed(), &flagger.window, &bursting, now)
        .is_none());
    flagger.tick(&healthy());
}

#[test]
fn an_undecided_step_warns_at_max_step_duration_and_holds_or_rolls_back() {
    let mut held = Runner::start(sequential());
    for n in 1..=12 {
        let d = held.tick(&silence());
        assert_eq!(
            d,
            Decision::Undecided {
                checks: n,
                limit: 10
            }
        );
    }
    let warnings: Vec<_> = held
        .events
        .iter()
        .filter(|e| {
            e.message
                .starts_with("No decision for shop after 10 checks")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", held.messages());
    assert_eq!(held.rollout.phase(), Phase::Progressing);
    assert_eq!(held.rollout.weight(), 10, "no evidence never promotes");

    let mut strict = Runner::start(tuned(|a| {
        a.judge = JudgeKind::Sequential;
        a.sequential.on_inconclusive = OnInconclusive::Rollback;
        a.sequential.max_step_duration = Duration::from_secs(180);
    }));
    assert_eq!(
        strict.tick(&silence()),
        Decision::Undecided {
            checks: 1,
            limit: 3
        }
    );
    strict.tick(&silence());
    assert_eq!(
        strict.tick(&silence()),
        Decision::Rollback(RollbackReason::Undecided { checks: 3 })
    );
}

/// A deciding count-form external metric (docs/rollouts.md#external-metrics).
fn payments(threshold: f64) -> crate::config::ExternalMetric {
    crate::config::ExternalMetric {
        name: "payment-failures".to_owned(),
        source: crate::config::MetricSource::Prometheus {
            address: http::Uri::from_static("http://127.0.0.1:9090"),
            query: crate::config::PromQuery::Count {
                failures: "sum(increase(payments_failed_total[{interval}]))".to_owned(),
                total: "sum(increase(payments_total[{interval}]))".to_owned(),
                threshold,
            },
        },
        min: None,
        max: None,
        headers: http::HeaderMap::new(),
        roots: None,
        timeout: Duration::from_secs(5),
        dry_run: false,
    }
}

#[test]
fn a_count_form_is_a_test_of_its_own_events_never_mixed_with_the_requests() {
    let params = tuned(|a| {
        a.judge = JudgeKind::Sequential;
        a.external = vec![payments(99.5)];
    });
    let mut evidence = StepEvidence::new(&params.analysis.metrics);
    // Prometheus' increase() extrapolates: whole events, and nothing from a nonsense reading.
    evidence.add_external("payment-failures", 3.4, 100.2);
    evidence.add_external("payment-failures", -1.0, f64::NAN);
    assert_eq!(evidence.external("payment-failures"), (3, 100));
    assert_eq!(evidence.canary, crate::analysis::Counts::default());

    let judgement = crate::analysis::judge::sequential::judge(&params, &evidence);
    assert_eq!(
        judgement.tests.len(),
        3,
        "two own metrics and the count form"
    );
    let test = &judgement.tests[2];
    assert_eq!(test.name, TestName::External("payment-failures".to_owned()));
    assert_eq!((test.events, test.requests), (3, 100));
    close(test.good, 0.5 * 0.005);
    close(test.bad, 1.5 * 0.005);
    // Three tests share max_false_rollback: ln(3 / 0.01).
    close(test.bounds.rollback, 300f64.ln());
    close(test.llr, binomial_llr(3, 100, 0.0025, 0.0075));

    // Fleet members' evidence merges by name; the JSON keeps it and omits it when empty.
    let mut other = StepEvidence::new(&params.analysis.metrics);
    other.add_external("payment-failures", 1.0, 50.0);
    evidence.merge(&other);
    assert_eq!(evidence.external("payment-failures"), (4, 150));
    let json = serde_json::to_value(&evidence).unwrap_or_default();
    assert_eq!(
        json["external"],
        serde_json::json!([{"name": "payment-failures", "failures": 4, "total": 150}])
    );
    let back: StepEvidence = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.external, evidence.external);
    let plain =
        serde_json::to_value(StepEvidence::new(&params.analysis.metrics)).unwrap_or_default();
    assert!(plain.get("external").is_none(), "{plain}");
    // A dry run decides nothing, so it is no test.
    let dry = tuned(|a| {
        a.judge = JudgeKind::Sequential;
        a.external = vec![crate::config::ExternalMetric {
            dry_run: true,
            ..payments(99.5)
        }];
    });
    assert_eq!(
        crate::analysis::judge::sequential::judge(&dry, &evidence)
            .tests
            .len(),
        2
    );
}
