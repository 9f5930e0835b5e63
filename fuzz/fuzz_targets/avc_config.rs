#![no_main]
//! avcC records and H.264 SPS NAL units.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::media::fuzz::avc_config(data));
