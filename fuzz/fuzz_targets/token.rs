#![no_main]
//! Playback tokens against a fixed key ring.

use std::sync::OnceLock;

use pulse_edge::control::tokens::{fuzz, PlaybackTokens};

/// Built once per process, as the server builds its ring once.
static RING: OnceLock<PlaybackTokens> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::token_against(RING.get_or_init(fuzz::fixed_ring), data));
