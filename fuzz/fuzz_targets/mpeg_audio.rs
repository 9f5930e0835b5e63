#![no_main]
//! MPEG audio frame headers (MP3 in FLV).

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::rtmp::fuzz::mpeg_audio_header(data));
