#![no_main]
//! AAC AudioSpecificConfig.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::media::fuzz::aac_config(data));
