//! Fuzz target: `canaryd::fuzzing::fast_head` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::fast_head(data));
