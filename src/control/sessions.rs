//! Live publish sessions as the admin API and the metrics see them: what is
//! being published, at what rate, and how each rendition keeps up. A sampler
//! per session reads the counters ingest and hls keep (atomics, nothing on
//! the media path waits for it) once a second, keeps a few seconds of
//! samples, and enforces the app's ingest bitrate limit.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::live::{AudioInput, LiveStreamStats, RenditionStats, VideoInput};
use crate::hls::StreamPackager;
use crate::ingest::{AudioConfig, IngestCounters, VideoConfig};
use crate::media::LadderStats;

/// Rates are averaged over this much time: long enough that a keyframe
/// burst does not trip the bitrate limit, short enough to show a change.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    bytes: u64,
    video_frames: u64,
    /// Per rendition: (name, clear bytes out, media time out in ns, parts).
    renditions: Vec<(String, u64, u64, u64)>,
}

/// A publisher above its app's `max_ingest_kbps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverLimit {
    pub measured_kbps: f64,
    pub limit_kbps: u32,
}

impl OverLimit {
    /// For the lifecycle event (and so for webhooks later): both rates named.
    pub fn message(&self) -> String {
        format!(
            "ingest bitrate {:.0} kbit/s over the app's limit of {} kbit/s; publisher disconnected",
            self.measured_kbps, self.limit_kbps
        )
    }
}

pub struct LiveSession {
    pub stream_id: String,
    pub app_id: String,
    pub session: u64,
    pub protocol: &'static str,
    pub client: SocketAddr,
    pub max_ingest_kbps: Option<u32>,
    pub counters: Arc<IngestCounters>,
    /// Notified by the ladder when it needs a keyframe (a decode error); the
    /// publish session's protocol asks the publisher for one if it can.
    pub keyframe_wanted: Arc<tokio::sync::Notify>,
    /// Renditions the ladder encodes (not copies), for usage metering.
    pub transcoded_renditions: std::sync::atomic::AtomicU32,
    started_at: SystemTime,
    started: Instant,
    packager: Mutex<Option<Arc<StreamPackager>>>,
    ladder: Mutex<Option<Arc<LadderStats>>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl LiveSession {
    pub fn new(
        stream_id: String,
        app_id: String,
        session: u64,
        protocol: &'static str,
        client: SocketAddr,
        max_ingest_kbps: Option<u32>,
    ) -> Self {
        Self {
            stream_id,
            app_id,
            session,
            protocol,
            client,
            max_ingest_kbps,
            counters: Arc::default(),
            keyframe_wanted: Arc::default(),
            transcoded_renditions: std::sync::atomic::AtomicU32::new(0),
            started_at: SystemTime::now(),
            started: Instant::now(),
            packager: Mutex::new(None),
            ladder: Mutex::new(None),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    pub fn attach_packager(&self, packager: Arc<StreamPackager>) {
        *self.packager.lock() = Some(packager);
    }

    pub fn attach_ladder(&self, stats: Arc<LadderStats>) {
        *self.ladder.lock() = Some(stats);
    }

    /// Input frames thrown away before the ladder's encoders: by ingest and
    /// by the ladder (see [`LiveStreamStats::frames_dropped`]).
    pub fn frames_dropped(&self) -> u64 {
        let ingest = self
            .counters
            .discarded_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        let ladder = self.ladder.lock().as_ref().map_or(0, |l| l.frames_dropped());
        ingest + ladder
    }

    /// Takes a sample now; returns the ingest bytes since the previous one.
    pub fn sample(&self) -> u64 {
        self.sample_at(Instant::now())
    }

    fn sample_at(&self, at: Instant) -> u64 {
        let renditions = self
            .packager
            .lock()
            .as_ref()
            .map(|p| {
                p.stats()
                    .renditions
                    .into_iter()
                    .map(|r| (r.name, r.bytes_in, r.media_ns, r.parts_published))
                    .collect()
            })
            .unwrap_or_default();
        let sample = Sample {
            at,
            bytes: self.counters.bytes.load(std::sync::atomic::Ordering::Relaxed),
            video_frames: self.counters.video_frames.load(std::sync::atomic::Ordering::Relaxed),
            renditions,
        };
        let mut samples = self.samples.lock();
        let previous = samples.back().map_or(0, |s| s.bytes);
        samples.push_back(sample.clone());
        while samples.len() > 2 && samples.get(1).is_some_and(|s| at.duration_since(s.at) >= RATE_WINDOW) {
            samples.pop_front();
        }
        sample.bytes.saturating_sub(previous)
    }

    /// (oldest, newest) samples and the time between them, once there are two.
    fn span(&self) -> Option<(Sample, Sample, f64)> {
        let samples = self.samples.lock();
        let (first, last) = (samples.front()?, samples.back()?);
        let secs = last.at.duration_since(first.at).as_secs_f64();
        (secs > 0.0).then(|| (first.clone(), last.clone(), secs))
    }

    /// Input kbit/s over a full [`RATE_WINDOW`], for the limit: `None` until
    /// the session has been sampled for that long.
    pub fn sustained_input_kbps(&self) -> Option<f64> {
        let (first, last, secs) = self.span()?;
        (secs + 0.001 >= RATE_WINDOW.as_secs_f64()).then(|| kbps(last.bytes - first.bytes.min(last.bytes), secs))
    }

    /// The app's ingest bitrate limit, exceeded over a full [`RATE_WINDOW`]:
    /// a keyframe burst at the start is averaged with what follows it.
    pub fn over_ingest_limit(&self) -> Option<OverLimit> {
        let limit_kbps = self.max_ingest_kbps?;
        let measured_kbps = self.sustained_input_kbps()?;
        (measured_kbps > f64::from(limit_kbps)).then_some(OverLimit {
            measured_kbps,
            limit_kbps,
        })
    }

    pub fn stats(&self) -> LiveStreamStats {
        let tracks = self.counters.tracks();
        let span = self.span();
        let fps = span
            .as_ref()
            .map(|(f, l, secs)| l.video_frames.saturating_sub(f.video_frames) as f64 / secs);
        let input_kbps = span
            .as_ref()
            .map_or(0.0, |(f, l, secs)| kbps(l.bytes.saturating_sub(f.bytes), *secs));
        let renditions = match &span {
            Some((first, last, secs)) => last
                .renditions
                .iter()
                .map(|(name, bytes, media_ns, parts)| {
                    let before = first.renditions.iter().find(|r| &r.0 == name);
                    let (b0, m0) = before.map_or((0, 0), |r| (r.1, r.2));
                    RenditionStats {
                        name: name.clone(),
                        output_kbps: kbps(bytes.saturating_sub(b0), *secs),
                        encoder_speed: before.map(|_| media_ns.saturating_sub(m0) as f64 / 1e9 / secs),
                        parts_published: *parts,
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        let video = tracks.video.as_ref().map(|config| {
            let size = match config {
                VideoConfig::H264 { avcc } => crate::media::parse_avcc(avcc).ok().map(|i| (i.width, i.height)),
                VideoConfig::Vp8 { width, height } | VideoConfig::H265 { width, height, .. } => Some((*width, *height)),
            };
            let metadata = tracks.metadata.as_ref();
            VideoInput {
                codec: config.codec_name().into(),
                width: size.map(|s| s.0).or(metadata.and_then(|m| m.width)),
                height: size.map(|s| s.1).or(metadata.and_then(|m| m.height)),
                fps,
            }
        });
        let audio = tracks.audio.as_ref().map(|config| match config {
            AudioConfig::Aac { asc } => {
                let info = crate::media::parse_asc(asc).ok();
                AudioInput {
                    codec: "aac".into(),
                    sample_rate: info.as_ref().map(|i| i.sample_rate),
                    channels: info.as_ref().map(|i| i.channels),
                }
            }
            AudioConfig::Mp3 { sample_rate, channels } => AudioInput {
                codec: "mp3".into(),
                sample_rate: Some(*sample_rate),
                channels: Some(*channels),
            },
            AudioConfig::Opus { channels } => AudioInput {
                codec: "opus".into(),
                sample_rate: Some(48_000),
                channels: Some(*channels),
            },
        });
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        LiveStreamStats {
            stream_id: self.stream_id.clone(),
            app_id: self.app_id.clone(),
            session: self.session,
            protocol: self.protocol.to_owned(),
            client_ip: self.client.ip().to_string(),
            started_at_ms: self
                .started_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            video,
            audio,
            input_kbps,
            ingest_bytes: self.counters.bytes.load(relaxed),
            frames_received: self.counters.video_frames.load(relaxed) + self.counters.audio_frames.load(relaxed),
            frames_dropped: self.frames_dropped(),
            renditions,
            viewers: 0,
        }
    }
}

fn kbps(bytes: u64, secs: f64) -> f64 {
    (bytes as f64 * 8.0 / 1000.0 / secs * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn session(limit: Option<u32>) -> LiveSession {
        LiveSession::new(
            "st1".into(),
            "app_a".into(),
            3,
            "rtmp",
            "127.0.0.1:4000".parse().expect("addr"),
            limit,
        )
    }

    #[test]
    fn rates_are_taken_over_the_window_of_samples() {
        let s = session(None);
        let t0 = Instant::now();
        assert_eq!(s.sample_at(t0), 0);
        assert_eq!(s.stats().input_kbps, 0.0, "one sample is no rate");
        for second in 1..=8u64 {
            // 125 000 bytes a second = 1000 kbit/s, 30 frames a second.
            s.counters.bytes.fetch_add(125_000, Ordering::Relaxed);
            s.counters.video_frames.fetch_add(30, Ordering::Relaxed);
            assert_eq!(s.sample_at(t0 + Duration::from_secs(second)), 125_000);
        }
        let stats = s.stats();
        assert_eq!(stats.input_kbps, 1000.0);
        assert_eq!(stats.ingest_bytes, 1_000_000);
        assert!(s.samples.lock().len() <= 7, "old samples are dropped");
        assert_eq!(s.sustained_input_kbps(), Some(1000.0));
    }

    #[test]
    fn the_sustained_rate_needs_a_full_window() {
        let s = session(Some(500));
        let t0 = Instant::now();
        s.sample_at(t0);
        s.counters.bytes.fetch_add(10_000_000, Ordering::Relaxed);
        s.sample_at(t0 + Duration::from_secs(2));
        assert_eq!(
            s.sustained_input_kbps(),
            None,
            "a burst in the first seconds is not judged"
        );
        s.sample_at(t0 + Duration::from_secs(5));
        assert_eq!(s.sustained_input_kbps(), Some(16000.0));
    }

    /// Feeds `kbps` for each of `seconds`, one sample a second after `from`.
    fn publish_at(s: &LiveSession, from: Instant, seconds: std::ops::RangeInclusive<u64>, kbps: u64) {
        for second in seconds {
            s.counters.bytes.fetch_add(kbps * 1000 / 8, Ordering::Relaxed);
            s.sample_at(from + Duration::from_secs(second));
        }
    }

    #[test]
    fn the_bitrate_guard_judges_a_full_window_against_the_apps_limit() {
        let t0 = Instant::now();
        let unlimited = session(None);
        unlimited.sample_at(t0);
        publish_at(&unlimited, t0, 1..=6, 50_000);
        assert_eq!(unlimited.over_ingest_limit(), None, "no limit, no kick");

        let s = session(Some(1000));
        s.sample_at(t0);
        // A keyframe burst of 4 Mbit/s in the first second, then 500 kbit/s:
        // over 5 s that is 1.2 Mbit/s, but no full window has passed yet...
        publish_at(&s, t0, 1..=1, 4000);
        publish_at(&s, t0, 2..=4, 500);
        assert_eq!(s.over_ingest_limit(), None, "judged before a full window");
        // ...and once the burst has left the window the publisher is fine.
        publish_at(&s, t0, 5..=9, 500);
        assert_eq!(s.sustained_input_kbps(), Some(500.0));
        assert_eq!(s.over_ingest_limit(), None);
        // Exactly at the limit is allowed; above it for a full window is not.
        publish_at(&s, t0, 10..=14, 1000);
        assert_eq!(s.over_ingest_limit(), None, "at the limit");
        publish_at(&s, t0, 15..=19, 1500);
        let over = s.over_ingest_limit().expect("over the limit");
        assert_eq!(
            over,
            OverLimit {
                measured_kbps: 1500.0,
                limit_kbps: 1000
            }
        );
        assert_eq!(
            over.message(),
            "ingest bitrate 1500 kbit/s over the app's limit of 1000 kbit/s; publisher disconnected"
        );
    }

    #[test]
    fn dropped_frames_add_ingest_discards_and_ladder_drops() {
        let s = session(None);
        s.counters.discarded();
        assert_eq!(s.stats().frames_dropped, 1, "before the ladder is attached");
        let ladder = Arc::new(LadderStats::default());
        ladder.video_dropped();
        ladder.audio_dropped();
        s.attach_ladder(ladder.clone());
        assert_eq!(s.stats().frames_dropped, 3);
        ladder.video_dropped();
        assert_eq!(s.frames_dropped(), 4, "read live, not copied at attach time");
    }

    /// The avcC record libx264 writes for a `width`×`height` stream.
    fn avcc_from_ffmpeg(width: u32, height: u32) -> bytes::Bytes {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("one.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate=30"))
            .args(["-frames:v", "1", "-c:v", "libx264", "-y"])
            .arg(&out)
            .status()
            .expect("run ffmpeg");
        assert!(status.success());
        let mp4 = std::fs::read(&out).expect("mp4");
        let at = mp4.windows(4).position(|w| w == b"avcC").expect("avcC box");
        let size = u32::from_be_bytes(mp4[at - 4..at].try_into().expect("4 bytes")) as usize;
        bytes::Bytes::copy_from_slice(&mp4[at + 4..at - 4 + size])
    }

    #[test]
    fn codec_and_resolution_come_from_the_decoder_configuration() {
        let s = session(None);
        let avcc = avcc_from_ffmpeg(320, 180);
        s.counters
            .on_packet(&crate::ingest::MediaPacket::VideoConfig(VideoConfig::H264 { avcc }));
        s.counters
            .on_packet(&crate::ingest::MediaPacket::AudioConfig(AudioConfig::Aac {
                asc: bytes::Bytes::from_static(&[0x11, 0x90]),
            }));
        let stats = s.stats();
        let video = stats.video.expect("video");
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("h264", Some(320), Some(180))
        );
        let audio = stats.audio.expect("audio");
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("aac", Some(48000), Some(2))
        );
    }
}
