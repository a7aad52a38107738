//! Fuzz target: `canaryd::fuzzing::rounds_boundary` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::rounds_boundary(data));
