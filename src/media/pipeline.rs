//! Building the GStreamer pipeline for one stream.
//!
//! ```text
//! video appsrc ─ tee ─ queue ─ h264parse ─ cmafmux ─ appsink            (passthrough; when nothing
//!                                                                        is decoded: no queue, and a
//!                                                                        direct pad, not an appsrc)
//!                  └─ queue ─ h264parse ─ avdec_h264 ─[keys]─ videoconvert ─ I420 ─ tee₀
//! tee₀ ─ queue ─[gate]─ x264enc ─ h264parse ─ cmafmux ─ appsink         (long-GOP fallback)
//! tee₀ ─ queue ─ videoscale ─ caps ─ teeₙ ─ queue ─ x264enc ─ … appsink  (each rung; teeₙ feeds
//!                                                                        the next smaller rung)
//! audio pad ─ aacparse ─ cmafmux ─ appsink                              (AAC: copied, pushed directly)
//! audio appsrc ─ mpegaudioparse ─ avdec_mp3 ─ audioconvert ─ audioresample ─ caps
//!              ─ avenc_aac ─ aacparse ─ cmafmux ─ appsink                (MP3: encoded once)
//! ```

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::codec::{h264_level_for, x264_profile_bytes, AacInfo, AvcInfo};
use super::encoder_delay::EncoderClock;
use super::fallback::FallbackGate;
use super::keys::{drop_upstream_key_requests, install_key_probe, KeyPlanner};
use super::ladder::LadderSettings;
use super::output::{attach_appsink, EventSink, Producer, RenditionRouter, Track};
use super::overload::{Rung, RungGate};
use super::profile::LadderProfile;
use super::skip::{install_skip, SkipMeter};
use super::types::{RenditionKind, RenditionSpec};

pub(crate) struct VideoSource {
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Measured or announced source bitrate, bits per second.
    pub bitrate_bps: Option<u64>,
}

pub(crate) enum VideoCodec {
    /// Copyable into CMAF as is (the passthrough rung).
    H264 { avcc: Bytes, info: AvcInfo },
    /// Decoded only: players of HLS do not take VP8, so every rung is encoded.
    Vp8,
    /// Decoded only: the ladder is H.264 throughout (every player takes
    /// it), so the passthrough rung is encoded at the source size.
    H265 { hvcc: Bytes },
}

impl VideoSource {
    /// Whether a passthrough rung can copy the source.
    fn copyable(&self) -> bool {
        matches!(self.codec, VideoCodec::H264 { .. })
    }
}

pub(crate) struct AudioSource {
    pub codec: AudioCodec,
    /// Measured or announced source bitrate; used only when the audio is copied.
    pub bitrate_bps: Option<u64>,
}

pub(crate) enum AudioCodec {
    /// Copied as is.
    Aac { asc: Bytes, info: AacInfo },
    /// Decoded and encoded to AAC-LC.
    Mp3 { sample_rate: u32, channels: u32 },
    /// Decoded and encoded to AAC-LC at 48 kHz (Opus's only wire rate).
    Opus { channels: u32 },
}

/// Opus is always 48 kHz on the wire (RFC 7587).
const OPUS_RATE: u32 = 48_000;

impl AudioCodec {
    /// The PCM format the AAC encode runs at; `None` when the audio is copied.
    fn encoded_format(&self) -> Option<(u32, u32)> {
        match self {
            AudioCodec::Aac { .. } => None,
            AudioCodec::Mp3 { sample_rate, channels } => Some((*sample_rate, *channels)),
            AudioCodec::Opus { channels } => Some((OPUS_RATE, (*channels).clamp(1, 2))),
        }
    }
}

/// avenc_aac spends at most 6144 bits per channel on a 1024-sample frame and
/// clamps anything above; announce what it will really do.
pub(crate) fn aac_encode_bitrate_bps(kbps: u32, sample_rate: u32, channels: u32) -> u64 {
    let ceiling = 6 * u64::from(sample_rate) * u64::from(channels.max(1));
    (u64::from(kbps) * 1000).min(ceiling)
}

/// AAC-LC, what avenc_aac writes.
const ENCODED_AAC_CODECS: &str = "mp4a.40.2";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RungKind {
    /// Copy of the source; `fallback_kbps` is the encode used in long-GOP mode.
    Passthrough {
        fallback_kbps: u32,
    },
    Encode {
        kbps: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedRung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub kind: RungKind,
}

fn even(value: f64) -> u32 {
    ((value / 2.0).round() as u32).max(1) * 2
}

/// The video renditions for a source size, largest first.
pub(crate) fn plan_video(
    profile: &LadderProfile,
    src_width: u32,
    src_height: u32,
    src_bitrate_bps: Option<u64>,
) -> Vec<PlannedRung> {
    let mut rungs: Vec<_> = profile.rungs.iter().filter(|r| r.height <= src_height).collect();
    rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
    rungs.dedup_by_key(|r| r.height);
    let width_for = |height: u32| {
        if height == src_height {
            src_width
        } else {
            even(f64::from(height) * f64::from(src_width) / f64::from(src_height.max(1)))
        }
    };
    let mut planned = Vec::new();
    if profile.passthrough {
        let same_height = rungs.iter().find(|r| r.height == src_height);
        let fallback_kbps = same_height.map(|r| r.bitrate_kbps).unwrap_or_else(|| {
            src_bitrate_bps
                .map(|bps| (bps / 1000) as u32)
                .unwrap_or(((u64::from(src_width) * u64::from(src_height)) / 200) as u32)
                .clamp(300, 20_000)
        });
        planned.push(PlannedRung {
            name: same_height
                .map(|r| r.rendition_name())
                .unwrap_or_else(|| format!("{src_height}p")),
            width: src_width,
            height: src_height,
            kind: RungKind::Passthrough { fallback_kbps },
        });
        rungs.retain(|r| r.height < src_height);
    }
    for rung in rungs {
        planned.push(PlannedRung {
            name: rung.rendition_name(),
            width: width_for(rung.height),
            height: rung.height,
            kind: RungKind::Encode {
                kbps: rung.bitrate_kbps,
            },
        });
    }
    planned
}

pub(crate) struct BuiltPipeline {
    pub pipeline: gst::Pipeline,
    pub video_src: Option<MediaSrc>,
    pub audio_src: Option<MediaSrc>,
    pub renditions: Vec<RenditionSpec>,
    pub key_planner: Option<Arc<Mutex<KeyPlanner>>>,
    pub routers: Vec<Arc<RenditionRouter>>,
    /// Renditions that hand over to an encode in long-GOP mode (empty when
    /// the profile has no fallback).
    pub switchable: Vec<Arc<RenditionRouter>>,
    /// Encoded keyframes follow the segment grid, not the source's.
    pub keys_on_grid: bool,
    /// The video decoder, when there is one.
    pub decoder: Option<gst::Element>,
    /// Encoded video rungs by rendition index, each behind a gate that can
    /// shed its frame rate under overload.
    pub encoded_rungs: Vec<(usize, Rung)>,
    /// What the encode branch skipped to stay live (when it may skip).
    pub skip: Option<SkipMeter>,
}

/// Nominal frame duration (ns) of a frame rate; 30 fps when unknown.
fn frame_ns(fps: f64) -> u64 {
    if fps.is_finite() && fps >= 1.0 {
        (1e9 / fps) as u64
    } else {
        33_333_333
    }
}

fn make(factory: &str, name: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|e| format!("creating {factory} `{name}`: {e}"))
}

/// Sets an enum/flags/string property from the text an operator wrote,
/// rejecting unknown values instead of panicking.
fn set_text_property(element: &gst::Element, property: &str, text: &str) -> Result<(), String> {
    let pspec = element
        .find_property(property)
        .ok_or_else(|| format!("{} has no property `{property}`", element.name()))?;
    let value = glib_value_from_text(text, &pspec)
        .ok_or_else(|| format!("{}: `{text}` is not a valid value for `{property}`", element.name()))?;
    element.set_property_from_value(property, &value);
    Ok(())
}

fn glib_value_from_text(text: &str, pspec: &gst::glib::ParamSpec) -> Option<gst::glib::Value> {
    use gst::prelude::GstValueExt;
    gst::glib::Value::deserialize_with_pspec(text, pspec).ok()
}

fn link_all(elements: &[&gst::Element]) -> Result<(), String> {
    gst::Element::link_many(elements.iter().copied()).map_err(|_| {
        let names: Vec<_> = elements.iter().map(|e| e.name().to_string()).collect();
        format!("linking {}", names.join(" ! "))
    })
}

struct Builder<'a> {
    pipeline: gst::Pipeline,
    settings: &'a LadderSettings,
    profile: &'a LadderProfile,
    events: EventSink,
    /// Each encoder's clock by rendition tag, for the appsink of the same tag.
    encoder_clocks: std::cell::RefCell<std::collections::HashMap<String, EncoderClock>>,
}

impl Builder<'_> {
    fn add(&self, factory: &str, name: &str) -> Result<gst::Element, String> {
        let element = make(factory, name)?;
        self.pipeline
            .add(&element)
            .map_err(|e| format!("adding `{name}`: {e}"))?;
        Ok(element)
    }

    fn queue(&self, name: &str) -> Result<gst::Element, String> {
        self.add("queue", name)
    }

    /// cmafmux ! appsink, returning the mux (to link into).
    fn mux_and_sink(
        &self,
        tag: &str,
        router: &Arc<RenditionRouter>,
        producer: Producer,
        track: Track,
    ) -> Result<gst::Element, String> {
        let mux = self.add("cmafmux", &format!("mux-{tag}"))?;
        // A millisecond short of the target. The muxer's fragment grid sits a
        // few nanoseconds past the keyframe times it started from (rounding),
        // and after a skip's repeats (see `skip`) the pictures before an
        // on-grid keyframe ended exactly at it, short of that grid: the
        // rung's fragment ran on to the next keyframe, off the copy's grid
        // (seen with GST_DEBUG=fmp4mux:6). Every rendition's muxer uses the
        // same value, so they still cut at the same keyframes.
        let fragment = self
            .settings
            .segment_target
            .saturating_sub(std::time::Duration::from_millis(1));
        mux.set_property(
            "fragment-duration",
            u64::try_from(fragment.max(std::time::Duration::from_millis(1)).as_nanos()).unwrap_or(u64::MAX),
        );
        mux.set_property("chunk-duration", self.settings.part_target.as_nanos() as u64);
        set_text_property(&mux, "header-update-mode", "none")?;
        // The aggregator's input queue holds this much media before a push
        // waits for the muxer thread; at 0 every frame after the first waits
        // for the muxer to take the previous one (two thread switches per
        // frame). The pipeline is not live, so this adds no output delay:
        // chunks still go out as soon as their last frame is in.
        mux.set_property(
            "latency",
            u64::try_from(self.settings.part_target.as_nanos()).unwrap_or(u64::MAX),
        );
        let sink = self.add("appsink", &format!("sink-{tag}"))?;
        sink.set_property("sync", false);
        sink.set_property("async", false);
        sink.set_property("buffer-list", true);
        link_all(&[&mux, &sink])?;
        let sink_pad = sink
            .static_pad("sink")
            .ok_or_else(|| "appsink has no sink pad".to_string())?;
        self.events.ends.register(&mux, &sink_pad);
        for pad in mux.sink_pads() {
            drop_upstream_key_requests(&pad);
        }
        let appsink = sink
            .downcast::<gst_app::AppSink>()
            .map_err(|_| "appsink is not an AppSink".to_string())?;
        let encoder = self.encoder_clocks.borrow().get(tag).cloned();
        attach_appsink(&appsink, router.clone(), producer, self.events.clone(), track, encoder);
        Ok(mux)
    }

    fn x264(
        &self,
        tag: &str,
        width: u32,
        height: u32,
        fps: f64,
        kbps: u32,
    ) -> Result<(Vec<gst::Element>, String), String> {
        let enc_settings = &self.profile.encoder;
        let encoder = self.add("x264enc", &format!("enc-{tag}"))?;
        let clock = EncoderClock::default();
        clock.install(&encoder);
        self.encoder_clocks.borrow_mut().insert(tag.to_string(), clock);
        set_text_property(&encoder, "speed-preset", &enc_settings.speed_preset)?;
        set_text_property(&encoder, "tune", &enc_settings.tune)?;
        encoder.set_property("bitrate", kbps);
        encoder.set_property("key-int-max", enc_settings.key_int_max);
        encoder.set_property("bframes", 0u32);
        encoder.set_property("threads", enc_settings.threads);
        encoder.set_property("ref", enc_settings.refs.max(1));
        encoder.set_property("vbv-buf-capacity", enc_settings.vbv_buffer_ms.max(1));
        let (profile_idc, constraints) = x264_profile_bytes(&enc_settings.profile)
            .ok_or_else(|| format!("unknown H.264 profile {:?}", enc_settings.profile))?;
        // x264 derives profile_idc from the coding tools in use (ultrafast
        // alone gives Baseline), so pin the tools that define the profile.
        encoder.set_property("cabac", profile_idc != 66);
        encoder.set_property("dct8x8", profile_idc == 100);
        let level = h264_level_for(width, height, fps, enc_settings.refs, kbps, profile_idc == 100);
        // Pinning the level makes the codecs string we announce before the
        // first frame exactly what the encoder writes.
        let mut options = enc_settings.option_string.trim_matches(':').to_string();
        if !options.is_empty() {
            options.push(':');
        }
        options.push_str(&format!("level={level}"));
        encoder.set_property("option-string", options);
        let caps = self.add("capsfilter", &format!("enccaps-{tag}"))?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", enc_settings.profile.as_str())
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        );
        let parse = self.add("h264parse", &format!("encparse-{tag}"))?;
        Ok((
            vec![encoder, caps, parse],
            format!("avc1.{profile_idc:02x}{constraints:02x}{level:02x}"),
        ))
    }
}

impl Builder<'_> {
    /// MP3 in, AAC-LC out at the source's first rate and channel count: the
    /// rendition's format is announced before any audio is decoded, and a
    /// mid-stream MP3 format change is resampled/remixed to it.
    fn aac_encode(&self, codec: &AudioCodec, sample_rate: u32, channels: u32) -> Result<Vec<gst::Element>, String> {
        let mut chain = match codec {
            AudioCodec::Opus { .. } => vec![self.add("opusdec", "audio-decoder")?],
            _ => vec![
                self.add("mpegaudioparse", "audio-parse")?,
                self.add("avdec_mp3", "audio-decoder")?,
            ],
        };
        let convert = self.add("audioconvert", "audio-convert")?;
        let resample = self.add("audioresample", "audio-resample")?;
        let format = self.add("capsfilter", "audio-format")?;
        format.set_property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("rate", sample_rate as i32)
                .field("channels", channels as i32)
                .build(),
        );
        let encoder = self.add("avenc_aac", "audio-encoder")?;
        let bps = aac_encode_bitrate_bps(self.profile.audio_bitrate_kbps, sample_rate, channels);
        encoder.set_property("bitrate", i32::try_from(bps).unwrap_or(i32::MAX));
        let aac_parse = self.add("aacparse", "audio-aacparse")?;
        chain.extend([convert, resample, format, encoder, aac_parse]);
        Ok(chain)
    }
}

pub(crate) fn video_caps(video: &VideoSource) -> gst::Caps {
    let fps_milli = (video.fps * 1000.0).round().clamp(1000.0, 240_000.0) as i32;
    let builder = match &video.codec {
        VideoCodec::H264 { avcc, .. } => gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("codec_data", gst::Buffer::from_slice(avcc.clone())),
        VideoCodec::Vp8 => gst::Caps::builder("video/x-vp8"),
        VideoCodec::H265 { hvcc } => gst::Caps::builder("video/x-h265")
            .field("stream-format", "hvc1")
            .field("alignment", "au")
            .field("codec_data", gst::Buffer::from_slice(hvcc.clone())),
    };
    builder
        .field("width", video.width as i32)
        .field("height", video.height as i32)
        .field("framerate", gst::Fraction::new(fps_milli, 1000))
        .build()
}

pub(crate) fn audio_caps(audio: &AudioSource) -> gst::Caps {
    match &audio.codec {
        AudioCodec::Aac { asc, info } => gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .field("codec_data", gst::Buffer::from_slice(asc.clone()))
            .field("rate", info.sample_rate as i32)
            .field("channels", info.channels as i32)
            .build(),
        AudioCodec::Mp3 { sample_rate, channels } => mp3_caps(*sample_rate, *channels),
        AudioCodec::Opus { channels } => gst::Caps::builder("audio/x-opus")
            .field("channel-mapping-family", 0i32)
            .field("rate", OPUS_RATE as i32)
            .field("channels", (*channels).clamp(1, 2) as i32)
            .build(),
    }
}

pub(crate) fn mp3_caps(sample_rate: u32, channels: u32) -> gst::Caps {
    gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 1i32)
        .field("layer", 3i32)
        .field("rate", sample_rate as i32)
        .field("channels", channels as i32)
        .build()
}

fn appsrc(builder: &Builder, name: &str, caps: gst::Caps) -> Result<gst_app::AppSrc, String> {
    let element = builder.add("appsrc", name)?;
    let src = element
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| "appsrc is not an AppSrc".to_string())?;
    src.set_caps(Some(&caps));
    src.set_format(gst::Format::Time);
    // Not live: ingest timestamps drive everything and nothing syncs to a
    // clock, so the muxers never time out on bursty RTMP delivery and cut
    // short chunks. Back-pressure is applied by the feeder (queue level).
    src.set_is_live(false);
    src.set_do_timestamp(false);
    src.set_max_bytes(0);
    Ok(src)
}

/// Where the feeder pushes one track's frames.
///
/// `Direct` runs the branch (parser, then the muxer's input queue) on the
/// feeder's own thread. An appsrc costs a streaming thread per track and a
/// thread wake-up per frame, which dominated passthrough fan-in CPU; it is
/// kept only where the branch decodes or encodes, since that work must not
/// run on (or block) a Tokio worker. A direct push blocks only while the
/// muxer holds more than its latency (one part) of media; the feeder keeps
/// that from turning into a wait on the packager (see `Feeder::backlogged`).
#[derive(Clone)]
pub(crate) enum MediaSrc {
    App(gst_app::AppSrc),
    Direct(DirectSrc),
}

impl MediaSrc {
    pub fn push(&self, buffer: gst::Buffer) -> Result<(), gst::FlowError> {
        match self {
            MediaSrc::App(src) => src.push_buffer(buffer).map(|_| ()),
            MediaSrc::Direct(src) => src.push(buffer),
        }
    }

    /// Bytes queued ahead of the pipeline (always 0 when pushed directly).
    pub fn level_bytes(&self) -> u64 {
        match self {
            MediaSrc::App(src) => src.current_level_bytes(),
            MediaSrc::Direct(_) => 0,
        }
    }

    pub fn is_direct(&self) -> bool {
        matches!(self, MediaSrc::Direct(_))
    }

    pub fn end_of_stream(&self) {
        match self {
            MediaSrc::App(src) => {
                let _ = src.end_of_stream();
            }
            MediaSrc::Direct(src) => src.end_of_stream(),
        }
    }

    pub fn caps(&self) -> Option<gst::Caps> {
        match self {
            MediaSrc::App(src) => src.caps(),
            MediaSrc::Direct(src) => src.caps(),
        }
    }

    /// New caps for the frames pushed after this call.
    pub fn set_caps(&self, caps: &gst::Caps) {
        match self {
            MediaSrc::App(src) => src.set_caps(Some(caps)),
            MediaSrc::Direct(src) => src.set_caps(caps),
        }
    }
}

struct DirectState {
    caps: gst::Caps,
    /// Stream-start, caps and segment went out (they are sent with the
    /// first frame, once the pipeline is playing).
    started: bool,
    caps_pending: bool,
}

/// A free-standing source pad linked into the pipeline: pushing a buffer
/// runs the downstream chain functions on the caller's thread.
#[derive(Clone)]
pub(crate) struct DirectSrc {
    pad: gst::Pad,
    state: Arc<Mutex<DirectState>>,
}

impl DirectSrc {
    pub fn new(name: &str, caps: gst::Caps) -> Self {
        let state = Arc::new(Mutex::new(DirectState {
            caps,
            started: false,
            caps_pending: false,
        }));
        let query_state = state.clone();
        let pad = gst::Pad::builder(gst::PadDirection::Src)
            .name(name)
            .query_function(move |pad, parent, query| {
                let caps = query_state.lock().ok().map(|s| s.caps.clone());
                match (query.view_mut(), caps) {
                    (gst::QueryViewMut::Caps(q), Some(caps)) => {
                        let result = match q.filter() {
                            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                            None => caps,
                        };
                        q.set_result(&result);
                        true
                    }
                    (gst::QueryViewMut::AcceptCaps(q), Some(caps)) => {
                        let accepted = q.caps().can_intersect(&caps);
                        q.set_result(accepted);
                        true
                    }
                    _ => gst::Pad::query_default(pad, parent, query),
                }
            })
            .build();
        Self { pad, state }
    }

    /// Links the pad to `peer` (its sink pad) and activates it.
    fn link(&self, peer: &gst::Element) -> Result<(), String> {
        let sink = peer
            .static_pad("sink")
            .ok_or_else(|| format!("{} has no sink pad", peer.name()))?;
        self.pad
            .link(&sink)
            .map_err(|e| format!("linking {} to {}: {e:?}", self.pad.name(), peer.name()))?;
        self.pad
            .set_active(true)
            .map_err(|e| format!("activating {}: {e}", self.pad.name()))
    }

    fn push(&self, buffer: gst::Buffer) -> Result<(), gst::FlowError> {
        self.send_pending_events();
        self.pad.push(buffer).map(|_| ())
    }

    fn send_pending_events(&self) {
        let (start, caps) = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let start = !state.started;
            let caps = (start || state.caps_pending).then(|| state.caps.clone());
            state.started = true;
            state.caps_pending = false;
            (start, caps)
        };
        if start {
            let id = format!("{}/{}", self.pad.name(), std::process::id());
            self.pad.push_event(gst::event::StreamStart::new(&id));
        }
        if let Some(caps) = caps {
            self.pad.push_event(gst::event::Caps::new(&caps));
        }
        if start {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            self.pad.push_event(gst::event::Segment::new(&segment));
        }
    }

    fn end_of_stream(&self) {
        self.send_pending_events();
        self.pad.push_event(gst::event::Eos::new());
    }

    fn caps(&self) -> Option<gst::Caps> {
        self.state.lock().ok().map(|s| s.caps.clone())
    }

    fn set_caps(&self, caps: &gst::Caps) {
        if let Ok(mut state) = self.state.lock() {
            state.caps = caps.clone();
            state.caps_pending = true;
        }
    }
}

pub(crate) fn build(
    stream_id: &str,
    profile: &LadderProfile,
    settings: &LadderSettings,
    video: Option<&VideoSource>,
    audio: Option<&AudioSource>,
    events: EventSink,
) -> Result<BuiltPipeline, String> {
    let pipeline = gst::Pipeline::with_name(&format!("ladder-{stream_id}"));
    let builder = Builder {
        pipeline: pipeline.clone(),
        settings,
        profile,
        events: events.clone(),
        encoder_clocks: Default::default(),
    };
    let mut renditions = Vec::new();
    let mut routers = Vec::new();
    let mut video_src = None;
    let mut key_planner = None;
    let mut built_switchable = Vec::new();
    let mut keys_on_grid = false;
    let mut encoded_rungs = Vec::new();
    let mut skip: Option<SkipMeter> = None;

    if let Some(video) = video {
        let mut plan = plan_video(profile, video.width, video.height, video.bitrate_bps);
        if !video.copyable() {
            for rung in &mut plan {
                if let RungKind::Passthrough { fallback_kbps } = rung.kind {
                    rung.kind = RungKind::Encode { kbps: fallback_kbps };
                }
            }
        }
        let needs_decode = plan.iter().any(|r| match r.kind {
            RungKind::Encode { .. } => true,
            RungKind::Passthrough { .. } => profile.long_gop_fallback,
        });
        let tee = builder.add("tee", "video-tee")?;
        let src = if needs_decode {
            let src = appsrc(&builder, "video-src", video_caps(video))?;
            link_all(&[src.upcast_ref(), &tee])?;
            MediaSrc::App(src)
        } else {
            let src = DirectSrc::new("video-src", video_caps(video));
            src.link(&tee)?;
            MediaSrc::Direct(src)
        };
        let segment_ns = settings.segment_target.as_nanos() as u64;
        let planner = Arc::new(Mutex::new(if video.copyable() {
            KeyPlanner::new(segment_ns)
        } else {
            KeyPlanner::on_grid(segment_ns)
        }));
        keys_on_grid = !video.copyable();
        let mut raw_tee: Option<gst::Element> = None;
        let mut switch_hooks: Vec<Box<dyn Fn(u64) + Send + Sync>> = Vec::new();
        let mut switchable = Vec::new();
        if needs_decode {
            let q = builder.queue("decode-queue")?;
            if let (true, Some(max_backlog)) = (settings.overload.enabled, settings.overload.max_encode_backlog) {
                let meter = SkipMeter::default();
                install_skip(&q, max_backlog, meter.clone())?;
                skip = Some(meter);
            }
            let mut decode = vec![&tee, &q];
            let parse;
            let dec = match video.codec {
                VideoCodec::H264 { .. } => {
                    parse = builder.add("h264parse", "decode-parse")?;
                    decode.push(&parse);
                    let dec = builder.add("avdec_h264", "decoder")?;
                    // libav's default frame threading holds one frame per extra thread
                    // before output: tens of milliseconds on every part. Slice threading
                    // adds none (and single-slice sources just decode on one thread,
                    // ~4 ms a 1080p frame).
                    set_text_property(&dec, "thread-type", "slice")?;
                    dec
                }
                VideoCodec::Vp8 => builder.add("vp8dec", "decoder")?,
                VideoCodec::H265 { .. } => {
                    parse = builder.add("h265parse", "decode-parse")?;
                    decode.push(&parse);
                    let dec = builder.add("avdec_h265", "decoder")?;
                    set_text_property(&dec, "thread-type", "slice")?;
                    dec
                }
            };
            let convert = builder.add("videoconvert", "convert")?;
            convert.set_property("n-threads", profile.scaler.threads.max(1));
            let i420 = builder.add("capsfilter", "i420")?;
            i420.set_property(
                "caps",
                gst::Caps::builder("video/x-raw").field("format", "I420").build(),
            );
            let t0 = builder.add("tee", "raw-tee")?;
            decode.extend([&dec, &convert, &i420, &t0]);
            link_all(&decode)?;
            raw_tee = Some(t0);
            key_planner = Some((planner.clone(), dec));
        }

        let mut scale_input = raw_tee.clone();
        for (index, rung) in plan.iter().enumerate() {
            let rendition = renditions.len();
            let router = RenditionRouter::new(rendition);
            let tag = rung.name.clone();
            let kind = RenditionKind::Video {
                width: rung.width,
                height: rung.height,
                framerate: video.fps,
            };
            match rung.kind {
                RungKind::Passthrough { fallback_kbps } => {
                    let parse = builder.add("h264parse", &format!("parse-{tag}"))?;
                    let mux = builder.mux_and_sink(&tag, &router, Producer::Primary, Track::Video)?;
                    if needs_decode {
                        // Decouples the copy from the decoder branch on the same tee.
                        let q = builder.queue(&format!("queue-{tag}"))?;
                        link_all(&[&tee, &q, &parse, &mux])?;
                    } else {
                        // The only branch: a queue would add a thread and up to
                        // 1 s of buffering per stream and decouple nothing.
                        link_all(&[&tee, &parse, &mux])?;
                    }
                    let bps = video.bitrate_bps.unwrap_or(u64::from(fallback_kbps) * 1000);
                    renditions.push(RenditionSpec {
                        name: rung.name.clone(),
                        kind,
                        bandwidth: bps + bps / 2,
                        average_bandwidth: bps,
                        codecs: match &video.codec {
                            VideoCodec::H264 { info, .. } => info.codecs(),
                            VideoCodec::Vp8 | VideoCodec::H265 { .. } => {
                                return Err("only H.264 sources are copied".into())
                            }
                        },
                        passthrough: true,
                    });
                    if let (true, Some(raw)) = (profile.long_gop_fallback, raw_tee.as_ref()) {
                        let ftag = format!("{tag}-fallback");
                        let q = builder.queue(&format!("queue-{ftag}"))?;
                        let (enc, _) = builder.x264(&ftag, rung.width, rung.height, video.fps, fallback_kbps)?;
                        let mux = builder.mux_and_sink(&ftag, &router, Producer::Fallback, Track::Video)?;
                        let mut chain: Vec<&gst::Element> = vec![raw, &q];
                        chain.extend(enc.iter());
                        chain.push(&mux);
                        link_all(&chain)?;
                        let gate = FallbackGate::new();
                        let gate_pad = q
                            .static_pad("src")
                            .ok_or_else(|| "fallback queue has no src pad".to_string())?;
                        gate.install(&gate_pad);
                        let name = rung.name.clone();
                        let stream = stream_id.to_string();
                        switch_hooks.push(Box::new(move |pts_ns| {
                            gate.open_from(pts_ns);
                            tracing::warn!(stream_id = %stream, rendition = %name, pts_ns,
                                "source keyframe interval too long; encoding the top rung");
                        }));
                        switchable.push(router.clone());
                    }
                }
                RungKind::Encode { kbps } => {
                    let Some(input) = scale_input.clone() else {
                        return Err("encoded rung without decoder".into());
                    };
                    let q = builder.queue(&format!("scale-queue-{tag}"))?;
                    let scale = builder.add("videoscale", &format!("scale-{tag}"))?;
                    set_text_property(&scale, "method", &profile.scaler.method)?;
                    scale.set_property("n-threads", profile.scaler.threads.max(1));
                    let size = builder.add("capsfilter", &format!("size-{tag}"))?;
                    size.set_property(
                        "caps",
                        gst::Caps::builder("video/x-raw")
                            .field("width", rung.width as i32)
                            .field("height", rung.height as i32)
                            .build(),
                    );
                    let rung_tee = builder.add("tee", &format!("tee-{tag}"))?;
                    link_all(&[&input, &q, &scale, &size, &rung_tee])?;
                    let eq = builder.queue(&format!("queue-{tag}"))?;
                    let gate = match &skip {
                        Some(meter) => RungGate::filling(meter.clone(), frame_ns(video.fps)),
                        None => RungGate::new(),
                    };
                    gate.install(
                        &eq.static_pad("src")
                            .ok_or_else(|| "rung queue has no src pad".to_string())?,
                    );
                    encoded_rungs.push((
                        rendition,
                        Rung {
                            name: rung.name.clone(),
                            pixel_rate: f64::from(rung.width) * f64::from(rung.height) * video.fps,
                            gate,
                        },
                    ));
                    let (enc, codecs) = builder.x264(&tag, rung.width, rung.height, video.fps, kbps)?;
                    let mux = builder.mux_and_sink(&tag, &router, Producer::Primary, Track::Video)?;
                    let mut chain: Vec<&gst::Element> = vec![&rung_tee, &eq];
                    chain.extend(enc.iter());
                    chain.push(&mux);
                    link_all(&chain)?;
                    if profile.scaler.cascade && index + 1 < plan.len() {
                        scale_input = Some(rung_tee);
                    }
                    let bps = u64::from(kbps) * 1000;
                    renditions.push(RenditionSpec {
                        name: rung.name.clone(),
                        kind,
                        bandwidth: bps + bps / 10,
                        average_bandwidth: bps,
                        codecs,
                        passthrough: false,
                    });
                }
            }
            routers.push(router);
        }
        if let Some((planner, decoder)) = key_planner.as_ref() {
            let pad = decoder
                .static_pad("src")
                .ok_or_else(|| "decoder has no src pad".to_string())?;
            install_key_probe(&pad, planner.clone(), move |pts_ns| {
                for hook in &switch_hooks {
                    hook(pts_ns);
                }
            });
        }
        video_src = Some(src);
        built_switchable = switchable;
    }

    let mut audio_src = None;
    if let Some(audio) = audio {
        let router = RenditionRouter::new(renditions.len());
        let (spec, src) = match &audio.codec {
            AudioCodec::Aac { info, .. } => {
                // Copied AAC is only parsed and muxed: pushed directly.
                let src = DirectSrc::new("audio-src", audio_caps(audio));
                let parse = builder.add("aacparse", "audio-parse")?;
                let mux = builder.mux_and_sink("audio", &router, Producer::Primary, Track::Audio)?;
                link_all(&[&parse, &mux])?;
                src.link(&parse)?;
                let bps = audio.bitrate_bps.unwrap_or(128_000);
                let spec = RenditionSpec {
                    name: "audio".into(),
                    kind: RenditionKind::Audio {
                        sample_rate: info.sample_rate,
                        channels: info.channels,
                    },
                    bandwidth: bps + bps / 10,
                    average_bandwidth: bps,
                    codecs: info.codecs(),
                    passthrough: true,
                };
                (spec, MediaSrc::Direct(src))
            }
            AudioCodec::Mp3 { .. } | AudioCodec::Opus { .. } => {
                let Some((sample_rate, channels)) = audio.codec.encoded_format() else {
                    return Err("copied audio in the encode branch".into());
                };
                // The decode and AAC encode get their own streaming thread.
                let src = appsrc(&builder, "audio-src", audio_caps(audio))?;
                let mut chain = builder.aac_encode(&audio.codec, sample_rate, channels)?;
                chain.insert(0, src.clone().upcast());
                let mux = builder.mux_and_sink("audio", &router, Producer::Primary, Track::Audio)?;
                chain.push(mux);
                link_all(&chain.iter().collect::<Vec<_>>())?;
                let bps = aac_encode_bitrate_bps(profile.audio_bitrate_kbps, sample_rate, channels);
                let spec = RenditionSpec {
                    name: "audio".into(),
                    kind: RenditionKind::Audio { sample_rate, channels },
                    bandwidth: bps + bps / 10,
                    average_bandwidth: bps,
                    codecs: ENCODED_AAC_CODECS.into(),
                    passthrough: false,
                };
                (spec, MediaSrc::App(src))
            }
        };
        renditions.push(spec);
        routers.push(router);
        audio_src = Some(src);
    }

    Ok(BuiltPipeline {
        pipeline,
        video_src,
        audio_src,
        renditions,
        key_planner: key_planner.clone().map(|(planner, _)| planner),
        routers,
        switchable: built_switchable,
        keys_on_grid,
        decoder: key_planner.as_ref().map(|(_, decoder)| decoder.clone()),
        encoded_rungs,
        skip,
    })
}

#[cfg(test)]
mod direct_src_tests {
    use super::*;

    #[test]
    fn direct_push_runs_downstream_on_the_callers_thread_with_caps_and_eos() {
        super::super::init().expect("gstreamer ready");
        let pipeline = gst::Pipeline::new();
        let sink = gst_app::AppSink::builder().sync(false).build();
        sink.set_property("async", false);
        pipeline.add(&sink).expect("add appsink");
        let first = gst::Caps::builder("application/x-pulse-test").field("n", 1i32).build();
        let second = gst::Caps::builder("application/x-pulse-test").field("n", 2i32).build();
        let direct = DirectSrc::new("test-src", first.clone());
        direct.link(sink.upcast_ref()).expect("link");

        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let byte = sample
                        .buffer()
                        .and_then(|b| b.map_readable().ok().and_then(|m| m.first().copied()));
                    record
                        .lock()
                        .expect("lock")
                        .push((std::thread::current().id(), sample.caps_owned(), byte));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).expect("playing");

        let src = MediaSrc::Direct(direct);
        assert!(src.is_direct());
        src.push(gst::Buffer::from_slice([1u8])).expect("first push");
        src.set_caps(&second);
        src.push(gst::Buffer::from_slice([2u8])).expect("second push");
        assert_eq!(src.level_bytes(), 0, "nothing is queued ahead of the pipeline");
        assert_eq!(src.caps(), Some(second.clone()));
        src.end_of_stream();

        let bus = pipeline.bus().expect("bus");
        let eos = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Eos]);
        pipeline.set_state(gst::State::Null).expect("null");
        assert!(eos.is_some(), "EOS pushed on the pad reaches the bus");

        let caller = std::thread::current().id();
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![(caller, Some(first), Some(1)), (caller, Some(second), Some(2))],
            "each buffer is handled on the pushing thread, with the caps in force when it was pushed"
        );
    }
}
