//! Fuzz target: `canaryd::fuzzing::routing` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::routing(data));
