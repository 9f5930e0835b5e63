#![no_main]
//! AMF0 command and data message bodies.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::rtmp::fuzz::amf0_values(data));
