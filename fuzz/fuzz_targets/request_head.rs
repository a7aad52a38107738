//! Fuzz target: `canaryd::fuzzing::request_head` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::request_head(data));
