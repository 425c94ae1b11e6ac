//! See `sluice::fuzzing::sqs_request` for what is driven and what must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::sqs_request(data));
