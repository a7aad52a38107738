//! Operator commands: the phase × command table, and each command narrated.

use super::*;
use crate::analysis::{Command, CommandError, FinishOutcome, Hold};
use crate::routing::Phase;

/// A rollout brought into `phase` by real transitions.
fn in_phase(phase: Phase) -> (Rollout, Params) {
    match phase {
        Phase::Idle => {
            let params = Params {
                canary_revision: "v1.4.2".to_owned(),
                ..seed()
            };
            let (rollout, _) = Rollout::start_or_resume(&params, None, at(0));
            (rollout, params)
        }
        Phase::Waiting => {
            let params = with_hooks(&[WebhookKind::ConfirmRollout]);
            let (rollout, _) = Rollout::start_or_resume(&params, None, at(0));
            (rollout, params)
        }
        Phase::Progressing => {
            let (rollout, _) = Rollout::start_or_resume(&seed(), None, at(0));
            (rollout, seed())
        }
        Phase::Paused => {
            let (mut rollout, params) = in_phase(Phase::Progressing);
            rollout.pause(at(1)).unwrap();
            (rollout, params)
        }
        Phase::WaitingPromotion => {
            let mut run = Runner::start(with_hooks(&[WebhookKind::ConfirmPromotion]));
            run.answer(WebhookKind::ConfirmPromotion, false);
            run.weights(5, &healthy());
            (run.rollout, run.params)
        }
        Phase::Baking => {
            let mut params = seed();
            params.analysis.bake = Some(std::time::Duration::from_secs(600));
            let mut run = Runner::start(params);
            run.weights(5, &healthy());
            (run.rollout, run.params)
        }
        Phase::Succeeded => {
            let mut run = Runner::start(seed());
            run.weights(5, &healthy());
            (run.rollout, run.params)
        }
        Phase::Failed => {
            let (mut rollout, params) = in_phase(Phase::Progressing);
            rollout.abort(at(1)).unwrap();
            (rollout, params)
        }
        Phase::Static => unreachable!("a route with analysis is never Static"),
    }
}

fn run(
    command: Command,
    rollout: &mut Rollout,
    params: &Params,
) -> Result<Vec<Event>, CommandError> {
    let now = at(1000);
    match command {
        Command::Promote => rollout.promote(now),
        Command::Abort => rollout.abort(now),
        Command::Pause => rollout.pause(now),
        Command::Resume => rollout.resume(now),
        Command::Retry => rollout.retry(params, now),
    }
}

#[test]
fn phase_by_command_table() {
    use Phase::*;
    // (phase, [promote, abort, pause, resume, retry]) → the phase it ends in, or refused.
    let table: [(Phase, [Option<Phase>; 5]); 8] = [
        (Idle, [None, None, None, None, None]),
        (
            Waiting,
            [Some(Succeeded), Some(Failed), Some(Paused), None, None],
        ),
        (
            Progressing,
            [Some(Succeeded), Some(Failed), Some(Paused), None, None],
        ),
        (
            Paused,
            [Some(Succeeded), Some(Failed), None, Some(Progressing), None],
        ),
        (
            WaitingPromotion,
            [Some(Succeeded), Some(Failed), Some(Paused), None, None],
        ),
        // Baking: promote ends the bake, abort goes back to the primary; Succeeded: abort
        // still can (docs/rollouts.md#bake).
        (Baking, [Some(Succeeded), Some(Failed), None, None, None]),
        (Succeeded, [None, Some(Failed), None, None, None]),
        (Failed, [None, None, None, None, Some(Progressing)]),
    ];
    for (phase, outcomes) in table {
        for (command, expected) in Command::ALL.into_iter().zip(outcomes) {
            let (mut rollout, params) = in_phase(phase);
            assert_eq!(rollout.phase(), phase);
            let before = rollout.clone();
            let result = run(command, &mut rollout, &params);
            match expected {
                Some(after) => {
                    assert!(result.is_ok(), "{command} in {phase}: {result:?}");
                    assert_eq!(rollout.phase(), after, "{command} in {phase}");
                }
                None => {
                    let err = result.unwrap_err();
                    assert_eq!(err, CommandError::NotAllowed { command, phase });
                    assert_eq!(
                        err.to_string(),
                        format!("cannot {command}: route is {phase}")
                    );
                    assert_eq!(rollout, before, "a refused {command} changes nothing");
                }
            }
        }
    }
}

#[test]
fn refusal_message_reads_like_the_api_answer() {
    let (mut rollout, _) = in_phase(Phase::Failed);
    assert_eq!(
        rollout.promote(at(5)).unwrap_err().to_string(),
        "cannot promote: route is Failed"
    );
}

#[test]
fn pause_freezes_the_weight_and_resume_continues() {
    let mut run = Runner::start(seed());
    assert_eq!(run.weights(2, &healthy()), [20, 30]);

    // Paused: the weight stays, nothing is judged, however many intervals pass.
    let events = run.rollout.pause(run.now()).unwrap();
    assert_eq!(
        events[0].message,
        "Canary analysis of shop paused at weight 30"
    );
    assert_eq!(run.rollout.view().phase, Phase::Paused);
    assert_eq!(run.rollout.view().weight, 30);
    for _ in 0..3 {
        assert_eq!(run.tick(&healthy()), Decision::Skip);
        assert_eq!(run.rollout.weight(), 30);
    }
    // Even a terrible canary is not judged while paused.
    assert_eq!(
        run.tick(&window(traffic(10, 0, 1), traffic(100, 100, 900))),
        Decision::Skip
    );
    assert_eq!(run.rollout.failed_checks(), 0);

    // Resumed: back to Progressing, the next check advances from 30.
    let events = run.rollout.resume(run.now()).unwrap();
    assert_eq!(
        events[0].message,
        "Canary analysis of shop resumed at weight 30"
    );
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.tick(&healthy()), Decision::Advance(40));
}

#[test]
fn pause_remembers_waiting_and_waiting_promotion() {
    for phase in [Phase::Waiting, Phase::WaitingPromotion] {
        let (mut rollout, _) = in_phase(phase);
        let view = rollout.view();
        rollout.pause(at(10)).unwrap();
        // The data plane sees no change of traffic while paused from a gate.
        assert_eq!(rollout.view().weight, view.weight);
        rollout.resume(at(20)).unwrap();
        assert_eq!(rollout.phase(), phase);
    }
}

#[test]
fn manual_promote_skips_the_rest_of_the_analysis() {
    let mut run = Runner::start(seed());
    run.tick(&healthy());
    let events = run.rollout.promote(run.now()).unwrap();
    assert_eq!(
        events.last().unwrap().message,
        "Promotion completed! shop is now serving v1.5.0"
    );
    assert_eq!(run.rollout.view().phase, Phase::Succeeded);
    assert_eq!(run.rollout.weight(), 100);
    assert_eq!(
        run.rollout.last_finished().unwrap().outcome,
        FinishOutcome::Succeeded
    );
}

#[test]
fn manual_promote_from_waiting_promotion_needs_no_confirmation() {
    let (mut rollout, _) = in_phase(Phase::WaitingPromotion);
    rollout.promote(at(100)).unwrap();
    assert_eq!(rollout.phase(), Phase::Succeeded);
    // The pending confirmation died with the transition.
    assert!(rollout.confirm(false, at(101)).is_err());
}

#[test]
fn abort_rolls_back_and_retry_starts_again_from_the_first_step() {
    let mut run = Runner::start(seed());
    assert_eq!(run.weights(3, &healthy()), [20, 30, 40]);
    run.tick(&window(traffic(900, 0, 40), traffic(100, 50, 50)));
    assert_eq!(run.rollout.failed_checks(), 1);

    // Abort: weight 0 at once, phase Failed, and it stays so.
    let events = run.rollout.abort(run.now()).unwrap();
    assert_eq!(events[0].message, "Rolling back shop aborted by operator");
    assert_eq!(run.rollout.view().phase, Phase::Failed);
    assert_eq!(run.rollout.weight(), 0);
    assert_eq!(run.tick(&healthy()), Decision::Skip);
    assert_eq!(run.rollout.weight(), 0);

    // Retry: counters reset, first step again.
    let events = run.rollout.retry(&run.params, run.now()).unwrap();
    assert_eq!(
        events[0].message,
        "Retrying shop v1.5.0 from the first step"
    );
    assert_eq!(run.rollout.phase(), Phase::Progressing);
    assert_eq!(run.rollout.weight(), 10);
    assert_eq!(run.rollout.failed_checks(), 0);
    assert_eq!(run.weights(5, &healthy()), [20, 30, 40, 50, 100]);
}

#[test]
fn retry_with_confirm_rollout_waits_again() {
    let params = with_hooks(&[WebhookKind::ConfirmRollout]);
    let (mut rollout, _) = Rollout::start_or_resume(&params, None, at(0));
    rollout.abort(at(1)).unwrap();
    rollout.retry(&params, at(2)).unwrap();
    assert_eq!(rollout.phase(), Phase::Waiting);
    assert_eq!(rollout.weight(), 0);
    let (decision, _) = rollout.check(
        &params,
        &healthy(),
        &no_evidence(),
        &GateAnswers::default(),
        at(60),
    );
    assert_eq!(decision, Decision::Hold(Hold::RolloutNotConfirmed));
}
