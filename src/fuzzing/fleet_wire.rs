//! The fleet wire decoders as a fuzz entry (docs/security.md#fuzzing, docs/fleet.md#wire-format):
//! what one member reads of what another wrote, dispatched by key as the mirror does it.

use crate::analysis::{Event, Rollout, StepEvidence as JudgeEvidence};
use crate::fleet::keys::{KeyKind, Keys};
use crate::fleet::{FleetCommand, MemberView, MergedEvidence, Operation, RouteState, StepEvidence};

/// The first line is an etcd key, the rest its value. The key is read as the mirror reads
/// keys (`fleet/keys.rs`), and the value decoded as that kind of key's value. Each decoder
/// refuses garbage without a panic, and what it accepts keeps its promises:
///
/// - a key read as a kind is the key that kind writes;
/// - evidence never has more failures than requests, survives encoding and decoding again
///   (the judge's part is JSON with floats, which serde_json reads back only to the nearest
///   bit, so it is not compared), and merging it (the leader sums every member's) never overflows: sums saturate;
/// - the judge's evidence inside it can be merged twice without overflowing;
/// - a route state's rollout, if it is one, survives being written back; its events decode
///   or are skipped, never a panic;
/// - a command survives being written back, and a name kept as unknown is none of the known
///   operations.
pub fn fleet_wire(data: &[u8]) {
    let (key, value) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    let keys = Keys::new("/canaryd", "edge");
    match keys.kind(key) {
        KeyKind::Leader => assert_eq!(key, keys.leader()),
        KeyKind::State(route) => {
            assert_eq!(key, keys.state(route));
            route_state(value);
        }
        KeyKind::Evidence(route, replica) => {
            assert_eq!(key, keys.evidence(route, replica));
            evidence(value);
        }
        KeyKind::Member(replica) => {
            assert_eq!(key, keys.member(replica));
            member(value);
        }
        KeyKind::Command(route) => {
            assert!(key.starts_with(&keys.command(route, "")), "{key}");
            command(value);
        }
        KeyKind::Other => {}
    }
}

fn evidence(value: &[u8]) {
    let Ok(read) = StepEvidence::decode(value) else {
        return;
    };
    for counts in [&read.primary, &read.canary] {
        assert!(counts.failures <= counts.requests, "{read:?}");
    }
    let again = StepEvidence::decode(&read.encode().unwrap()).unwrap();
    assert_eq!(
        (
            again.window,
            &again.revision,
            again.weight,
            again.judge_epoch
        ),
        (read.window, &read.revision, read.weight, read.judge_epoch)
    );
    for (again, read) in [
        (&again.primary, &read.primary),
        (&again.canary, &read.canary),
    ] {
        assert_eq!(
            (again.requests, again.failures),
            (read.requests, read.failures)
        );
        assert_eq!(again.latency, read.latency);
    }
    let twice =
        MergedEvidence::merge(read.window, &read.revision, [("a", &read), ("b", &read)]).unwrap();
    assert_eq!(
        twice.canary.requests,
        read.canary.requests.saturating_mul(2)
    );
    assert_eq!(
        twice.primary.failures,
        read.primary.failures.saturating_mul(2)
    );
    if let Some(judge) = &read.judge {
        if let Ok(theirs) = serde_json::from_value::<JudgeEvidence>(judge.clone()) {
            let mut sum = theirs.clone();
            sum.merge(&theirs);
            assert_eq!(
                sum.canary.requests,
                theirs.canary.requests.saturating_mul(2)
            );
        }
    }
}

fn route_state(value: &[u8]) {
    let Ok(state) = serde_json::from_slice::<RouteState>(value) else {
        return;
    };
    if let Ok(rollout) = serde_json::from_value::<Rollout>(state.rollout.clone()) {
        let written = serde_json::to_vec(&rollout).unwrap();
        let again: Rollout = serde_json::from_slice(&written).unwrap();
        assert_eq!(again, rollout);
    }
    for event in &state.events {
        let _ = serde_json::from_value::<Event>(event.clone());
    }
    let again: RouteState = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
    assert_eq!(
        (again.term, &again.writer, again.window, again.evidence),
        (state.term, &state.writer, state.window, state.evidence)
    );
    assert_eq!(
        (again.weight, &again.phase, &again.commands),
        (state.weight, &state.phase, &state.commands)
    );
}

fn member(value: &[u8]) {
    let Ok(member) = serde_json::from_slice::<MemberView>(value) else {
        return;
    };
    let again: MemberView = serde_json::from_slice(&serde_json::to_vec(&member).unwrap()).unwrap();
    assert_eq!(
        (&again.replica, &again.applied, &again.config_hash),
        (&member.replica, &member.applied, &member.config_hash)
    );
}

fn command(value: &[u8]) {
    let Ok(command) = serde_json::from_slice::<FleetCommand>(value) else {
        return;
    };
    let again: FleetCommand =
        serde_json::from_slice(&serde_json::to_vec(&command).unwrap()).unwrap();
    assert_eq!(again, command);
    let parsed = command.command.as_str().parse::<Operation>();
    match &command.command {
        Operation::Unknown(name) => assert!(parsed.is_err(), "{name:?} is a known operation"),
        known => assert_eq!(parsed.as_ref(), Ok(known)),
    }
}
