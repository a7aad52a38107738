//! Fuzz target: `canaryd::fuzzing::config` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::config(data));
