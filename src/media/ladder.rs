//! One ladder per stream: discover the tracks, build the pipeline, feed it,
//! and always tear it down.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::codec::{parse_asc, parse_avcc};
use super::output::{EventSink, Track};
use super::pipeline::{self, AudioCodec, AudioSource, BuiltPipeline, MediaSrc, VideoCodec, VideoSource};
use super::profile::{AudioMode, LadderProfile};
use super::stats::LadderStats;
use super::types::LadderEvent;
use crate::ingest::{AudioConfig, MediaPacket, StreamMetadata, VideoConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct LadderSettings {
    /// LL-HLS part target = CMAF chunk duration.
    pub part_target: Duration,
    /// Segment target = CMAF fragment duration.
    pub segment_target: Duration,
    /// Where this session's timeline starts. A publisher that reconnects or
    /// takes over continues the stream's timeline instead of restarting at
    /// zero: players (ffmpeg above all) cope with a discontinuity far better
    /// when timestamps do not jump backwards.
    pub timeline_offset: Duration,
}

/// A running ladder. Dropping it or calling [`LadderHandle::stop`] tears the
/// pipeline down; `Ended` is still sent exactly once.
pub struct LadderHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<LadderStats>,
    keyframe_wanted: Arc<tokio::sync::Notify>,
}

impl LadderHandle {
    /// Stops the ladder and waits until the pipeline is torn down.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Counters that outlive the handle (the control plane reads them for
    /// as long as the session is listed).
    pub fn stats(&self) -> Arc<LadderStats> {
        self.stats.clone()
    }

    /// Notified when the video decoder reports a decode error: the
    /// renditions stay broken until the source sends a keyframe.
    pub fn keyframe_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.keyframe_wanted.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for LadderHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How much media (by timestamps) we wait for a missing track's config
/// when the metadata did not say which tracks to expect.
const DISCOVERY_SPAN_MS: i64 = 700;
/// The same, when the metadata promised a track that has not shown up.
const PROMISED_TRACK_SPAN_MS: i64 = 1500;
const MAX_BUFFERED_PACKETS: usize = 1500;
/// Feeder back-pressure: stop reading input while an appsrc holds more.
const MAX_QUEUED_BYTES: u64 = 4 * 1024 * 1024;
/// Free ladder-event slots below which a direct-push feeder pauses. A muxer
/// holds at most a part plus its latency of frames (a few dozen events at
/// most), so with this much room its appsink never blocks on the packager
/// while a Tokio worker waits on the muxer inside a direct push.
const MIN_FREE_EVENT_SLOTS: usize = 64;
const EOS_TIMEOUT: Duration = Duration::from_secs(5);

/// Must be called inside a Tokio runtime.
pub fn spawn_ladder(
    stream_id: &str,
    profile: &LadderProfile,
    settings: &LadderSettings,
    input: mpsc::Receiver<MediaPacket>,
    output: mpsc::Sender<LadderEvent>,
) -> LadderHandle {
    let stop = CancellationToken::new();
    let stats = Arc::new(LadderStats::default());
    let keyframe_wanted = Arc::new(tokio::sync::Notify::new());
    let ladder = Ladder {
        stream_id: stream_id.to_string(),
        stats: stats.clone(),
        keyframe_wanted: keyframe_wanted.clone(),
        profile: profile.clone(),
        settings: settings.clone(),
        events: EventSink {
            tx: output,
            stopping: stop.clone(),
            arrivals: Default::default(),
        },
        stop: stop.clone(),
    };
    let span = tracing::info_span!("ladder", stream_id = %stream_id);
    let task = tokio::spawn(ladder.run(input).instrument(span));
    LadderHandle {
        stop,
        task: Some(task),
        stats,
        keyframe_wanted,
    }
}

struct Ladder {
    stream_id: String,
    stats: Arc<LadderStats>,
    keyframe_wanted: Arc<tokio::sync::Notify>,
    profile: LadderProfile,
    settings: LadderSettings,
    events: EventSink,
    stop: CancellationToken,
}

/// Sets the pipeline to Null however the task ends (even if the runtime
/// drops it).
struct Teardown(gst::Pipeline);

impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

#[derive(Default)]
struct Discovery {
    metadata: Option<StreamMetadata>,
    video_config: Option<VideoConfig>,
    audio_config: Option<AudioConfig>,
    buffered: Vec<MediaPacket>,
    stats: Arc<LadderStats>,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    seen_video_key: bool,
}

impl Discovery {
    fn note_ts(&mut self, ts: i64) {
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
    }

    fn span_ms(&self) -> i64 {
        match (self.first_ts, self.last_ts) {
            (Some(first), Some(last)) => last - first,
            _ => 0,
        }
    }

    fn accept(&mut self, packet: MediaPacket, audio_wanted: bool) {
        match packet {
            MediaPacket::Metadata(meta) => self.metadata = Some(meta),
            MediaPacket::VideoConfig(config) => self.video_config = Some(config),
            MediaPacket::AudioConfig(config) => {
                if audio_wanted {
                    self.audio_config = Some(config)
                }
            }
            MediaPacket::Video(frame) => {
                self.note_ts(frame.dts_ms);
                // Start the video at the first keyframe after its config.
                if self.video_config.is_some() && (self.seen_video_key || frame.keyframe) {
                    self.seen_video_key = true;
                    self.buffered.push(MediaPacket::Video(frame));
                } else {
                    self.stats.video_dropped();
                }
            }
            MediaPacket::Audio(frame) => {
                self.note_ts(frame.pts_ms);
                if self.audio_config.is_some() {
                    self.buffered.push(MediaPacket::Audio(frame));
                } else if audio_wanted {
                    self.stats.audio_dropped();
                }
            }
        }
    }

    fn ready(&self) -> bool {
        if self.buffered.len() >= MAX_BUFFERED_PACKETS {
            return self.video_config.is_some() || self.audio_config.is_some();
        }
        let meta = self.metadata.as_ref();
        let has_video = meta.and_then(|m| m.has_video);
        let has_audio = meta.and_then(|m| m.has_audio);
        let video_ok = self.video_config.is_some() || has_video == Some(false);
        let audio_ok = self.audio_config.is_some() || has_audio == Some(false);
        if video_ok && audio_ok {
            return self.video_config.is_some() || self.audio_config.is_some();
        }
        let any = self.video_config.is_some() || self.audio_config.is_some();
        let patience = if has_video == Some(true) || has_audio == Some(true) {
            PROMISED_TRACK_SPAN_MS
        } else {
            DISCOVERY_SPAN_MS
        };
        any && self.span_ms() >= patience
    }

    /// Frame rate: announced, else measured from buffered decode times.
    fn video_fps(&self) -> f64 {
        if let Some(fps) = self.metadata.as_ref().and_then(|m| m.framerate) {
            if fps.is_finite() && (1.0..=240.0).contains(&fps) {
                return fps;
            }
        }
        let mut deltas: Vec<i64> = self
            .buffered
            .iter()
            .filter_map(|p| match p {
                MediaPacket::Video(f) => Some(f.dts_ms),
                _ => None,
            })
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .collect();
        deltas.sort_unstable();
        match deltas.get(deltas.len() / 2) {
            Some(&median) => (1000.0 / median as f64).clamp(1.0, 240.0),
            None => 30.0,
        }
    }

    fn measured_bitrate(&self, video: bool) -> Option<u64> {
        let (mut bytes, mut first, mut last) = (0u64, None::<i64>, None::<i64>);
        for packet in &self.buffered {
            let (ts, len) = match packet {
                MediaPacket::Video(f) if video => (f.dts_ms, f.data.len()),
                MediaPacket::Audio(f) if !video => (f.pts_ms, f.data.len()),
                _ => continue,
            };
            bytes += len as u64;
            first = Some(first.map_or(ts, |f| f.min(ts)));
            last = Some(last.map_or(ts, |l| l.max(ts)));
        }
        let span = last? - first?;
        (span >= 500).then(|| bytes * 8 * 1000 / span as u64)
    }
}

enum Stop {
    InputEnded,
    Stopped,
    OutputClosed,
    Failed(String),
}

impl Ladder {
    async fn run(self, input: mpsc::Receiver<MediaPacket>) {
        let result = self.run_inner(input).await;
        if let Err(reason) = &result {
            tracing::warn!(%reason, "ladder failed");
        } else {
            tracing::info!("ladder ended");
        }
        // Not through `send_blocking`: it refuses once stopping, and Ended
        // must still go out after stop().
        let _ = self.events.tx.send(LadderEvent::Ended(result)).await;
    }

    async fn run_inner(&self, mut input: mpsc::Receiver<MediaPacket>) -> Result<(), String> {
        super::init().map_err(|e| e.to_string())?;
        let audio_wanted = self.profile.audio == AudioMode::Copy;
        let mut discovery = Discovery {
            stats: self.stats.clone(),
            ..Discovery::default()
        };
        let mut input_open = true;
        while !discovery.ready() {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                packet = input.recv() => match packet {
                    Some(packet) => discovery.accept(packet, audio_wanted),
                    None => { input_open = false; break; }
                },
            }
        }
        if discovery.video_config.is_none() && discovery.audio_config.is_none() {
            return Err("input ended before any track configuration arrived".into());
        }

        let video = match &discovery.video_config {
            Some(config) => {
                let (codec, width, height) = match config {
                    VideoConfig::H264 { avcc } => {
                        let info = parse_avcc(avcc).map_err(|e| format!("video config: {e}"))?;
                        let (width, height) = (info.width, info.height);
                        (
                            VideoCodec::H264 {
                                avcc: avcc.clone(),
                                info,
                            },
                            width,
                            height,
                        )
                    }
                    VideoConfig::Vp8 { width, height } => (VideoCodec::Vp8, *width, *height),
                    VideoConfig::H265 { hvcc, width, height } => {
                        (VideoCodec::H265 { hvcc: hvcc.clone() }, *width, *height)
                    }
                };
                let bitrate_bps = discovery
                    .metadata
                    .as_ref()
                    .and_then(|m| m.video_bitrate_kbps)
                    .filter(|k| k.is_finite() && *k > 0.0)
                    .map(|k| (k * 1000.0) as u64)
                    .or_else(|| discovery.measured_bitrate(true));
                Some(VideoSource {
                    codec,
                    width,
                    height,
                    fps: discovery.video_fps(),
                    bitrate_bps,
                })
            }
            None => None,
        };
        let audio = match &discovery.audio_config {
            Some(config) => {
                let codec = match config {
                    AudioConfig::Aac { asc } => AudioCodec::Aac {
                        info: parse_asc(asc).map_err(|e| format!("audio config: {e}"))?,
                        asc: asc.clone(),
                    },
                    AudioConfig::Mp3 { sample_rate, channels } => AudioCodec::Mp3 {
                        sample_rate: *sample_rate,
                        channels: *channels,
                    },
                    AudioConfig::Opus { channels } => AudioCodec::Opus { channels: *channels },
                };
                let bitrate_bps = discovery
                    .metadata
                    .as_ref()
                    .and_then(|m| m.audio_bitrate_kbps)
                    .filter(|k| k.is_finite() && *k > 0.0)
                    .map(|k| (k * 1000.0) as u64)
                    .or_else(|| discovery.measured_bitrate(false));
                Some(AudioSource { codec, bitrate_bps })
            }
            None => None,
        };

        let built = pipeline::build(
            &self.stream_id,
            &self.profile,
            &self.settings,
            video.as_ref(),
            audio.as_ref(),
            self.events.clone(),
        )
        .map_err(|e| format!("building the pipeline: {e}"))?;
        let teardown = Teardown(built.pipeline.clone());
        if let Some(decoder) = &built.decoder {
            watch_decode_errors(decoder, self.stats.clone(), self.keyframe_wanted.clone());
        }
        tracing::info!(
            renditions = ?built.renditions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "ladder built"
        );
        if !self
            .events
            .send_blocking_async(LadderEvent::Renditions(built.renditions.clone()))
            .await
        {
            return Ok(());
        }
        built
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("starting the pipeline: {e}"))?;

        let mut feeder = Feeder::new(
            &built,
            &discovery,
            self.settings.segment_target,
            self.settings.timeline_offset,
        );
        feeder.arrivals = self.events.arrivals.clone();
        feeder.events = Some(self.events.tx.clone());
        feeder.keyframe_wanted = Some(self.keyframe_wanted.clone());
        for packet in std::mem::take(&mut discovery.buffered) {
            while feeder.backlogged() {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            feeder.push(packet);
        }
        for warning in std::mem::take(&mut feeder.warnings) {
            let _ = self.events.send_blocking_async(LadderEvent::Warning(warning)).await;
        }
        let outcome = self.feed(&built, &mut feeder, input, input_open).await;
        let result = match outcome {
            Stop::InputEnded => self.drain(&built).await,
            Stop::Stopped | Stop::OutputClosed => Ok(()),
            Stop::Failed(reason) => Err(reason),
        };
        // Stop callbacks from blocking on a full output before tearing down.
        self.stop.cancel();
        let pipeline = teardown.0.clone();
        let _ = tokio::task::spawn_blocking(move || {
            drop(teardown);
            drop(pipeline);
        })
        .await;
        for router in &built.routers {
            for event in router.finish() {
                let _ = self.events.tx.send(event).await;
            }
        }
        result
    }

    async fn feed(
        &self,
        built: &BuiltPipeline,
        feeder: &mut Feeder,
        mut input: mpsc::Receiver<MediaPacket>,
        input_open: bool,
    ) -> Stop {
        if !input_open {
            return Stop::InputEnded;
        }
        let Some(bus) = built.pipeline.bus() else {
            return Stop::Failed("pipeline has no bus".into());
        };
        let mut messages = bus.stream();
        loop {
            let backlogged = feeder.backlogged();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Stop::Stopped,
                _ = self.events.tx.closed() => return Stop::OutputClosed,
                message = messages.next() => {
                    if let Some(reason) = message.as_ref().and_then(bus_error) {
                        return Stop::Failed(reason);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(5)), if backlogged => {}
                packet = input.recv(), if !backlogged => match packet {
                    Some(packet) => {
                        feeder.push(packet);
                        for warning in std::mem::take(&mut feeder.warnings) {
                            tracing::warn!("{warning}");
                            if !self.events.send_blocking_async(LadderEvent::Warning(warning)).await {
                                return Stop::Stopped;
                            }
                        }
                    }
                    None => return Stop::InputEnded,
                },
            }
        }
    }

    async fn drain(&self, built: &BuiltPipeline) -> Result<(), String> {
        for src in [&built.video_src, &built.audio_src].into_iter().flatten() {
            src.end_of_stream();
        }
        let Some(bus) = built.pipeline.bus() else {
            return Err("pipeline has no bus".into());
        };
        let mut messages = bus.stream();
        let deadline = tokio::time::sleep(EOS_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                _ = &mut deadline => {
                    tracing::warn!("pipeline did not drain within {EOS_TIMEOUT:?}");
                    return Err(format!("pipeline did not drain within {EOS_TIMEOUT:?}"));
                }
                message = messages.next() => match message {
                    None => return Ok(()),
                    Some(message) => {
                        if let Some(reason) = bus_error(&message) {
                            return Err(reason);
                        }
                        if matches!(message.view(), gst::MessageView::Eos(_)) {
                            return Ok(());
                        }
                    }
                },
            }
        }
    }
}

impl EventSink {
    async fn send_blocking_async(&self, event: LadderEvent) -> bool {
        tokio::select! {
            biased;
            sent = self.tx.send(event) => sent.is_ok(),
            _ = self.stopping.cancelled() => false,
        }
    }
}

fn bus_error(message: &gst::Message) -> Option<String> {
    match message.view() {
        gst::MessageView::Error(err) => {
            let element = message
                .src()
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "?".into());
            Some(format!("{element}: {}", err.error()))
        }
        _ => None,
    }
}

/// GstVideoDecoder drops a frame it cannot decode without a bus message
/// (until `max-errors`), then marks its next output DISCONT: that mark after
/// the first output is the decode error. Until a keyframe the renditions
/// show the damage, so the publisher is asked for one.
fn watch_decode_errors(decoder: &gst::Element, stats: Arc<LadderStats>, keyframe_wanted: Arc<tokio::sync::Notify>) {
    let Some(pad) = decoder.static_pad("src") else {
        return;
    };
    let started = std::sync::atomic::AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let seen_output = started.swap(true, std::sync::atomic::Ordering::Relaxed);
            if seen_output && buffer.flags().contains(gst::BufferFlags::DISCONT) {
                stats.decode_error();
                keyframe_wanted.notify_one();
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// The room a direct-push feeder keeps in an output channel of `max` slots.
fn min_free_slots(max: usize) -> usize {
    MIN_FREE_EVENT_SLOTS.min(max / 4).max(1)
}

/// When segments follow the source's keyframes (something copies the
/// source), a publisher that can be asked for one (WHIP) is asked as each
/// segment comes due: browsers send keyframes only on request, and without
/// this the copied rung's segments grow until the long-GOP fallback
/// re-encodes it. Once per GOP, a frame period or so ahead of the target.
#[derive(Debug)]
struct KeyframeAsk {
    due_ms: i64,
    /// Asked since the last source keyframe.
    asked: bool,
}

/// How far ahead of the segment target the request goes out (a PLI's round trip).
const ASK_AHEAD_MS: i64 = 100;

impl KeyframeAsk {
    fn new(segment_target: Duration) -> Self {
        Self {
            due_ms: (segment_target.as_millis() as i64 - ASK_AHEAD_MS).max(1),
            asked: false,
        }
    }

    /// True when a keyframe should be asked for now; `last_key_ms` is the
    /// source keyframe before this frame.
    fn on_frame(&mut self, pts_ms: i64, keyframe: bool, last_key_ms: Option<i64>) -> bool {
        if keyframe {
            self.asked = false;
            return false;
        }
        let due = last_key_ms.is_some_and(|key| pts_ms - key >= self.due_ms);
        if due && !self.asked {
            self.asked = true;
            return true;
        }
        false
    }
}

/// Pushes ingest packets into the appsrcs on one timeline.
struct Feeder {
    video_src: Option<MediaSrc>,
    audio_src: Option<MediaSrc>,
    /// The ladder's output, watched for room while pushing directly.
    events: Option<mpsc::Sender<LadderEvent>>,
    planner: Option<std::sync::Arc<std::sync::Mutex<super::keys::KeyPlanner>>>,
    base_ms: Option<i64>,
    timeline_offset: gst::ClockTime,
    arrivals: super::output::ArrivalLog,
    video_started: bool,
    last_video_dts: Option<i64>,
    last_audio_pts: Option<i64>,
    current_video: Option<VideoConfig>,
    /// The audio configuration the audio branch was built for.
    built_audio: Option<AudioConfig>,
    /// False while the source sends an audio codec the branch cannot take
    /// (e.g. AAC after an MP3 start); its frames are dropped meanwhile.
    audio_codec_matches: bool,
    dropped: u64,
    stats: Arc<LadderStats>,
    last_source_key_ms: Option<i64>,
    long_gop_limit_ms: i64,
    long_gop_seen: bool,
    /// Source keyframes do not cut segments: a long GOP costs nothing.
    keys_on_grid: bool,
    /// Asks the publisher for a keyframe as a segment comes due (see `KeyframeAsk`).
    ask: KeyframeAsk,
    keyframe_wanted: Option<Arc<tokio::sync::Notify>>,
    switchable: Vec<std::sync::Arc<super::output::RenditionRouter>>,
    /// Operator warnings raised while pushing, sent by the async loop.
    warnings: Vec<String>,
}

impl Feeder {
    fn new(built: &BuiltPipeline, discovery: &Discovery, segment_target: Duration, offset: Duration) -> Self {
        // The earliest buffered timestamp is zero on the output timeline.
        let base_ms = discovery
            .buffered
            .iter()
            .map(|p| match p {
                MediaPacket::Video(f) => f.dts_ms.min(f.pts_ms),
                MediaPacket::Audio(f) => f.pts_ms,
                _ => i64::MAX,
            })
            .min()
            .filter(|&m| m != i64::MAX);
        Self {
            video_src: built.video_src.clone(),
            audio_src: built.audio_src.clone(),
            planner: built.key_planner.clone(),
            base_ms,
            timeline_offset: gst::ClockTime::from_nseconds(offset.as_nanos().min(u128::from(u64::MAX / 2)) as u64),
            arrivals: Default::default(),
            events: None,
            video_started: false,
            last_video_dts: None,
            last_audio_pts: None,
            current_video: discovery.video_config.clone(),
            built_audio: discovery.audio_config.clone(),
            audio_codec_matches: true,
            dropped: 0,
            stats: discovery.stats.clone(),
            last_source_key_ms: None,
            long_gop_limit_ms: (segment_target.as_millis() as i64) * 3 / 2,
            long_gop_seen: false,
            keys_on_grid: built.keys_on_grid,
            ask: KeyframeAsk::new(segment_target),
            keyframe_wanted: None,
            switchable: built.switchable.clone(),
            warnings: Vec::new(),
        }
    }

    fn backlogged(&self) -> bool {
        let srcs = || [&self.video_src, &self.audio_src].into_iter().flatten();
        if srcs().any(|src| src.level_bytes() > MAX_QUEUED_BYTES) {
            return true;
        }
        srcs().any(MediaSrc::is_direct)
            && self
                .events
                .as_ref()
                .is_some_and(|tx| !tx.is_closed() && tx.capacity() < min_free_slots(tx.max_capacity()))
    }

    fn timeline_ns(&mut self, ts_ms: i64) -> Option<gst::ClockTime> {
        let base = *self.base_ms.get_or_insert(ts_ms);
        let rel = ts_ms.checked_sub(base)?;
        u64::try_from(rel)
            .ok()
            .map(|ms| gst::ClockTime::from_mseconds(ms) + self.timeline_offset)
    }

    fn drop_packet(&mut self, track: Track, why: &str) {
        match track {
            Track::Video => self.stats.video_dropped(),
            Track::Audio => self.stats.audio_dropped(),
        }
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            tracing::warn!(dropped = self.dropped, "dropping input packet: {why}");
        }
    }

    fn push(&mut self, packet: MediaPacket) {
        match packet {
            MediaPacket::Metadata(_) => {}
            MediaPacket::AudioConfig(config) => self.audio_config_changed(config),
            MediaPacket::VideoConfig(config) => {
                if self.current_video.as_ref() != Some(&config) {
                    self.video_config_changed(config);
                }
            }
            MediaPacket::Video(frame) => {
                let Some(src) = self.video_src.clone() else {
                    return;
                };
                if !self.video_started && !frame.keyframe {
                    return self.stats.video_dropped();
                }
                if self.last_video_dts.is_some_and(|last| frame.dts_ms < last) {
                    return self.drop_packet(Track::Video, "video decode time went backwards");
                }
                let (Some(dts), Some(pts)) = (self.timeline_ns(frame.dts_ms), self.timeline_ns(frame.pts_ms)) else {
                    return self.drop_packet(Track::Video, "video timestamp before the ladder start");
                };
                self.video_started = true;
                self.last_video_dts = Some(frame.dts_ms);
                let mut buffer = gst::Buffer::from_slice(frame.data);
                if let Some(buffer) = buffer.get_mut() {
                    buffer.set_dts(dts);
                    buffer.set_pts(pts);
                    if !frame.keyframe {
                        buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
                    }
                }
                if !self.keys_on_grid && self.ask.on_frame(frame.pts_ms, frame.keyframe, self.last_source_key_ms) {
                    if let Some(wanted) = &self.keyframe_wanted {
                        wanted.notify_one();
                    }
                }
                if frame.keyframe {
                    self.last_source_key_ms = Some(frame.pts_ms);
                    if let Some(Ok(mut planner)) = self.planner.as_ref().map(|p| p.lock()) {
                        planner.source_keyframe(pts.nseconds());
                    }
                } else {
                    self.check_long_gop(frame.pts_ms, pts);
                }
                self.arrivals.record(Track::Video, pts.nseconds());
                if src.push(buffer).is_err() {
                    self.drop_packet(Track::Video, "video appsrc refused the buffer");
                }
            }
            MediaPacket::Audio(frame) => {
                let Some(src) = self.audio_src.clone() else {
                    return;
                };
                if !self.audio_codec_matches {
                    return self.drop_packet(
                        Track::Audio,
                        "audio codec differs from the one the ladder was built for",
                    );
                }
                if self.last_audio_pts.is_some_and(|last| frame.pts_ms < last) {
                    return self.drop_packet(Track::Audio, "audio timestamp went backwards");
                }
                let Some(pts) = self.timeline_ns(frame.pts_ms) else {
                    return self.drop_packet(Track::Audio, "audio timestamp before the ladder start");
                };
                self.last_audio_pts = Some(frame.pts_ms);
                let mut buffer = gst::Buffer::from_slice(frame.data);
                if let Some(buffer) = buffer.get_mut() {
                    buffer.set_pts(pts);
                }
                self.arrivals.record(Track::Audio, pts.nseconds());
                if src.push(buffer).is_err() {
                    self.drop_packet(Track::Audio, "audio appsrc refused the buffer");
                }
            }
        }
    }

    /// Decided here, before the frame enters the pipeline, because the
    /// passthrough branch runs ahead of the decoder: the hand-over point must
    /// be known before the passthrough muxes past it.
    fn check_long_gop(&mut self, pts_ms: i64, pts: gst::ClockTime) {
        let Some(last_key) = self.last_source_key_ms else {
            return;
        };
        if self.keys_on_grid || self.long_gop_seen || pts_ms - last_key <= self.long_gop_limit_ms {
            return;
        }
        self.long_gop_seen = true;
        let limit_s = self.long_gop_limit_ms as f64 / 1000.0;
        if self.switchable.is_empty() {
            self.warnings.push(format!(
                "Source keyframes are more than {limit_s:.1} s apart, so segments are too long                  for low latency. Set the keyframe interval to 2 s in the encoder                  (OBS: Output > Keyframe Interval = 2)."
            ));
            return;
        }
        for router in &self.switchable {
            router.switch_at(pts.nseconds());
        }
        if let Some(Ok(mut planner)) = self.planner.as_ref().map(|p| p.lock()) {
            planner.schedule_switch(pts.nseconds());
        }
        self.warnings.push(format!(
            "Source keyframes are more than {limit_s:.1} s apart, so the top rendition is now re-encoded instead of copied (costs CPU). Set the keyframe interval to 2 s in the encoder (OBS: Output > Keyframe Interval = 2)."
        ));
    }

    fn audio_config_changed(&mut self, config: AudioConfig) {
        let Some(src) = self.audio_src.as_ref() else {
            return;
        };
        match (&self.built_audio, &config) {
            // The encode branch resamples to the announced format, so only
            // the parser needs to hear about the new one.
            (Some(AudioConfig::Mp3 { .. }), AudioConfig::Mp3 { sample_rate, channels }) => {
                tracing::info!(sample_rate, channels, "MP3 format changed mid-stream");
                src.set_caps(&pipeline::mp3_caps(*sample_rate, *channels));
                self.audio_codec_matches = true;
            }
            (Some(AudioConfig::Aac { .. }), AudioConfig::Aac { .. }) => self.audio_codec_matches = true,
            // The decoder follows a channel-count change in-band; the encode
            // branch remixes to the announced layout.
            (Some(AudioConfig::Opus { .. }), AudioConfig::Opus { .. }) => self.audio_codec_matches = true,
            _ => {
                if self.audio_codec_matches {
                    self.warnings.push(
                        "The publisher switched audio codec mid-stream; audio is dropped until it switches back \
                         or republishes."
                            .to_string(),
                    );
                }
                self.audio_codec_matches = false;
            }
        }
    }

    fn video_config_changed(&mut self, config: VideoConfig) {
        let Some(src) = self.video_src.as_ref() else {
            return;
        };
        let avcc = match (&self.current_video, config) {
            (Some(VideoConfig::H264 { .. }) | None, VideoConfig::H264 { avcc }) => avcc,
            // The VP8 decoder reads a new size from the keyframe itself, and
            // every rung is scaled to its own size.
            (Some(VideoConfig::Vp8 { .. }), config @ VideoConfig::Vp8 { .. }) => {
                self.current_video = Some(config);
                return;
            }
            (Some(VideoConfig::H265 { .. }), VideoConfig::H265 { hvcc, width, height }) => {
                if let Some(caps) = src.caps() {
                    let mut caps = caps.copy();
                    if let Some(s) = caps.make_mut().structure_mut(0) {
                        s.set("codec_data", gst::Buffer::from_slice(hvcc.clone()));
                        s.set("width", width as i32);
                        s.set("height", height as i32);
                    }
                    src.set_caps(&caps);
                }
                tracing::info!(width, height, "H.265 configuration changed mid-stream");
                self.current_video = Some(VideoConfig::H265 { hvcc, width, height });
                return;
            }
            (_, config) => {
                tracing::warn!(
                    codec = config.codec_name(),
                    "ignoring a video codec switch mid-stream; the ladder keeps its first codec"
                );
                return;
            }
        };
        match parse_avcc(&avcc) {
            Ok(info) => {
                tracing::info!(codecs = %info.codecs(), width = info.width, height = info.height,
                    "video configuration changed mid-stream");
                let caps = src.caps().map(|caps| {
                    let mut caps = caps.copy();
                    if let Some(s) = caps.make_mut().structure_mut(0) {
                        s.set("codec_data", gst::Buffer::from_slice(avcc.clone()));
                        s.set("width", info.width as i32);
                        s.set("height", info.height as i32);
                    }
                    caps
                });
                if let Some(caps) = caps {
                    src.set_caps(&caps);
                }
                self.current_video = Some(VideoConfig::H264 { avcc });
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a bad mid-stream video configuration"),
        }
    }
}

#[cfg(test)]
mod keyframe_ask_tests {
    use super::*;

    #[test]
    fn a_keyframe_is_asked_for_once_per_gop_just_before_the_segment_is_due() {
        let mut ask = KeyframeAsk::new(Duration::from_millis(2000));
        // Nothing before the first keyframe: the start is asked for elsewhere.
        assert!(!ask.on_frame(0, false, None));
        assert!(!ask.on_frame(33, true, None));
        let key = Some(33);
        assert!(!ask.on_frame(1900, false, key));
        assert!(ask.on_frame(1933, false, key), "due 100 ms before the 2 s target");
        assert!(!ask.on_frame(1966, false, key), "once per GOP");
        assert!(!ask.on_frame(3000, false, key));
        // The keyframe came: the next segment is asked for again.
        assert!(!ask.on_frame(2000, true, key));
        let key = Some(2000);
        assert!(!ask.on_frame(3866, false, key));
        assert!(ask.on_frame(3900, false, key));
    }
}
