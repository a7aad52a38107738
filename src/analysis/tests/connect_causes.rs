//! A rollback or failed check whose canary could not connect names the kind of connect failure
//! (docs/operations.md#why-a-canary-was-rolled-back), with both judges and on the fast path;
//! one that could connect says nothing of connects.

use super::*;
use crate::analysis::RollbackReason;
use crate::upstream::{ConnectFailure, TlsFailure};

/// `requests` canary requests that all failed, `kinds` of them failed connects.
fn failing(requests: u64, kinds: &[(ConnectFailure, u64)]) -> VersionWindow {
    let mut canary = traffic(requests, requests, 50);
    for (kind, n) in kinds {
        for _ in 0..*n {
            canary.connect.add(*kind);
        }
    }
    canary
}

#[test]
fn a_threshold_rollback_names_the_connect_failures_most_frequent_first() {
    let mut run = Runner::start(seed());
    let expired = ConnectFailure::Tls(TlsFailure::Expired);
    let canary = failing(100, &[(ConnectFailure::Timeout, 60), (expired, 40)]);
    run.weights(5, &window(traffic(900, 0, 40), canary));
    let cause = "100 of 100 canary requests failed to connect: connect timeout (60), \
                 TLS handshake failure (certificate expired) (40)";
    assert_eq!(
        run.rollout.reason(),
        Some(format!("failed checks threshold reached 5: {cause}").as_str())
    );
    let messages = run.messages();
    assert!(
        messages.contains(
            &format!("Rolling back shop failed checks threshold reached 5: {cause}").as_str()
        ),
        "{messages:#?}"
    );
    assert!(
        messages
            .contains(&format!("Halt shop advancement success rate 0.00% < 99%; {cause}").as_str()),
        "{messages:#?}"
    );
}

#[test]
fn failures_that_were_not_connects_name_no_connect_failure() {
    let mut run = Runner::start(seed());
    run.weights(5, &window(traffic(900, 0, 40), traffic(100, 100, 50)));
    assert_eq!(
        run.rollout.reason(),
        Some("failed checks threshold reached 5")
    );
    assert!(
        !run.messages().iter().any(|m| m.contains("connect")),
        "{:#?}",
        run.messages()
    );
}

#[test]
fn a_sequential_rollback_names_the_connect_failure_at_a_check_and_on_the_fast_path() {
    let params = tuned(|a| a.judge = JudgeKind::Sequential);
    let mut run = Runner::start(params.clone());
    let refused = failing(5, &[(ConnectFailure::Refused, 5)]);
    let decision = run.tick(&window(traffic(90, 0, 40), refused));
    assert!(matches!(decision, Decision::Rollback(_)), "{decision:?}");
    let reason = run.rollout.reason().unwrap_or_default();
    assert!(
        reason.ends_with("; 5 of 5 canary requests failed to connect: connection refused"),
        "{reason}"
    );

    // Between checks, on the window drained since the last one.
    let mut watched = Runner::start(params.clone());
    watched.window = window(traffic(90, 0, 40), failing(5, &[(ConnectFailure::Dns, 5)]));
    let mut bursting = StepEvidence::new(&params.analysis.metrics);
    bursting.add(&mut traffic(90, 0, 40), &mut traffic(5, 5, 50));
    let now = watched.now();
    let (decision, events) = watched
        .rollout
        .watch(&params, &watched.window, &bursting, now)
        .unwrap();
    assert!(matches!(
        decision,
        Decision::Rollback(RollbackReason::Evidence { .. })
    ));
    let dns = "5 of 5 canary requests failed to connect: DNS resolution failure";
    assert!(
        events.iter().any(|e| e.message
            == format!("Rolling back shop request-success-rate is worse than allowed (sequential test): {dns}")),
        "{events:#?}"
    );
    assert!(
        watched.rollout.reason().unwrap_or_default().ends_with(dns),
        "{:?}",
        watched.rollout.reason()
    );
}
