#![no_main]
//! Playlist query strings and LL-HLS delivery directives.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::hls::fuzz::playlist_query(data));
