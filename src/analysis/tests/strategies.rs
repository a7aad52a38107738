//! A/B testing and blue/green: `iterations` instead of weights (docs/rollouts.md#ab-testing-and-bluegreen).

use super::*;
use crate::analysis::Strategy;
use crate::routing::Phase;

fn iterations(n: u32, match_rules: bool, mirror: bool) -> Params {
    Params {
        has_match_rules: match_rules,
        has_mirror: mirror,
        ..tuned(|a| a.steps = Steps::Iterations(n))
    }
}

#[test]
fn ab_testing_promotes_after_n_passed_checks_with_weight_zero() {
    let params = iterations(3, true, false);
    assert_eq!(params.strategy(), Strategy::AbTesting);
    let mut run = Runner::start(params);

    // Progressing at weight 0: only requests matching the rules reach the canary.
    assert_eq!(run.rollout.view().phase, Phase::Progressing);
    assert_eq!(run.rollout.weight(), 0);

    assert_eq!(
        run.tick(&healthy()),
        Decision::Iteration { passed: 1, of: 3 }
    );
    assert_eq!(run.last_message(), "Advance shop canary iteration 1/3");
    // A failing check is not an iteration.
    run.tick(&window(traffic(900, 0, 40), traffic(100, 20, 50)));
    assert_eq!(run.rollout.iterations(), 1);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Iteration { passed: 2, of: 3 }
    );
    assert_eq!(run.rollout.weight(), 0);

    // The third pass promotes: all traffic at once.
    assert_eq!(run.tick(&healthy()), Decision::Promote);
    assert_eq!(run.rollout.view().phase, Phase::Succeeded);
    assert_eq!(run.rollout.weight(), 100);
}

#[test]
fn ab_testing_without_matching_traffic_fails() {
    let mut run = Runner::start(iterations(3, true, false));
    let weights = run.weights(10, &silence());
    assert!(weights.iter().all(|&w| w == 0));
    assert_eq!(run.rollout.phase(), Phase::Failed);
}

#[test]
fn blue_green_mirrors_until_promotion_then_switches_everything() {
    let params = iterations(2, false, true);
    assert_eq!(params.strategy(), Strategy::BlueGreen);
    let mut run = Runner::start(params);

    // The canary is judged on mirrored traffic; its weight stays 0 the whole time.
    assert_eq!(
        run.tick(&healthy()),
        Decision::Iteration { passed: 1, of: 2 }
    );
    assert_eq!(run.rollout.weight(), 0);
    assert_eq!(run.tick(&healthy()), Decision::Promote);
    assert_eq!(run.rollout.weight(), 100);
}

#[test]
fn iterations_wait_for_pre_rollout_before_any_traffic() {
    let mut run = Runner::start(Params {
        hooks: Hooks::of([WebhookKind::PreRollout]),
        ..iterations(2, true, false)
    });
    // Not started: the data plane treats it as Waiting, so match rules do not apply yet.
    assert_eq!(run.rollout.view().phase, Phase::Waiting);
    assert_eq!(run.tick(&silence()), Decision::Started);
    assert_eq!(run.rollout.view().phase, Phase::Progressing);
    assert_eq!(
        run.tick(&healthy()),
        Decision::Iteration { passed: 1, of: 2 }
    );
}

#[test]
fn iterations_with_confirm_promotion_wait_after_the_last_iteration() {
    let mut run = Runner::start(Params {
        hooks: Hooks::of([WebhookKind::ConfirmPromotion]),
        ..iterations(2, false, true)
    });
    run.answer(WebhookKind::ConfirmPromotion, false);
    run.weights(2, &healthy());
    assert_eq!(run.rollout.phase(), Phase::WaitingPromotion);
    assert_eq!(run.rollout.iterations(), 2);
    run.answer(WebhookKind::ConfirmPromotion, true);
    assert_eq!(run.tick(&healthy()), Decision::Promote);
    assert_eq!(run.rollout.iterations(), 2);
}
