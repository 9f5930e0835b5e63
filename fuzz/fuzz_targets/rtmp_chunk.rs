#![no_main]
//! RTMP chunk stream reassembly, with Set Chunk Size / Abort and the message parsers.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulse_edge::ingest::rtmp::fuzz::rtmp_chunk_stream(data));
