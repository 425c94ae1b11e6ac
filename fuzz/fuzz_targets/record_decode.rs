//! The embedded store's record decoder: any payload either fails to decode or decodes to a
//! record that encodes to a frame which reads back as the same record; a run of frames (a
//! segment) is read until its end, a torn tail or a bad checksum, never past it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_engine::embedded::record::{decode, read_frame, Frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode(data) {
        let mut out = Vec::new();
        let n = rec.encode_frame(&mut out);
        match read_frame(&out) {
            Frame::Good(payload, len) => {
                assert_eq!(len, n);
                assert_eq!(decode(payload).expect("re-encoded record decodes"), rec);
            }
            other => panic!("an encoded record reads back as {other:?}"),
        }
    }
    let mut at = 0;
    while at < data.len() {
        match read_frame(&data[at..]) {
            Frame::Good(payload, len) => {
                assert!(len > 0 && at + len <= data.len());
                let _ = decode(payload);
                at += len;
            }
            Frame::End | Frame::Short | Frame::Corrupt(_) => break,
        }
    }
});
