//! One ladder per stream: discover the tracks, build the pipeline, feed it,
//! and always tear it down.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::clock::{capped_offset, timeline_time, TrackClock};
use super::codec::{parse_asc, parse_avcc};
use super::output::{EventSink, Track};
use super::overload::{Change, Detector, OverloadSettings, OverloadState, Progress, StallClock};
use super::pipeline::{self, AudioCodec, AudioSource, BuiltPipeline, MediaSrc, VideoCodec, VideoSource};
use super::profile::{AudioMode, LadderProfile};
use super::stats::LadderStats;
use super::types::LadderEvent;
use crate::ingest::{AudioConfig, MediaPacket, StreamMetadata, VideoConfig};
use crate::logging::LogLimiter;

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
    /// A timestamp step larger than this (either way) on one track is a
    /// discontinuity: the frame is rebased to just after the previous one.
    pub max_timestamp_jump: Duration,
    /// Media buffered while the tracks are discovered, in bytes; reaching it
    /// ends discovery with the tracks configured so far.
    pub discovery_max_bytes: usize,
    /// Detecting and shedding overload (see `overload`).
    pub overload: OverloadSettings,
}

impl Default for LadderSettings {
    fn default() -> Self {
        Self {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_secs(2),
            timeline_offset: Duration::ZERO,
            max_timestamp_jump: Duration::from_secs(10),
            discovery_max_bytes: 16 * 1024 * 1024,
            overload: OverloadSettings::default(),
        }
    }
}

/// A running ladder. Dropping it or calling [`LadderHandle::stop`] tears the
/// pipeline down; `Ended` is still sent exactly once.
pub struct LadderHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<LadderStats>,
    keyframe_wanted: Arc<tokio::sync::Notify>,
    overload: watch::Receiver<OverloadState>,
}

impl LadderHandle {
    /// Whether the ladder is degraded (behind real time and shedding), as
    /// it changes.
    pub fn overload(&self) -> watch::Receiver<OverloadState> {
        self.overload.clone()
    }

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
/// How often overload is judged.
const OVERLOAD_TICK: Duration = Duration::from_secs(1);

/// The overload detector of a running ladder and the renditions it watches.
struct OverloadWatch {
    detector: Detector,
    renditions: Vec<usize>,
}

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
    let (overload_tx, overload) = watch::channel(OverloadState::default());
    let ladder = Ladder {
        overload: overload_tx,
        stream_id: stream_id.to_string(),
        stats: stats.clone(),
        keyframe_wanted: keyframe_wanted.clone(),
        profile: profile.clone(),
        settings: settings.clone(),
        events: EventSink {
            tx: output,
            stopping: stop.clone(),
            arrivals: Default::default(),
            progress: Default::default(),
            ends: Default::default(),
        },
        stop: stop.clone(),
        panicked: Panicked::default(),
    };
    let span = tracing::info_span!("ladder", stream_id = %stream_id);
    let task = tokio::spawn(ladder.run(input).instrument(span));
    LadderHandle {
        stop,
        task: Some(task),
        stats,
        keyframe_wanted,
        overload,
    }
}

struct Ladder {
    overload: watch::Sender<OverloadState>,
    stream_id: String,
    stats: Arc<LadderStats>,
    keyframe_wanted: Arc<tokio::sync::Notify>,
    profile: LadderProfile,
    settings: LadderSettings,
    events: EventSink,
    stop: CancellationToken,
    panicked: Panicked,
}

/// Sets the pipeline to Null however the task ends (even if the runtime
/// drops it, or the feeding code panics). Stops the ladder first, so that no
/// appsink callback is left blocked on a full output while its streaming
/// thread is being shut down.
struct Teardown(gst::Pipeline, CancellationToken, Panicked);

impl Drop for Teardown {
    fn drop(&mut self) {
        self.1.cancel();
        let _ = self.0.set_state(gst::State::Null);
        if self.2.any() {
            // Never finalized: see `Panicked`.
            tracing::warn!("an element of the pipeline panicked; its resources are left allocated");
            std::mem::forget(self.0.clone());
        }
    }
}

/// Whether an element panicked (gst-rs posts `Panicked: …` as its error).
/// From then on gst-rs skips the element's state changes and pad
/// (de)activation, so nothing can stop its streaming thread: finalizing the
/// pipeline under it made that thread join itself and crash the process.
/// Such a pipeline is set to Null (every other element stops) and then
/// leaked: a parked thread and some memory, rather than a crash. Muxers are
/// kept from the one known panic (see `MuxEnds`), so this is a last resort.
#[derive(Clone, Default)]
struct Panicked(Arc<std::sync::atomic::AtomicBool>);

impl Panicked {
    /// Notes `message` if it reports an element's panic.
    fn note(&self, message: &gst::Message) {
        if let gst::MessageView::Error(err) = message.view() {
            if err.error().message().starts_with("Panicked") {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn any(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Runs the ladder's work, turning a panic inside it into an error: the
/// session must end as failed (`stream.failed`), never look like a
/// publisher who left because the ladder vanished without a word.
async fn panics_as_errors(work: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("no message");
            Err(format!("the media ladder crashed: {}", crate::logging::clip(message)))
        }
    }
}

#[derive(Default)]
struct Discovery {
    metadata: Option<StreamMetadata>,
    video_config: Option<VideoConfig>,
    audio_config: Option<AudioConfig>,
    buffered: Vec<MediaPacket>,
    /// Payload bytes in `buffered`, bounded by `max_bytes`.
    buffered_bytes: usize,
    max_bytes: usize,
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
            (Some(first), Some(last)) => last.saturating_sub(first),
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
                    self.buffered_bytes = self.buffered_bytes.saturating_add(frame.data.len());
                    self.buffered.push(MediaPacket::Video(frame));
                } else {
                    self.stats.video_dropped();
                }
            }
            MediaPacket::Audio(frame) => {
                self.note_ts(frame.pts_ms);
                if self.audio_config.is_some() {
                    self.buffered_bytes = self.buffered_bytes.saturating_add(frame.data.len());
                    self.buffered.push(MediaPacket::Audio(frame));
                } else if audio_wanted {
                    self.stats.audio_dropped();
                }
            }
        }
    }

    /// The buffer is at its packet or byte bound: discovery must end with
    /// the tracks configured so far.
    fn full(&self) -> bool {
        self.buffered.len() >= MAX_BUFFERED_PACKETS || self.buffered_bytes >= self.max_bytes
    }

    fn ready(&self) -> bool {
        // Only configured tracks are buffered, so a full buffer always has
        // something to build from.
        if self.full() {
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
            .map(|w| w[1].saturating_sub(w[0]))
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
            bytes = bytes.saturating_add(len as u64);
            first = Some(first.map_or(ts, |f| f.min(ts)));
            last = Some(last.map_or(ts, |l| l.max(ts)));
        }
        let span = last?.saturating_sub(first?);
        (span >= 500).then(|| bytes.saturating_mul(8000) / span as u64)
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
        let result = panics_as_errors(self.run_inner(input)).await;
        // After a panic nothing else stopped the callbacks.
        self.stop.cancel();
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
            max_bytes: self.settings.discovery_max_bytes,
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
        if discovery.full() {
            tracing::info!(
                packets = discovery.buffered.len(),
                bytes = discovery.buffered_bytes,
                "discovery buffer full; building the ladder with the tracks configured so far"
            );
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
        let teardown = Teardown(built.pipeline.clone(), self.stop.clone(), self.panicked.clone());
        if let Some(meter) = &built.skip {
            self.stats.attach_skip(meter.clone());
        }
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

        let mut feeder = Feeder::new(&built, &discovery, &self.settings);
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
        let mut overload = self.overload_watch(built);
        let mut judge = tokio::time::interval(OVERLOAD_TICK);
        judge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stall = StallClock::default();
        loop {
            let backlogged = feeder.backlogged();
            stall.note(std::time::Instant::now(), backlogged);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Stop::Stopped,
                _ = self.events.tx.closed() => return Stop::OutputClosed,
                _ = judge.tick(), if overload.is_some() => {
                    if let Some(watch) = overload.as_mut() {
                        self.judge_overload(watch, feeder.pushed_video_ns, &stall);
                    }
                }
                message = messages.next() => {
                    if let Some(message) = &message {
                        self.panicked.note(message);
                    }
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

    /// Overload is watched when the profile asks for it and something is encoded.
    fn overload_watch(&self, built: &BuiltPipeline) -> Option<OverloadWatch> {
        let settings = &self.settings.overload;
        if !settings.enabled || built.encoded_rungs.is_empty() {
            return None;
        }
        Some(OverloadWatch {
            renditions: built.encoded_rungs.iter().map(|(index, _)| *index).collect(),
            detector: Detector::new(
                settings.clone(),
                built.encoded_rungs.iter().map(|(_, rung)| rung.clone()).collect(),
            ),
        })
    }

    fn judge_overload(&self, watch: &mut OverloadWatch, pushed_ns: u64, stall: &StallClock) {
        let Some(out_ns) = self.events.progress.slowest(watch.renditions.iter().copied()) else {
            return;
        };
        let now = std::time::Instant::now();
        let progress = Progress {
            out_ns,
            in_ns: pushed_ns,
            stalled: stall.total(now),
            skipped: self.stats.encode_skipped(),
        };
        let decision = watch.detector.observe(now, progress);
        let speed = decision.speed;
        tracing::debug!(
            speed,
            stalled_share = decision.stalled_share,
            skipped_ms = progress.skipped.as_millis() as u64,
            backlog_ms = pushed_ns.saturating_sub(out_ns) / 1_000_000,
            "overload judged"
        );
        if let Some((rung, divisor)) = decision.set {
            let name = watch.detector.rungs().get(rung).map(|r| r.name.as_str()).unwrap_or("?");
            tracing::warn!(
                rendition = name,
                frame_rate_divisor = divisor,
                speed,
                "overload: rung frame rate changed"
            );
        }
        match decision.change {
            Some(Change::Degraded) => tracing::warn!(speed, "ladder is behind real time: degraded, shedding encodes"),
            Some(Change::Recovered) => tracing::info!("ladder keeps up again: recovered"),
            None => {}
        }
        if decision.set.is_some() || decision.change.is_some() {
            self.overload.send_replace(watch.detector.state(speed));
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
        // Not the pipeline's EOS: a muxer that never got a buffer never sees
        // one (see `MuxEnds`), so the pipeline as a whole never ends.
        let settled = self.events.ends.settled();
        tokio::pin!(settled);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ok(()),
                _ = &mut deadline => {
                    tracing::warn!("pipeline did not drain within {EOS_TIMEOUT:?}");
                    return Err(format!("pipeline did not drain within {EOS_TIMEOUT:?}"));
                }
                _ = &mut settled => return Ok(()),
                message = messages.next() => match message {
                    None => return Ok(()),
                    Some(message) => {
                        self.panicked.note(&message);
                        if let Some(reason) = bus_error(&message) {
                            return Err(reason);
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
            due_ms: i64::try_from(segment_target.as_millis())
                .unwrap_or(i64::MAX)
                .saturating_sub(ASK_AHEAD_MS)
                .max(1),
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
        let due = last_key_ms.is_some_and(|key| pts_ms.saturating_sub(key) >= self.due_ms);
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
    /// The previous video frame's decode time before `advancing_video_dts`.
    last_video_clock_ms: Option<i64>,
    last_audio_pts: Option<i64>,
    current_video: Option<VideoConfig>,
    /// The audio configuration the audio branch was built for.
    built_audio: Option<AudioConfig>,
    /// False while the source sends an audio codec the branch cannot take
    /// (e.g. AAC after an MP3 start); its frames are dropped meanwhile.
    audio_codec_matches: bool,
    dropped: u64,
    stats: Arc<LadderStats>,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    max_jump_ms: i64,
    /// A publisher can trigger each of these per frame: one line per kind
    /// and interval, with the count suppressed in between.
    drop_log: LogLimiter,
    jump_log: LogLimiter,
    stall_log: LogLimiter,
    config_log: LogLimiter,
    warning_log: LogLimiter,
    last_source_key_ms: Option<i64>,
    /// The latest video presentation time fed in (ns on the timeline).
    pushed_video_ns: u64,
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
    fn new(built: &BuiltPipeline, discovery: &Discovery, settings: &LadderSettings) -> Self {
        let segment_target = settings.segment_target;
        let offset = settings.timeline_offset;
        let max_jump_ms = i64::try_from(settings.max_timestamp_jump.as_millis()).unwrap_or(i64::MAX);
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
            last_video_clock_ms: None,
            last_audio_pts: None,
            current_video: discovery.video_config.clone(),
            built_audio: discovery.audio_config.clone(),
            audio_codec_matches: true,
            dropped: 0,
            stats: discovery.stats.clone(),
            video_clock: TrackClock::new(max_jump_ms),
            audio_clock: TrackClock::new(max_jump_ms),
            max_jump_ms,
            drop_log: LogLimiter::default(),
            jump_log: LogLimiter::default(),
            stall_log: LogLimiter::default(),
            config_log: LogLimiter::default(),
            warning_log: LogLimiter::default(),
            last_source_key_ms: None,
            pushed_video_ns: 0,
            long_gop_limit_ms: i64::try_from(segment_target.as_millis()).unwrap_or(i64::MAX / 2) * 3 / 2,
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

    /// Checked: a timestamp that does not fit the timeline is `None`.
    fn timeline_ns(&mut self, ts_ms: i64) -> Option<gst::ClockTime> {
        let base = *self.base_ms.get_or_insert(ts_ms);
        timeline_time(ts_ms, base, self.timeline_offset)
    }

    /// The frame's timestamp on its track's clock (jumps rebased).
    fn track_time(&mut self, track: Track, ts_ms: i64) -> i64 {
        let clock = match track {
            Track::Video => &mut self.video_clock,
            Track::Audio => &mut self.audio_clock,
        };
        let mapped = clock.map(ts_ms, self.base_ms);
        if let Some(step_ms) = mapped.rebased_from_step {
            if let Some(suppressed) = self.jump_log.allow() {
                tracing::warn!(
                    ?track,
                    step_ms,
                    suppressed,
                    max_jump_ms = self.max_jump_ms,
                    "timestamp jumped beyond the limit; the track continues from its previous frame"
                );
            }
        }
        mapped.ms
    }

    /// A video frame's decode time, at least 1 ms after the previous
    /// frame's. Frames that all carry the same time (a publisher that sends
    /// nothing else, or RTMP ingest clamping a step back) are zero-length
    /// samples to cmafmux: it never completes a chunk from them and emits
    /// nothing, even at the end of the stream.
    fn advancing_video_dts(&mut self, dts_ms: i64) -> i64 {
        let Some(last) = self.last_video_dts.filter(|last| dts_ms <= *last) else {
            return dts_ms;
        };
        if let Some(suppressed) = self.stall_log.allow() {
            tracing::warn!(
                suppressed,
                "video decode time did not advance; the frame is placed 1 ms after the previous one"
            );
        }
        last.saturating_add(1)
    }

    fn drop_packet(&mut self, track: Track, why: &str) {
        match track {
            Track::Video => self.stats.video_dropped(),
            Track::Audio => self.stats.audio_dropped(),
        }
        self.dropped = self.dropped.saturating_add(1);
        if let Some(suppressed) = self.drop_log.allow() {
            tracing::warn!(dropped = self.dropped, suppressed, "dropping input packet: {why}");
        }
    }

    /// An operator warning a publisher can raise at will (codec flapping):
    /// sent at most once per interval.
    fn warn_operator(&mut self, warning: String) {
        if self.warning_log.allow().is_some() {
            self.warnings.push(warning);
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
                let dts_ms = self.track_time(Track::Video, frame.dts_ms);
                if self.last_video_clock_ms.is_some_and(|last| dts_ms < last) {
                    return self.drop_packet(Track::Video, "video decode time went backwards");
                }
                let clock_ms = dts_ms;
                let dts_ms = self.advancing_video_dts(dts_ms);
                let pts_ms = dts_ms.saturating_add(capped_offset(frame.pts_ms, frame.dts_ms, self.max_jump_ms));
                let (Some(dts), Some(pts)) = (self.timeline_ns(dts_ms), self.timeline_ns(pts_ms)) else {
                    return self.drop_packet(Track::Video, "video timestamp outside the ladder's timeline");
                };
                self.video_started = true;
                self.last_video_dts = Some(dts_ms);
                self.last_video_clock_ms = Some(clock_ms);
                let mut buffer = gst::Buffer::from_slice(frame.data);
                if let Some(buffer) = buffer.get_mut() {
                    buffer.set_dts(dts);
                    buffer.set_pts(pts);
                    if !frame.keyframe {
                        buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
                    }
                }
                if !self.keys_on_grid && self.ask.on_frame(pts_ms, frame.keyframe, self.last_source_key_ms) {
                    if let Some(wanted) = &self.keyframe_wanted {
                        wanted.notify_one();
                    }
                }
                if frame.keyframe {
                    self.last_source_key_ms = Some(pts_ms);
                    if let Some(Ok(mut planner)) = self.planner.as_ref().map(|p| p.lock()) {
                        planner.source_keyframe(pts.nseconds());
                    }
                } else {
                    self.check_long_gop(pts_ms, pts);
                }
                self.arrivals.record(Track::Video, pts.nseconds());
                self.pushed_video_ns = self.pushed_video_ns.max(pts.nseconds());
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
                let pts_ms = self.track_time(Track::Audio, frame.pts_ms);
                if self.last_audio_pts.is_some_and(|last| pts_ms < last) {
                    return self.drop_packet(Track::Audio, "audio timestamp went backwards");
                }
                let Some(pts) = self.timeline_ns(pts_ms) else {
                    return self.drop_packet(Track::Audio, "audio timestamp outside the ladder's timeline");
                };
                self.last_audio_pts = Some(pts_ms);
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
        if self.keys_on_grid || self.long_gop_seen || pts_ms.saturating_sub(last_key) <= self.long_gop_limit_ms {
            return;
        }
        self.long_gop_seen = true;
        let limit_s = self.long_gop_limit_ms as f64 / 1000.0;
        if self.switchable.is_empty() {
            self.warnings.push(format!(
                "Source keyframes are more than {limit_s:.1} s apart, so segments are too long for low latency. \
                 Set the keyframe interval to 2 s in the encoder (OBS: Output > Keyframe Interval = 2)."
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
                if self.config_log.allow().is_some() {
                    tracing::info!(sample_rate, channels, "MP3 format changed mid-stream");
                }
                src.set_caps(&pipeline::mp3_caps(*sample_rate, *channels));
                self.audio_codec_matches = true;
            }
            (Some(AudioConfig::Aac { .. }), AudioConfig::Aac { .. }) => self.audio_codec_matches = true,
            // The decoder follows a channel-count change in-band; the encode
            // branch remixes to the announced layout.
            (Some(AudioConfig::Opus { .. }), AudioConfig::Opus { .. }) => self.audio_codec_matches = true,
            _ => {
                if self.audio_codec_matches {
                    self.warn_operator(
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
                if self.config_log.allow().is_some() {
                    tracing::info!(width, height, "H.265 configuration changed mid-stream");
                }
                self.current_video = Some(VideoConfig::H265 { hvcc, width, height });
                return;
            }
            (_, config) => {
                if let Some(suppressed) = self.config_log.allow() {
                    tracing::warn!(
                        codec = config.codec_name(),
                        suppressed,
                        "ignoring a video codec switch mid-stream; the ladder keeps its first codec"
                    );
                }
                return;
            }
        };
        match parse_avcc(&avcc) {
            Ok(info) => {
                if self.config_log.allow().is_some() {
                    tracing::info!(codecs = %info.codecs(), width = info.width, height = info.height,
                        "video configuration changed mid-stream");
                }
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
            Err(e) => {
                if let Some(suppressed) = self.config_log.allow() {
                    tracing::warn!(error = %e, suppressed, "ignoring a bad mid-stream video configuration");
                }
            }
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

#[cfg(test)]
mod discovery_tests {
    use super::*;
    use crate::ingest::VideoFrame;

    fn frame(ts: i64, len: usize, keyframe: bool) -> MediaPacket {
        MediaPacket::Video(VideoFrame {
            dts_ms: ts,
            pts_ms: ts,
            keyframe,
            data: bytes::Bytes::from(vec![0u8; len]),
        })
    }

    fn waiting_for_audio(max_bytes: usize) -> Discovery {
        let mut discovery = Discovery {
            max_bytes,
            ..Discovery::default()
        };
        // Audio is promised and never comes: only the buffer bound can end discovery.
        discovery.accept(
            MediaPacket::Metadata(StreamMetadata {
                has_video: Some(true),
                has_audio: Some(true),
                ..StreamMetadata::default()
            }),
            true,
        );
        let avcc = bytes::Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff]);
        discovery.accept(MediaPacket::VideoConfig(VideoConfig::H264 { avcc }), true);
        discovery
    }

    #[test]
    fn discovery_buffering_is_bounded_in_bytes_not_only_in_packets() {
        const MIB: usize = 1024 * 1024;
        let mut discovery = waiting_for_audio(16 * MIB);
        // Big frames that all carry the same timestamp: the media span never
        // grows, and 1,500 of them would be 1.5 GiB.
        let mut accepted = 0;
        while !discovery.ready() {
            discovery.accept(frame(0, MIB, accepted == 0), true);
            accepted += 1;
            assert!(accepted <= 16, "still discovering after {accepted} MiB");
        }
        assert_eq!(discovery.buffered_bytes, 16 * MIB);
        assert!(discovery.full());
    }

    #[test]
    fn hostile_timestamps_do_not_overflow_discovery_arithmetic() {
        let mut discovery = waiting_for_audio(16 * 1024 * 1024);
        for (ts, key) in [(i64::MIN, true), (i64::MAX, false), (0, false), (i64::MIN, false)] {
            discovery.accept(frame(ts, 100, key), true);
        }
        assert_eq!(discovery.span_ms(), i64::MAX);
        assert!(
            discovery.ready(),
            "the promised audio is given up on once the span is long"
        );
        let fps = discovery.video_fps();
        assert!((1.0..=240.0).contains(&fps), "{fps}");
        let _ = discovery.measured_bitrate(true);
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    /// fmp4mux drained without ever having had a buffer panics; gst-rs then
    /// ignores its state changes, so its streaming thread outlived the
    /// pipeline and crashed the process in about half the runs. The
    /// teardown must stop it all the same.
    #[test]
    fn a_panicked_muxer_is_torn_down_without_crashing() {
        crate::media::init().expect("gstreamer");
        for _ in 0..20 {
            let pipeline = gst::parse::launch(
                "appsrc name=src format=time caps=\"audio/mpeg,mpegversion=4,stream-format=raw,rate=44100,\
                 channels=2,codec_data=(buffer)1210\" ! cmafmux name=mux ! appsink name=sink sync=false",
            )
            .expect("pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
            pipeline.set_state(gst::State::Playing).expect("playing");
            let src = pipeline.by_name("src").expect("appsrc");
            let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
            let bus = pipeline.bus().expect("bus");
            let message = bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
                .expect("the muxer fails");
            let reason = bus_error(&message).expect("an error");
            assert!(reason.contains("Panicked"), "{reason}");
            let panicked = Panicked::default();
            panicked.note(&message);
            assert!(panicked.any());
            drop(Teardown(pipeline, CancellationToken::new(), panicked));
        }
    }

    #[tokio::test]
    async fn a_panic_in_the_ladder_is_reported_as_a_failure_with_its_message() {
        let result = panics_as_errors(async {
            let offset = gst::ClockTime::MAX;
            // The defect of issue 14: unchecked ClockTime arithmetic.
            let _ = offset + gst::ClockTime::from_seconds(1);
            Ok(())
        })
        .await;
        let reason = result.expect_err("a panic is a failure");
        assert!(reason.starts_with("the media ladder crashed: "), "{reason}");
        assert_eq!(
            panics_as_errors(async { Err("x".to_string()) }).await,
            Err("x".to_string())
        );
        assert_eq!(panics_as_errors(async { Ok(()) }).await, Ok(()));
    }
}
