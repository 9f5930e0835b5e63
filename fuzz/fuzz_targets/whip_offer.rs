#![no_main]
//! WHIP SDP offers and trickle fragments.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::whip::fuzz::whip_offer(data));
