//! See `sluice::fuzzing::miniqueue_commands` for what is driven and what must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::miniqueue_commands(data));
