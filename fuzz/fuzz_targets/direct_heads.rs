//! See `sluice::fuzzing::direct_heads` for what is driven and what must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::direct_heads(data));
