//! Fuzz target: `canaryd::fuzzing::upstream_response` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::upstream_response(data));
