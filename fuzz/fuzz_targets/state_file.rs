//! Fuzz target: `canaryd::fuzzing::state_file` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::state_file(data));
