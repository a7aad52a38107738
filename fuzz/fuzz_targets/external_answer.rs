//! Fuzz target: `canaryd::fuzzing::external_answer` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::external_answer(data));
