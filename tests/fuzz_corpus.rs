//! Replays the saved fuzz corpus (`testdata/fuzz/<target>/`, seeds plus what
//! `make fuzz` kept) through the same entry points the libFuzzer harnesses in
//! `fuzz/` call, so an input that once crashed a parser stays a test. Runs in
//! the test profile (overflow checks on) and takes seconds.

use std::path::{Path, PathBuf};

use pulse_edge::control::tokens::fuzz as tokens;
use pulse_edge::hls::fuzz as hls;
use pulse_edge::ingest::rtmp::fuzz as rtmp;
use pulse_edge::ingest::whip::fuzz as whip;
use pulse_edge::media::fuzz as media;

/// A harness's entry point: any bytes in, never a panic.
type Entry = fn(&[u8]);

/// Every harness in `fuzz/fuzz_targets/`, by its corpus directory.
const TARGETS: [(&str, Entry); 10] = [
    ("rtmp_chunk", rtmp::rtmp_chunk_stream),
    ("amf0", rtmp::amf0_values),
    ("flv_tag", rtmp::flv_tag),
    ("mpeg_audio", rtmp::mpeg_audio_header),
    ("avc_config", media::avc_config),
    ("aac_config", media::aac_config),
    ("vp8", whip::vp8_frame),
    ("whip_offer", whip::whip_offer),
    ("playlist_query", hls::playlist_query),
    ("token", tokens::token),
];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Every input of `target`; the failures are listed by file, each with its
/// panic message, rather than stopping at the first.
fn replay(target: &str, entry: Entry) {
    let files = inputs(target);
    assert!(!files.is_empty(), "corpus of {target} is empty");
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| entry(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs panicked:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

fn entry(target: &str) -> Entry {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, entry)| *entry)
        .expect("known target")
}

#[test]
fn every_corpus_directory_has_a_harness_and_every_harness_a_corpus() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_root())
        .expect("testdata/fuzz")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|(name, _)| (*name).to_owned()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
    let mut harnesses: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|entry| entry.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    harnesses.sort();
    assert_eq!(harnesses, targets);
}

#[test]
fn rtmp_chunk_corpus() {
    replay("rtmp_chunk", entry("rtmp_chunk"));
}

#[test]
fn amf0_corpus() {
    replay("amf0", entry("amf0"));
}

#[test]
fn flv_tag_corpus() {
    replay("flv_tag", entry("flv_tag"));
}

#[test]
fn mpeg_audio_corpus() {
    replay("mpeg_audio", entry("mpeg_audio"));
}

#[test]
fn avc_config_corpus() {
    replay("avc_config", entry("avc_config"));
}

#[test]
fn aac_config_corpus() {
    replay("aac_config", entry("aac_config"));
}

#[test]
fn vp8_corpus() {
    replay("vp8", entry("vp8"));
}

#[test]
fn whip_offer_corpus() {
    replay("whip_offer", entry("whip_offer"));
}

#[test]
fn playlist_query_corpus() {
    replay("playlist_query", entry("playlist_query"));
}

#[test]
fn token_corpus() {
    replay("token", entry("token"));
}
