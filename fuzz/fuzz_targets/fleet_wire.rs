//! Fuzz target: `canaryd::fuzzing::fleet_wire` (docs/security.md#fuzzing); needs the `fleet`
//! feature: `cargo +nightly fuzz run --features fleet fleet_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| canaryd::fuzzing::fleet_wire(data));
