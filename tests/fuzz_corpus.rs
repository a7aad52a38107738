//! Every fuzz target's corpus replayed on stable Rust (docs/security.md#fuzzing): the seeds
//! and every input a fuzzer ever crashed canaryd with run through the same entry functions as
//! the `fuzz/` targets, so a fixed crash stays fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no input", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{} failed", input.display());
    }
}

#[test]
fn config_corpus() {
    replay("config", canaryd::fuzzing::config);
}

#[test]
fn request_head_corpus() {
    replay("request_head", canaryd::fuzzing::request_head);
}

#[test]
fn rounds_boundary_corpus() {
    replay("rounds_boundary", canaryd::fuzzing::rounds_boundary);
}

#[test]
fn state_file_corpus() {
    replay("state_file", canaryd::fuzzing::state_file);
}

#[test]
fn routing_corpus() {
    replay("routing", canaryd::fuzzing::routing);
}

#[test]
fn grpc_fields_corpus() {
    replay("grpc_fields", canaryd::fuzzing::grpc_fields);
}

#[test]
fn external_answer_corpus() {
    replay("external_answer", canaryd::fuzzing::external_answer);
}

#[test]
fn upstream_response_corpus() {
    replay("upstream_response", canaryd::fuzzing::upstream_response);
}

#[cfg(feature = "fleet")]
#[test]
fn fleet_wire_corpus() {
    replay("fleet_wire", canaryd::fuzzing::fleet_wire);
}

#[test]
fn fast_head_corpus() {
    replay("fast_head", canaryd::fuzzing::fast_head);
}
