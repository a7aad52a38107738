//! Webhook gates (docs/rollouts.md#webhooks): which are asked when, and what their answers do.

use super::*;
use crate::analysis::{Confirm, Failure, Hold, NothingPending, RollbackReason};
use crate::routing::Phase;

use WebhookKind::{
    ConfirmPromotion, ConfirmRollout, ConfirmTrafficIncrease, PreRollout, Rollback,
    Rollout as RolloutHook,
};

#[test]
fn confirm_rollout_keeps_the_route_waiting_until_it_says_yes() {
    let mut run = Runner::start(with_hooks(&[ConfirmRollout]));

    // Waiting: the canary gets nothing, not even match or mirrored traffic.
    assert_eq!(run.rollout.phase(), Phase::Waiting);
    assert_eq!(run.rollout.view().phase, Phase::Waiting);
    assert_eq!(run.rollout.weight(), 0);
    assert_eq!(run.rollout.gates(&run.params), [ConfirmRollout]);

    // "No" twice: still Waiting, asked again each interval, no failed check.
    run.answer(ConfirmRollout, false);
    for _ in 0..2 {
        assert_eq!(
            run.tick(&silence()),
            Decision::Hold(Hold::RolloutNotConfirmed)
        );
        assert_eq!(run.rollout.phase(), Phase::Waiting);
        assert_eq!(
            run.last_message(),
            "Halt shop advancement waiting for rollout approval"
        );
    }
    assert_eq!(run.rollout.failed_checks(), 0);
    assert_eq!(run.called, [ConfirmRollout, ConfirmRollout]);

    // "Yes": the analysis starts in the same interval with the first step.
    run.answer(ConfirmRollout, true);
    assert_eq!(run.tick(&silence()), Decision::Advance(10));
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(
        run.messages()[run.events.len() - 2..],
        [
            "Starting canary analysis for shop",
            "Advance shop canary weight 10"
        ]
    );

    // From now on confirm-rollout is not asked any more.
    assert_eq!(run.rollout.gates(&run.params), Vec::<WebhookKind>::new());
}

#[test]
fn pre_rollout_failing_then_recovering() {
    let mut run = Runner::start(with_hooks(&[PreRollout]));

    // Before the first step the rollout is Progressing but the data plane sees Waiting: no
    // request reaches a canary whose smoke tests have not passed.
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.view().phase, Phase::Waiting);
    assert_eq!(run.rollout.gates(&run.params), [PreRollout]);

    // Two failures: each counts as a failed check; the weight stays 0.
    run.answer(PreRollout, false);
    for n in 1..=2 {
        assert_eq!(
            run.tick(&silence()),
            Decision::Halt(vec![Failure::PreRolloutWebhook])
        );
        assert_eq!(run.rollout.failed_checks(), n);
        assert_eq!(run.rollout.weight(), 0);
    }
    assert_eq!(
        run.last_message(),
        "Halt shop advancement pre-rollout webhook failed"
    );

    // It recovers: the first step follows in the same interval.
    run.answer(PreRollout, true);
    assert_eq!(run.tick(&silence()), Decision::Advance(10));
    assert_eq!(run.rollout.view().phase, Phase::Progressing);

    // Pre-rollout runs once per rollout: never asked again.
    assert_eq!(run.rollout.gates(&run.params), Vec::<WebhookKind>::new());
    assert_eq!(run.called, [PreRollout, PreRollout, PreRollout]);
}

#[test]
fn pre_rollout_unanswered_counts_as_failed_until_threshold() {
    let params = with_hooks(&[PreRollout]);
    let (mut rollout, _) = Rollout::start_or_resume(&params, None, at(0));
    for n in 1..=5 {
        // The runner could not reach the hook: no answer at all.
        let (decision, _) = rollout.check(
            &params,
            &silence(),
            &no_evidence(),
            &GateAnswers::default(),
            at(n),
        );
        if n < 5 {
            assert_eq!(decision, Decision::Halt(vec![Failure::PreRolloutWebhook]));
        } else {
            assert_eq!(
                decision,
                Decision::Rollback(RollbackReason::FailedChecks { threshold: 5 })
            );
        }
    }
    assert_eq!(rollout.phase(), Phase::Failed);
}

#[test]
fn rollout_webhook_failure_is_a_failed_check() {
    let mut run = Runner::start(with_hooks(&[RolloutHook]));
    assert_eq!(run.rollout.gates(&run.params), [RolloutHook]);

    run.answer(RolloutHook, false);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Halt(vec![Failure::RolloutWebhook])
    );
    assert_eq!(run.rollout.failed_checks(), 1);
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(
        run.last_message(),
        "Halt shop advancement rollout webhook failed"
    );

    run.answer(RolloutHook, true);
    assert_eq!(run.tick(&healthy()), Decision::Advance(20));
}

#[test]
fn rollback_webhook_yes_aborts() {
    let mut run = Runner::start(with_hooks(&[Rollback]));
    assert_eq!(run.tick(&healthy()), Decision::Advance(20));
    assert_eq!(run.rollout.gates(&run.params), [Rollback]);

    // "No" from the rollback hook means carry on.
    run.answer(Rollback, false);
    assert_eq!(run.tick(&healthy()), Decision::Advance(30));

    // "Yes" rolls back at once, however healthy the metrics.
    run.answer(Rollback, true);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Rollback(RollbackReason::RollbackWebhook)
    );
    assert_eq!(run.rollout.phase(), Phase::Failed);
    assert_eq!(run.rollout.weight(), 0);
    assert!(run
        .messages()
        .contains(&"Rolling back shop manual webhook invoked"));
}

#[test]
fn confirm_traffic_increase_is_asked_only_after_a_passing_check() {
    let params = with_hooks(&[ConfirmTrafficIncrease]);

    // The first step is a weight increase too, so the rollout starts at 0 and asks.
    let mut run = Runner::start(params);
    assert_eq!(run.rollout.weight(), 0);
    assert_eq!(run.tick(&silence()), Decision::Advance(10));
    assert_eq!(run.called, [ConfirmTrafficIncrease]);

    // A failing check does not bother the hook.
    run.tick(&window(traffic(900, 0, 40), traffic(100, 10, 50)));
    assert_eq!(run.called.len(), 1);

    // A passing check asks; "no" holds the weight for this interval, without a failed check.
    run.answer(ConfirmTrafficIncrease, false);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Hold(Hold::TrafficIncreaseRefused { to: 20 })
    );
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(run.rollout.failed_checks(), 1);
    assert_eq!(
        run.last_message(),
        "Halt shop advancement waiting for traffic increase approval (weight 20)"
    );

    // "Yes" next time: the step is granted.
    run.answer(ConfirmTrafficIncrease, true);
    assert_eq!(run.tick(&healthy()), Decision::Advance(20));
}

#[test]
fn confirm_is_a_second_step_of_the_check() {
    let params = with_hooks(&[ConfirmTrafficIncrease]);
    let (mut rollout, _) = Rollout::start_or_resume(&params, None, at(0));

    // check() only says what to ask; nothing changes until confirm() hears the answer.
    let (decision, _) = rollout.check(
        &params,
        &healthy(),
        &no_evidence(),
        &GateAnswers::default(),
        at(60),
    );
    assert_eq!(decision, Decision::Confirm(Confirm::TrafficIncrease(10)));
    assert_eq!(rollout.weight(), 0);
    let (decision, _) = rollout.confirm(true, at(60)).unwrap();
    assert_eq!(decision, Decision::Advance(10));

    // A confirm nobody asked for is a runner bug, reported as such.
    assert_eq!(rollout.confirm(true, at(61)), Err(NothingPending));

    // An unanswered question is dropped by the next check, which asks again if relevant.
    let (decision, _) = rollout.check(
        &params,
        &healthy(),
        &no_evidence(),
        &GateAnswers::default(),
        at(120),
    );
    assert_eq!(decision, Decision::Confirm(Confirm::TrafficIncrease(20)));
    let (decision, _) = rollout.check(
        &params,
        &silence(),
        &no_evidence(),
        &GateAnswers::default(),
        at(180),
    );
    assert!(matches!(decision, Decision::Inconclusive { .. }));
    assert_eq!(rollout.confirm(true, at(181)), Err(NothingPending));
    assert_eq!(rollout.weight(), 10);
}

#[test]
fn confirm_promotion_holds_in_waiting_promotion_while_checks_go_on() {
    let mut run = Runner::start(with_hooks(&[ConfirmPromotion, RolloutHook]));
    assert_eq!(run.weights(4, &healthy()), [20, 30, 40, 50]);
    assert!(!run.called.contains(&ConfirmPromotion));

    // The check at the last step passes; the hook says no: WaitingPromotion, weight kept.
    run.answer(ConfirmPromotion, false);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Hold(Hold::PromotionNotConfirmed)
    );
    assert_eq!(run.rollout.phase(), Phase::WaitingPromotion);
    assert_eq!(run.rollout.weight(), 50);
    assert_eq!(
        run.last_message(),
        "Halt shop advancement waiting for promotion approval"
    );

    // The checks and the rollout hook keep running while waiting; a failure counts.
    assert_eq!(run.rollout.gates(&run.params), [RolloutHook]);
    let calls = run.called.len();
    run.tick(&window(traffic(900, 0, 40), traffic(100, 10, 50)));
    assert_eq!(run.rollout.failed_checks(), 1);
    assert_eq!(run.rollout.phase(), Phase::WaitingPromotion);
    assert_eq!(
        run.called[calls..],
        [RolloutHook],
        "no promotion asked after a failure"
    );

    // Approval after a passing check: promoted.
    run.answer(ConfirmPromotion, true);
    assert_eq!(run.tick(&healthy()), Decision::Promote);
    assert_eq!(run.rollout.phase(), Phase::Succeeded);
    assert_eq!(run.rollout.weight(), 100);
}

#[test]
fn gates_are_only_the_configured_ones() {
    let all = with_hooks(&WebhookKind::ALL);
    let (rollout, _) = Rollout::start_or_resume(&all, None, at(0));
    assert_eq!(rollout.gates(&all), [ConfirmRollout, PreRollout]);
    let (rollout, _) = Rollout::start_or_resume(&seed(), None, at(0));
    assert_eq!(rollout.gates(&seed()), Vec::<WebhookKind>::new());
}
