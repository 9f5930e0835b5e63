#![no_main]
//! VP8 keyframe headers (WHIP).

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::whip::fuzz::vp8_frame(data));
