//! Fuzz target: `canaryd::fuzzing::grpc_fields` (docs/security.md#fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::grpc_fields(data));
