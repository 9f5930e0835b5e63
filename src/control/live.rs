//! What the admin API sees of streams that are live right now, and the one
//! thing it may do to them (kick). Implemented by the publish controller,
//! which knows the sessions, from the counters ingest, media and hls keep.

use serde::Serialize;

/// One live stream: who publishes it and how the ladder keeps up.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveStreamStats {
    pub stream_id: String,
    pub app_id: String,
    /// Publish session number; a reconnect or takeover starts a new one.
    pub session: u64,
    /// `rtmp`, later `whip`, `rtsp`.
    pub protocol: String,
    pub client_ip: String,
    /// Unix time in milliseconds when this session was accepted.
    pub started_at_ms: i64,
    pub uptime_secs: f64,
    pub video: Option<VideoInput>,
    pub audio: Option<AudioInput>,
    /// Over the last few seconds.
    pub input_kbps: f64,
    pub ingest_bytes: u64,
    /// Video and audio frames ingest passed on towards the ladder.
    pub frames_received: u64,
    /// Input frames (video and audio) that never reached the ladder's
    /// pipeline: thrown away by ingest (malformed, or video before its
    /// decoder configuration; these are not in `frames_received`) or by the
    /// ladder (video before the first keyframe, timestamps running
    /// backwards or before the session's start, audio in a codec the ladder
    /// was not built for, buffers the pipeline refused). Audio a profile
    /// drops on purpose is not counted, and neither is encoder-internal frame
    /// skipping: the ladder applies backpressure to the publisher rather than
    /// dropping, and a rendition falling behind shows as an `encoder_speed`
    /// below 1.0.
    pub frames_dropped: u64,
    pub renditions: Vec<RenditionStats>,
    /// Concurrent viewer sessions (filled in by the admin API).
    pub viewers: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VideoInput {
    /// `h264`, `h265` or `vp8`.
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Measured from frame arrivals, not the publisher's claim.
    pub fps: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AudioInput {
    /// `aac`, `mp3` or `opus`.
    pub codec: String,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RenditionStats {
    pub name: String,
    /// Over the last few seconds.
    pub output_kbps: f64,
    /// Media time produced per wall-clock time over the last few seconds:
    /// below 1.0 the rendition falls behind live.
    pub encoder_speed: Option<f64>,
    pub parts_published: u64,
}

/// The live side of the control plane, as the admin API needs it.
pub trait LiveStreams: Send + Sync + 'static {
    /// Every live stream, or those of one app.
    fn live(&self, app_id: Option<&str>) -> Vec<LiveStreamStats>;
    fn live_stream(&self, stream_id: &str) -> Option<LiveStreamStats>;
    /// Disconnects the stream's publisher at once; false if it had none.
    fn kick(&self, stream_id: &str, reason: &str) -> bool;
}
