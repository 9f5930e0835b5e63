#![no_main]
//! FLV audio/video tag bodies, including the Enhanced RTMP video header.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::rtmp::fuzz::flv_tag(data));
