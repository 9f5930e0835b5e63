//! End-to-end ladder tests on real encoded media (ffmpeg → FLV → packets).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::ingest::{AudioConfig, AudioFrame, MediaPacket, VideoConfig, VideoFrame};

fn small_profile() -> LadderProfile {
    load_profile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/small.toml")).expect("small.toml")
}

fn settings(segment_ms: u64) -> LadderSettings {
    LadderSettings {
        timeline_offset: std::time::Duration::ZERO,
        part_target: Duration::from_millis(200),
        segment_target: Duration::from_millis(segment_ms),
        // Most tests feed faster than real time and check every frame; a
        // live ladder would skip ahead (see the skip test).
        overload: OverloadSettings {
            max_encode_backlog: None,
            ..OverloadSettings::default()
        },
        ..LadderSettings::default()
    }
}

/// Encodes a short test clip to FLV with ffmpeg; `extra` picks the tracks/GOP.
fn make_flv(dir: &Path, name: &str, video: Option<u32>, audio: bool) -> PathBuf {
    let aac: &[&str] = &["-c:a", "aac", "-b:a", "96k"];
    make_flv_with_audio(dir, name, video, audio.then_some(aac))
}

/// `audio` is the ffmpeg audio codec arguments, `None` for no audio track.
fn make_flv_with_audio(dir: &Path, name: &str, video: Option<u32>, audio: Option<&[&str]>) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]);
    if video.is_some() {
        cmd.args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"]);
    }
    if audio.is_some() {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    }
    if let Some(gop) = video {
        let gop = gop.to_string();
        cmd.args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
        cmd.args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0", "-bf", "0"]);
    }
    if let Some(codec_args) = audio {
        cmd.args(codec_args);
    }
    cmd.args(["-t", "3.5", "-f", "flv"]).arg(&path);
    let status = cmd.status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make {name}");
    path
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// Minimal FLV demuxer: AVC, AAC and MP3 tags into ingest packets. MP3's
/// format comes from the FLV rate/type bits, exact for the 44.1 kHz clips here.
fn flv_packets(path: &Path) -> Vec<MediaPacket> {
    let data = std::fs::read(path).expect("read flv");
    assert_eq!(&data[0..3], b"FLV");
    let mut packets = Vec::new();
    let mut mp3_config = None;
    let mut at = 9 + 4;
    while at + 11 <= data.len() {
        let kind = data[at];
        let size = be24(&data[at + 1..]) as usize;
        let ts = (i64::from(data[at + 7]) << 24) | i64::from(be24(&data[at + 4..]));
        let body = &data[at + 11..at + 11 + size];
        at += 11 + size + 4;
        match kind {
            9 if body.len() > 5 && body[0] & 0x0f == 7 => {
                let cts = {
                    let raw = be24(&body[2..]) as i32;
                    i64::from((raw << 8) >> 8)
                };
                let payload = Bytes::copy_from_slice(&body[5..]);
                if body[1] == 0 {
                    packets.push(MediaPacket::VideoConfig(VideoConfig::H264 { avcc: payload }));
                } else if body[1] == 1 {
                    packets.push(MediaPacket::Video(VideoFrame {
                        dts_ms: ts,
                        pts_ms: ts + cts,
                        keyframe: body[0] >> 4 == 1,
                        data: payload,
                    }));
                }
            }
            8 if body.len() > 2 && body[0] >> 4 == 10 => {
                let payload = Bytes::copy_from_slice(&body[2..]);
                if body[1] == 0 {
                    packets.push(MediaPacket::AudioConfig(AudioConfig::Aac { asc: payload }));
                } else {
                    packets.push(MediaPacket::Audio(AudioFrame {
                        pts_ms: ts,
                        data: payload,
                    }));
                }
            }
            8 if body.len() > 1 && body[0] >> 4 == 2 => {
                assert_eq!((body[0] >> 2) & 0x03, 3, "test clips are 44.1 kHz");
                let config = AudioConfig::Mp3 {
                    sample_rate: 44100,
                    channels: if body[0] & 1 == 1 { 2 } else { 1 },
                };
                if mp3_config.as_ref() != Some(&config) {
                    mp3_config = Some(config.clone());
                    packets.push(MediaPacket::AudioConfig(config));
                }
                packets.push(MediaPacket::Audio(AudioFrame {
                    pts_ms: ts,
                    data: Bytes::copy_from_slice(&body[1..]),
                }));
            }
            _ => {}
        }
    }
    packets
}

async fn run_ladder(packets: Vec<MediaPacket>, profile: &LadderProfile, settings: &LadderSettings) -> Vec<LadderEvent> {
    run_ladder_with_stats(packets, profile, settings).await.0
}

async fn run_ladder_with_stats(
    packets: Vec<MediaPacket>,
    profile: &LadderProfile,
    settings: &LadderSettings,
) -> (Vec<LadderEvent>, std::sync::Arc<LadderStats>) {
    let driven = drive_ladder(packets, profile, settings, None).await;
    (driven.events, driven.stats)
}

/// What a ladder did with its input, and its overload state at the end.
struct Driven {
    events: Vec<LadderEvent>,
    stats: std::sync::Arc<LadderStats>,
    overload: crate::media::OverloadState,
}

/// Feeds `packets` to a ladder until it ends: as fast as it takes them, or
/// with video frames `pace` apart, like a live source.
async fn drive_ladder(
    packets: Vec<MediaPacket>,
    profile: &LadderProfile,
    settings: &LadderSettings,
    pace: Option<Duration>,
) -> Driven {
    init().expect("gstreamer ready");
    let (input_tx, input_rx) = mpsc::channel(64);
    let (output_tx, mut output_rx) = mpsc::channel(64);
    let handle = spawn_ladder("test", profile, settings, input_rx, output_tx);
    let mut overload = handle.overload();
    let feeder = tokio::spawn(async move {
        let mut pace = pace.map(tokio::time::interval);
        for packet in packets {
            if let (Some(pace), MediaPacket::Video(_)) = (pace.as_mut(), &packet) {
                pace.tick().await;
            }
            if input_tx.send(packet).await.is_err() {
                break;
            }
        }
    });
    let mut events = Vec::new();
    let collect = async {
        while let Some(event) = output_rx.recv().await {
            let ended = matches!(event, LadderEvent::Ended(_));
            events.push(event);
            if ended {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), collect)
        .await
        .expect("ladder ends in time");
    feeder.await.expect("feeder");
    let overload = overload.borrow_and_update().clone();
    let stats = handle.stats();
    handle.stop().await;
    Driven {
        events,
        stats,
        overload,
    }
}

struct Rendition {
    spec: RenditionSpec,
    inits: Vec<Bytes>,
    chunks: Vec<CmafChunk>,
    /// init + chunks in output order, as a player would fetch them.
    stream: Vec<u8>,
}

fn by_rendition(events: &[LadderEvent]) -> (Vec<Rendition>, Vec<String>) {
    let Some(LadderEvent::Renditions(specs)) = events.first() else {
        panic!("first event is not Renditions: {:?}", events.first());
    };
    assert!(
        matches!(events.last(), Some(LadderEvent::Ended(Ok(())))),
        "last event: {:?}",
        events.last()
    );
    let ended = events.iter().filter(|e| matches!(e, LadderEvent::Ended(_))).count();
    assert_eq!(ended, 1);
    let mut out: Vec<Rendition> = specs
        .iter()
        .map(|spec| Rendition {
            spec: spec.clone(),
            inits: Vec::new(),
            chunks: Vec::new(),
            stream: Vec::new(),
        })
        .collect();
    let mut warnings = Vec::new();
    for event in &events[1..] {
        match event {
            LadderEvent::Init { rendition, data } => {
                let r = &mut out[*rendition];
                r.inits.push(data.clone());
                r.stream.extend_from_slice(data);
            }
            LadderEvent::Chunk { rendition, chunk } => {
                let r = &mut out[*rendition];
                assert!(!r.inits.is_empty(), "{} chunk before init", r.spec.name);
                r.chunks.push(chunk.clone());
                r.stream.extend_from_slice(&chunk.data);
            }
            LadderEvent::Warning(w) => warnings.push(w.clone()),
            LadderEvent::Renditions(_) => panic!("second Renditions event"),
            LadderEvent::Ended(_) => {}
        }
    }
    (out, warnings)
}

/// Decodes with ffmpeg; returns stderr (empty when clean) and frame count.
fn ffmpeg_decode(dir: &Path, name: &str, data: &[u8]) -> (String, u64) {
    let path = dir.join(format!("{name}.mp4"));
    std::fs::write(&path, data).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let frames = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(decode.status.success(), "{name}: ffmpeg failed");
    (String::from_utf8_lossy(&decode.stderr).into_owned(), frames)
}

/// The avcC profile/compat/level bytes inside an init segment.
fn init_codecs(init: &[u8]) -> String {
    let at = init.windows(4).position(|w| w == b"avcC").expect("init has avcC");
    format!("avc1.{:02x}{:02x}{:02x}", init[at + 5], init[at + 6], init[at + 7])
}

fn segment_starts(r: &Rendition) -> Vec<u64> {
    r.chunks.iter().filter(|c| c.starts_segment).map(|c| c.pts_ns).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_ladder_from_real_source_is_aligned_and_decodable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "av.flv", Some(30), true);
    let events = run_ladder(flv_packets(&flv), &small_profile(), &settings(1000)).await;
    let (renditions, warnings) = by_rendition(&events);
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<_> = renditions.iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(names, ["360p", "240p", "160p", "audio"]);
    assert!(renditions[0].spec.passthrough);
    assert!(
        renditions[0].spec.codecs.starts_with("avc1.42"),
        "ultrafast source is Baseline"
    );
    assert!(!renditions[1].spec.passthrough && !renditions[2].spec.passthrough);
    assert_eq!(renditions[3].spec.codecs, "mp4a.40.2");
    assert_eq!(
        renditions[1].spec.kind,
        RenditionKind::Video {
            width: 426,
            height: 240,
            framerate: 30.0
        }
    );

    for r in &renditions {
        assert_eq!(r.inits.len(), 1, "{}", r.spec.name);
        assert!(r.chunks.len() >= 10, "{}: {} chunks", r.spec.name, r.chunks.len());
        assert!(r.chunks[0].starts_segment && r.chunks[0].independent);
        // Chunks are parts: ~part_target long except segment ends.
        let full = r
            .chunks
            .iter()
            .filter(|c| (170_000_000..=235_000_000).contains(&c.duration_ns))
            .count();
        assert!(
            full * 10 >= r.chunks.len() * 7,
            "{}: durations {:?}",
            r.spec.name,
            r.chunks.iter().map(|c| c.duration_ns / 1_000_000).collect::<Vec<_>>()
        );
        for c in &r.chunks {
            assert!(c.duration_ns <= 260_000_000, "{}: chunk {c:?}", r.spec.name);
            if c.starts_segment {
                assert!(c.independent && &c.data[4..8] == b"styp");
            }
        }
        let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
        assert!(errors.is_empty(), "{}: {errors}", r.spec.name);
        assert!(frames > 0, "{}: no frames decoded", r.spec.name);
        if let RenditionKind::Video { .. } = r.spec.kind {
            assert!(frames >= 90, "{}: only {frames} frames", r.spec.name);
            assert_eq!(init_codecs(&r.inits[0]), r.spec.codecs, "{}", r.spec.name);
        }
    }
    let top = segment_starts(&renditions[0]);
    assert!(top.len() >= 3, "segments: {top:?}");
    for w in top.windows(2) {
        assert!((900_000_000..=1_100_000_000).contains(&(w[1] - w[0])), "{top:?}");
    }
    for r in &renditions[1..3] {
        assert_eq!(segment_starts(r), top, "{} segments not aligned", r.spec.name);
    }
}

/// The passthrough profile pushes both tracks straight into their muxers
/// (no appsrc threads): the copy must still come out whole and in parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_profile_copies_both_tracks_in_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "pt.flv", Some(30), true);
    let packets = flv_packets(&flv);
    let video_frames = packets.iter().filter(|p| matches!(p, MediaPacket::Video(_))).count();
    let profile = load_profile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/passthrough.toml"))
        .expect("passthrough.toml");
    let events = run_ladder(packets, &profile, &settings(1000)).await;
    assert!(
        matches!(events.last(), Some(LadderEvent::Ended(Ok(())))),
        "{:?}",
        events.last()
    );
    let (renditions, warnings) = by_rendition(&events);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(renditions.len(), 2);
    assert!(renditions[0].spec.passthrough && renditions[1].spec.passthrough);
    assert_eq!(renditions[1].spec.name, "audio");
    for r in &renditions {
        assert_eq!(r.inits.len(), 1, "{}", r.spec.name);
        assert!(r.chunks[0].starts_segment && r.chunks[0].independent);
        for c in &r.chunks {
            assert!(c.duration_ns <= 260_000_000, "{}: chunk {c:?}", r.spec.name);
            assert!(c.source_arrival.is_some(), "{}: chunk without arrival", r.spec.name);
        }
        let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
        assert!(errors.is_empty(), "{}: {errors}", r.spec.name);
        if let RenditionKind::Video { .. } = r.spec.kind {
            assert_eq!(frames as usize, video_frames, "every source frame is copied");
        } else {
            assert!(frames > 100, "audio: {frames} frames");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_and_video_only_inputs_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audio = make_flv(dir.path(), "a.flv", None, true);
    let events = run_ladder(flv_packets(&audio), &small_profile(), &settings(1000)).await;
    let (renditions, _) = by_rendition(&events);
    assert_eq!(renditions.len(), 1);
    assert_eq!(renditions[0].spec.name, "audio");
    let (errors, frames) = ffmpeg_decode(dir.path(), "audio-only", &renditions[0].stream);
    assert!(errors.is_empty() && frames > 100, "{errors} / {frames}");

    let video = make_flv(dir.path(), "v.flv", Some(30), false);
    let events = run_ladder(flv_packets(&video), &small_profile(), &settings(1000)).await;
    let (renditions, _) = by_rendition(&events);
    let names: Vec<_> = renditions.iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(names, ["360p", "240p", "160p"]);
    for r in &renditions {
        let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
        assert!(
            errors.is_empty() && frames >= 90,
            "{}: {errors} / {frames}",
            r.spec.name
        );
    }
}

/// Issue 14: a publisher announcing a track (its codec configuration) that
/// never sends a frame of it, then leaving. fmp4mux panics when drained at
/// EOS without ever having had a buffer, and a panicked muxer cannot be
/// torn down safely (its streaming thread outlives the pipeline: a
/// segfault). The ladder must end cleanly, and the track that did come
/// must be complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_announced_but_never_sent_ends_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let av = flv_packets(&make_flv(dir.path(), "av.flv", Some(30), true));
    let config = |video: bool| {
        av.iter()
            .find(|p| match p {
                MediaPacket::VideoConfig(_) => video,
                MediaPacket::AudioConfig(_) => !video,
                _ => false,
            })
            .cloned()
            .expect("config")
    };
    let frames = |video: bool| {
        av.iter()
            .filter(move |p| match p {
                MediaPacket::Video(_) => video,
                MediaPacket::Audio(_) => !video,
                _ => false,
            })
            .cloned()
    };
    for profile in [passthrough_profile(), small_profile()] {
        // AAC announced, only video sent; then the reverse.
        for video_sent in [true, false] {
            let mut packets = vec![config(true), config(false)];
            packets.extend(frames(video_sent));
            let events = run_ladder(packets, &profile, &settings(1000)).await;
            let (renditions, _) = by_rendition(&events);
            let fed: Vec<&Rendition> = renditions
                .iter()
                .filter(|r| matches!(r.spec.kind, RenditionKind::Video { .. }) == video_sent)
                .collect();
            assert!(
                !fed.is_empty(),
                "{:?}",
                renditions.iter().map(|r| &r.spec.name).collect::<Vec<_>>()
            );
            for r in fed {
                let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
                assert!(
                    errors.is_empty() && frames >= 90,
                    "{}: {errors} / {frames}",
                    r.spec.name
                );
            }
        }
    }
}

/// Issue 14: after a publisher whose timestamps jump (2³¹ ms a frame) or
/// run backwards leaves, the ladder still drains at its input's end (it
/// used to end as "pipeline did not drain within 5s").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_timestamps_still_drain_when_the_publisher_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = flv_packets(&make_flv(dir.path(), "av.flv", Some(60), true));
    // The ladder must cope on its own: WHIP and RTSP feed it without the
    // RTMP clock, and a frozen clock is what a rebase by a zero step gave.
    type Pattern = (&'static str, fn(usize) -> i64);
    let patterns: [Pattern; 3] = [
        ("frozen", |_| 100_000),
        ("jumps", |i| (i as i64).wrapping_mul(0x7fff_ffff) & 0xffff_ffff),
        ("backwards", |i| if i % 2 == 0 { 100_000 } else { 1_000 }),
    ];
    for video in [true, false] {
        let config = clip
            .iter()
            .find(|p| match p {
                MediaPacket::VideoConfig(_) => video,
                MediaPacket::AudioConfig(_) => !video,
                _ => false,
            })
            .cloned()
            .expect("config");
        // A GOP of 5 frames, or 5 AAC frames, over and over.
        let frames: Vec<MediaPacket> = clip
            .iter()
            .filter(|p| match p {
                MediaPacket::Video(_) => video,
                MediaPacket::Audio(_) => !video,
                _ => false,
            })
            .take(5)
            .cloned()
            .collect();
        for (name, ts) in patterns {
            let mut packets = vec![config.clone()];
            packets.extend((0..2_000).map(|i| match &frames[i % frames.len()] {
                MediaPacket::Video(frame) => MediaPacket::Video(VideoFrame {
                    dts_ms: ts(i),
                    pts_ms: ts(i),
                    ..frame.clone()
                }),
                MediaPacket::Audio(frame) => MediaPacket::Audio(AudioFrame {
                    pts_ms: ts(i),
                    ..frame.clone()
                }),
                other => other.clone(),
            }));
            let started = std::time::Instant::now();
            let (events, stats) = run_ladder_with_stats(packets, &passthrough_profile(), &settings(1000)).await;
            let dropped = stats.video_frames_dropped() + stats.audio_frames_dropped();
            assert_eq!(dropped, 0, "{name} (video: {video}): frames dropped");
            assert!(
                matches!(events.last(), Some(LadderEvent::Ended(Ok(())))),
                "{name} (video: {video}): {:?} after {:?}",
                events.last(),
                started.elapsed()
            );
            let chunks = events.iter().filter(|e| matches!(e, LadderEvent::Chunk { .. })).count();
            assert!(chunks > 0, "{name} (video: {video}): nothing came out");
        }
    }
}

/// ffprobe's view of the first stream: "codec_name,profile,sample_rate,channels".
fn probe_audio(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(format!("{name}-probe.mp4"));
    std::fs::write(&path, data).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,sample_rate,channels",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed on {name}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_source_audio_is_encoded_once_to_aac() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mp3: &[&str] = &["-c:a", "libmp3lame", "-ar", "44100", "-b:a", "64k"];
    let flv = make_flv_with_audio(dir.path(), "mp3.flv", Some(30), Some(mp3));
    let packets = flv_packets(&flv);
    assert!(packets.iter().any(|p| matches!(
        p,
        MediaPacket::AudioConfig(AudioConfig::Mp3 {
            sample_rate: 44100,
            channels: 1
        })
    )));
    let mut profile = small_profile();
    profile.audio_bitrate_kbps = 96;
    let events = run_ladder(packets, &profile, &settings(1000)).await;
    let (renditions, warnings) = by_rendition(&events);
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<_> = renditions.iter().map(|r| r.spec.name.as_str()).collect();
    // One audio rendition for the whole ladder, whatever the number of video rungs.
    assert_eq!(names, ["360p", "240p", "160p", "audio"]);
    let audio = &renditions[3];
    assert_eq!(
        audio.spec.kind,
        RenditionKind::Audio {
            sample_rate: 44100,
            channels: 1
        }
    );
    assert_eq!(audio.spec.codecs, "mp4a.40.2");
    assert!(!audio.spec.passthrough, "encoded audio is not passthrough");
    // The profile's bitrate, not the 64 kbit/s of the MP3 source.
    assert_eq!(audio.spec.average_bandwidth, 96_000);

    assert_eq!(audio.inits.len(), 1);
    assert!(audio.chunks.len() >= 10, "{} audio chunks", audio.chunks.len());
    assert!(audio.chunks.iter().all(|c| c.independent));
    let total_ns: u64 = audio.chunks.iter().map(|c| c.duration_ns).sum();
    assert!(
        (3_200_000_000..=3_800_000_000).contains(&total_ns),
        "audio lasts {total_ns} ns"
    );
    assert_eq!(probe_audio(dir.path(), "audio", &audio.stream), "aac,LC,44100,1");
    let (errors, frames) = ffmpeg_decode(dir.path(), "mp3-audio", &audio.stream);
    assert!(errors.is_empty(), "decode errors: {errors}");
    // 3.5 s at 44.1 kHz is ~150 AAC frames of 1024 samples.
    assert!(frames >= 140, "only {frames} AAC frames");

    for r in &renditions[..3] {
        let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
        assert!(
            errors.is_empty() && frames >= 90,
            "{}: {errors} / {frames}",
            r.spec.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_video_config_ends_with_error() {
    let packets = vec![
        MediaPacket::VideoConfig(VideoConfig::H264 {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x09, 0x67]),
        }),
        MediaPacket::Video(VideoFrame {
            dts_ms: 0,
            pts_ms: 0,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }),
        MediaPacket::Video(VideoFrame {
            dts_ms: 1000,
            pts_ms: 1000,
            keyframe: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        }),
    ];
    let events = run_ladder(packets, &small_profile(), &settings(1000)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let Some(LadderEvent::Ended(Err(reason))) = events.first() else {
        panic!("expected an error, got {events:?}");
    };
    assert!(reason.contains("video config"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frames_after_a_good_config_fail_cleanly_or_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "v.flv", Some(30), false);
    let mut packets = flv_packets(&flv);
    // Truncate NAL length prefixes and rewind time in the middle of the stream.
    for packet in packets.iter_mut().skip(20).take(10) {
        if let MediaPacket::Video(frame) = packet {
            frame.data = Bytes::from_static(&[0, 0, 9, 9, 1]);
            frame.dts_ms -= 500;
            frame.pts_ms -= 500;
        }
    }
    let events = run_ladder(packets, &small_profile(), &settings(1000)).await;
    assert!(matches!(events.first(), Some(LadderEvent::Renditions(_))));
    assert!(matches!(events.last(), Some(LadderEvent::Ended(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_source_gop_switches_to_encoded_top_rung() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "long.flv", Some(240), true);
    let events = run_ladder(flv_packets(&flv), &small_profile(), &settings(1000)).await;
    let (renditions, warnings) = by_rendition(&events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("keyframe interval to 2 s"), "{}", warnings[0]);
    let top = &renditions[0];
    assert_eq!(top.inits.len(), 2, "top rung re-initialises on the switch");
    let starts = segment_starts(top);
    let lower = segment_starts(&renditions[1]);
    assert_eq!(starts, lower, "segments aligned after the switch");
    // First segment runs until the switch (1.5 × target), then ~target each.
    assert!(starts.len() >= 3, "{starts:?}");
    assert!(
        (1_400_000_000..=1_600_000_000).contains(&(starts[1] - starts[0])),
        "{starts:?}"
    );
    for w in starts[1..].windows(2) {
        assert!((950_000_000..=1_050_000_000).contains(&(w[1] - w[0])), "{starts:?}");
    }
    // After the switch the top rung is a valid stream on its own init.
    let switch_init = &top.inits[1];
    let mut after = switch_init.to_vec();
    let switch_pts = starts[1];
    for c in top.chunks.iter().filter(|c| c.pts_ns >= switch_pts) {
        after.extend_from_slice(&c.data);
    }
    let (errors, frames) = ffmpeg_decode(dir.path(), "after-switch", &after);
    assert!(errors.is_empty() && frames >= 45, "{errors} / {frames}");
}

#[test]
fn plans_rungs_below_source_with_passthrough_on_top() {
    let profile = small_profile();
    let plan = pipeline::plan_video(&profile, 640, 360, None);
    let names: Vec<_> = plan.iter().map(|r| (r.name.as_str(), r.width, r.height)).collect();
    assert_eq!(names, [("360p", 640, 360), ("240p", 426, 240), ("160p", 284, 160)]);
    let plan = pipeline::plan_video(&profile, 320, 180, Some(500_000));
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].kind, pipeline::RungKind::Passthrough { fallback_kbps: 500 });
    let mut no_copy = profile.clone();
    no_copy.passthrough = false;
    let plan = pipeline::plan_video(&no_copy, 640, 360, None);
    assert!(plan.iter().all(|r| matches!(r.kind, pipeline::RungKind::Encode { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_the_ladder_throws_away_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "drops.flv", Some(30), false);
    let mut packets = flv_packets(&flv);
    let is_video = |p: &MediaPacket| matches!(p, MediaPacket::Video(_));
    let first_key = packets
        .iter()
        .position(|p| matches!(p, MediaPacket::Video(f) if f.keyframe))
        .expect("a keyframe");
    // Without its first keyframe the stream opens on delta frames, which
    // no decoder can use: each is dropped until the next keyframe.
    packets.remove(first_key);
    let second_key = packets
        .iter()
        .position(|p| matches!(p, MediaPacket::Video(f) if f.keyframe))
        .expect("a second keyframe");
    let leading_deltas = packets[first_key..second_key].iter().filter(|p| is_video(p)).count() as u64;
    assert!(leading_deltas > 0);
    // A frame replayed later has a decode time that runs backwards.
    let replayed = packets[second_key].clone();
    packets.insert(second_key + 10, replayed);

    let (events, stats) = run_ladder_with_stats(packets, &passthrough_profile(), &settings(1000)).await;
    assert!(
        matches!(events.last(), Some(LadderEvent::Ended(Ok(())))),
        "{:?}",
        events.last()
    );
    assert_eq!(stats.video_frames_dropped(), leading_deltas + 1);
    assert_eq!(stats.audio_frames_dropped(), 0);
}

/// Issue 14, defect 4: a publisher stepping its timestamps by 2³¹ ms a
/// frame overflowed `ClockTime` after ~8,600 frames and panicked the ladder.
/// Now each jump is rebased: the ladder ends normally and its timeline
/// stays near real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_stepping_by_two_to_the_31_neither_panic_nor_run_the_timeline_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "jumps.flv", Some(30), false);
    let clip = flv_packets(&flv);
    let config = clip
        .iter()
        .find(|p| matches!(p, MediaPacket::VideoConfig(_)))
        .cloned()
        .expect("config");
    let frames: Vec<VideoFrame> = clip
        .iter()
        .filter_map(|p| match p {
            MediaPacket::Video(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let mut packets = vec![config];
    for i in 0..9_000usize {
        let ts = i as i64 * 0x7fff_ffff;
        let frame = &frames[i % frames.len()];
        packets.push(MediaPacket::Video(VideoFrame {
            dts_ms: ts,
            pts_ms: ts,
            keyframe: frame.keyframe,
            data: frame.data.clone(),
        }));
    }
    let events = run_ladder(packets, &passthrough_profile(), &settings(1000)).await;
    assert!(
        matches!(events.last(), Some(LadderEvent::Ended(Ok(())))),
        "the ladder must end with a report, not a panic: {:?}",
        events.last()
    );
    let chunks: Vec<&CmafChunk> = events
        .iter()
        .filter_map(|e| match e {
            LadderEvent::Chunk { chunk, .. } => Some(chunk),
            _ => None,
        })
        .collect();
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    let last_end = chunks.iter().map(|c| c.pts_ns + c.duration_ns).max().unwrap_or(0);
    assert!(
        last_end < Duration::from_secs(3600).as_nanos() as u64,
        "9,000 frames pushed the timeline to {last_end} ns"
    );
}

/// A 3.5 s clip (`make_flv`) followed by `times - 1` copies of its video,
/// each 3.5 s later.
fn video_repeated(clip: &[MediaPacket], times: i64) -> Vec<MediaPacket> {
    let mut packets = clip.to_vec();
    for round in 1..times {
        packets.extend(clip.iter().filter_map(|p| match p {
            MediaPacket::Video(f) => Some(MediaPacket::Video(VideoFrame {
                dts_ms: f.dts_ms + 3500 * round,
                pts_ms: f.pts_ms + 3500 * round,
                ..f.clone()
            })),
            _ => None,
        }));
    }
    packets
}

/// Overload shedding on a real pipeline: a ladder told it is always behind
/// (a speed of 10× real time is required) sheds its most expensive encoded
/// rung to half its frame rate. The shed rung still decodes cleanly and
/// keeps every frame (repeats) and its segments on the same grid as every
/// other rung; the cheapest rung and the copy are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_ladder_sheds_the_top_encoded_rung_and_stays_aligned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "shed.flv", Some(30), false);
    // The clip twice in a row (7 s): long enough for a few judgements.
    let packets = video_repeated(&flv_packets(&flv), 2);
    let mut settings = settings(1000);
    settings.overload = OverloadSettings {
        enabled: true,
        window: Duration::from_secs(1),
        min_speed: 10.0,
        min_backlog: Duration::ZERO,
        restore_after: Duration::from_secs(3600),
        max_divisor: 2,
        max_encode_backlog: None,
    };
    // Paced like a live source, so that the ladder runs long enough to be judged.
    let driven = drive_ladder(packets, &small_profile(), &settings, Some(Duration::from_millis(33))).await;
    let (events, state) = (driven.events, driven.overload);
    assert!(state.degraded, "{state:?}");
    assert_eq!(state.shed, vec![("240p".to_string(), 2)]);

    let (renditions, _) = by_rendition(&events);
    let frames: Vec<u64> = renditions
        .iter()
        .map(|r| {
            let (errors, frames) = ffmpeg_decode(dir.path(), &r.spec.name, &r.stream);
            assert!(errors.is_empty(), "{}: {errors}", r.spec.name);
            frames
        })
        .collect();
    // Shed frames are repeats, not gaps: every rung has every frame.
    assert!(frames[0] >= 90 && frames[1] == frames[2], "{frames:?}");
    let top = segment_starts(&renditions[0]);
    for r in &renditions[1..3] {
        assert_eq!(segment_starts(r), top, "{} segments not aligned", r.spec.name);
    }
}

/// A ladder whose encodes cannot keep up (fed at four times real time, x264
/// at `veryslow`, a 100 ms skip threshold) skips its encode branch ahead to
/// source keyframes instead of holding up the copy. The copy has every
/// frame; every encoded rung decodes cleanly, its gaps filled with repeats
/// (a frame for every frame time, no hole in its timeline, no part longer
/// than the part target plus a frame, segments on the copy's grid), and the
/// skip is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encode_branch_that_cannot_keep_up_skips_ahead_and_leaves_no_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flv = make_flv(dir.path(), "skip.flv", Some(15), false);
    // The clip three times in a row (10.5 s), keyframes every 0.5 s.
    let packets = video_repeated(&flv_packets(&flv), 3);
    let sent = packets.iter().filter(|p| matches!(p, MediaPacket::Video(_))).count() as u64;
    let mut profile = small_profile();
    profile.encoder.speed_preset = "veryslow".into();
    let mut settings = settings(1000);
    settings.overload.max_encode_backlog = Some(Duration::from_millis(100));
    let driven = drive_ladder(packets, &profile, &settings, Some(Duration::from_millis(8))).await;
    let skipped = driven.stats.encode_skipped();
    assert!(skipped >= Duration::from_millis(500), "skipped {skipped:?}");

    let (renditions, _) = by_rendition(&driven.events);
    let copy = renditions.iter().find(|r| r.spec.passthrough).expect("a copy");
    let (errors, copy_frames) = ffmpeg_decode(dir.path(), "copy", &copy.stream);
    assert!(errors.is_empty(), "copy: {errors}");
    assert_eq!(copy_frames, sent, "the copy has every frame");
    let grid = segment_starts(copy);
    let part_limit = settings.part_target.as_nanos() as u64 + 34_000_000;
    let encoded = renditions
        .iter()
        .filter(|r| !r.spec.passthrough && matches!(r.spec.kind, RenditionKind::Video { .. }));
    let mut checked = 0;
    for r in encoded {
        let name = &r.spec.name;
        let (errors, frames) = ffmpeg_decode(dir.path(), name, &r.stream);
        assert!(errors.is_empty(), "{name}: {errors}");
        // A frame for every frame time up to the end of the rung's timeline
        // (only a tail can be missing: input that ended during a skip).
        let first = r.chunks.first().map_or(0, |c| c.pts_ns);
        let end = r.chunks.last().map_or(0, |c| c.pts_ns + c.duration_ns);
        let expected = (end - first + 16_666_666) / 33_333_333;
        assert!(
            frames.abs_diff(expected) <= 1,
            "{name}: {frames} frames over {} ms",
            (end - first) / 1_000_000
        );
        assert!(frames >= copy_frames / 2, "{name}: {frames} of {copy_frames} frames");
        for pair in r.chunks.windows(2) {
            let end = pair[0].pts_ns + pair[0].duration_ns;
            assert!(end.abs_diff(pair[1].pts_ns) < 2_000_000, "{name}: a hole at {end} ns");
        }
        let longest = r.chunks.iter().map(|c| c.duration_ns).max().unwrap_or(0);
        assert!(longest <= part_limit, "{name}: a {longest} ns part");
        let starts = segment_starts(r);
        assert!(
            grid.starts_with(&starts) && starts.len() >= 5,
            "{name}: {starts:?} vs {grid:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "240p and 160p");
}

fn passthrough_profile() -> LadderProfile {
    load_profile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/passthrough.toml")).expect("passthrough.toml")
}

/// A VP8 clip as WHIP would hand it over: whole frames (IVF: 32-byte file
/// header, then a 12-byte header per frame), 30 fps.
fn vp8_packets(dir: &Path) -> Vec<MediaPacket> {
    let path = dir.join("v.ivf");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args([
            "-t",
            "3",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-g",
            "30",
            "-b:v",
            "300k",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed to make the VP8 clip");
    let data = std::fs::read(&path).expect("read ivf");
    let mut packets = vec![MediaPacket::VideoConfig(VideoConfig::Vp8 {
        width: 320,
        height: 180,
    })];
    let (mut at, mut index) = (32, 0i64);
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let Some(frame) = data.get(at + 12..at + 12 + size) else {
            break;
        };
        at += 12 + size;
        packets.push(MediaPacket::Video(VideoFrame {
            dts_ms: index * 1000 / 30,
            pts_ms: index * 1000 / 30,
            keyframe: frame.first().is_some_and(|b| b & 1 == 0),
            data: Bytes::copy_from_slice(frame),
        }));
        index += 1;
    }
    packets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_source_is_encoded_on_every_rung_and_decode_errors_ask_for_a_keyframe() {
    init().expect("gstreamer ready");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut packets = vp8_packets(dir.path());
    // The second keyframe with a broken sync code: the decoder refuses it.
    let second_key = packets
        .iter_mut()
        .filter_map(|p| match p {
            MediaPacket::Video(frame) if frame.keyframe => Some(frame),
            _ => None,
        })
        .nth(1)
        .expect("a second keyframe");
    let mut broken = second_key.data.to_vec();
    broken[3] = 0;
    second_key.data = Bytes::from(broken);
    let (input_tx, input_rx) = mpsc::channel(64);
    let (output_tx, mut output_rx) = mpsc::channel(64);
    let handle = spawn_ladder("vp8", &small_profile(), &settings(1000), input_rx, output_tx);
    let wanted = handle.keyframe_wanted();
    let asked = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(20), wanted.notified())
            .await
            .is_ok()
    });
    let feeder = tokio::spawn(async move {
        for packet in packets {
            if input_tx.send(packet).await.is_err() {
                break;
            }
        }
    });
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(event) = output_rx.recv().await {
            let ended = matches!(event, LadderEvent::Ended(_));
            events.push(event);
            if ended {
                break;
            }
        }
    })
    .await
    .expect("ladder ends in time");
    feeder.await.expect("feeder");
    let stats = handle.stats();
    handle.stop().await;
    let ended = events.iter().find_map(|e| match e {
        LadderEvent::Ended(result) => Some(format!("{result:?}")),
        _ => None,
    });
    assert!(
        asked.await.expect("waiter"),
        "a decode error asked for a keyframe ({} events, ended {ended:?}, decode errors {})",
        events.len(),
        stats.decode_errors()
    );
    assert!(stats.decode_errors() >= 1, "decode errors are counted");
    let (renditions, _) = by_rendition(&events);
    let video: Vec<&Rendition> = renditions
        .iter()
        .filter(|r| matches!(r.spec.kind, RenditionKind::Video { .. }))
        .collect();
    assert!(!video.is_empty());
    for rendition in &video {
        // Nothing copies VP8: every rung is an H.264 encode, and keyframes
        // follow the 1 s grid although the source's come every second too.
        assert!(!rendition.spec.passthrough, "{}", rendition.spec.name);
        assert!(rendition.spec.codecs.starts_with("avc1."), "{}", rendition.spec.codecs);
        assert!(!rendition.chunks.is_empty(), "{} produced media", rendition.spec.name);
    }
    assert_eq!(video[0].spec.name, "180p", "the top rung keeps the source size");
}
