//! What every ingest protocol hands downstream. RTMP, WHIP and RTSP all
//! normalise to these so that nothing after ingest knows the protocol.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Decoder configuration of the video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoConfig {
    /// `avcC` body: an AVCDecoderConfigurationRecord (ISO/IEC 14496-15).
    H264 { avcc: Bytes },
    /// VP8 (WebRTC) has no decoder configuration record; the size is what
    /// the latest keyframe header said. Frames are whole VP8 frames.
    Vp8 { width: u32, height: u32 },
    /// `hvcC` body: an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15),
    /// with the size its SPS gives (read by the ingest that had it parsed).
    H265 { hvcc: Bytes, width: u32, height: u32 },
}

impl VideoConfig {
    /// Lower-case codec name for operators (`h264`, `vp8`).
    pub fn codec_name(&self) -> &'static str {
        match self {
            VideoConfig::H264 { .. } => "h264",
            VideoConfig::Vp8 { .. } => "vp8",
            VideoConfig::H265 { .. } => "h265",
        }
    }
}

/// Decoder configuration of the audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioConfig {
    /// An AudioSpecificConfig (ISO/IEC 14496-3), as carried in the FLV AAC sequence header.
    Aac { asc: Bytes },
    /// MPEG audio layer III. MP3 has no decoder configuration record, so this
    /// is what the first frame header said; it is sent again before the
    /// first frame whose header says otherwise.
    Mp3 { sample_rate: u32, channels: u32 },
    /// Opus (WebRTC): one Opus packet per frame, always 48 kHz on the wire;
    /// mono or stereo (channel mapping family 0).
    Opus { channels: u32 },
}

/// One coded video access unit.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Decode time in milliseconds on the publish session's timeline
    /// (u32 RTMP wrap already unfolded; never goes backwards within a session).
    pub dts_ms: i64,
    /// Presentation time in milliseconds (dts + composition offset).
    pub pts_ms: i64,
    /// True for IDR / random-access frames.
    pub keyframe: bool,
    /// H.264 and H.265: length-prefixed NAL units (4-byte lengths). VP8: one frame.
    pub data: Bytes,
}

/// One coded audio frame: raw AAC (no ADTS header) after an `AudioConfig::Aac`,
/// MPEG audio frame(s) with their headers after an `AudioConfig::Mp3`, one
/// Opus packet after an `AudioConfig::Opus`.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    pub pts_ms: i64,
    pub data: Bytes,
}

/// Stream metadata as announced by the publisher (RTMP `onMetaData`).
/// Every field is optional because encoders disagree on what they send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<f64>,
    pub video_bitrate_kbps: Option<f64>,
    pub audio_bitrate_kbps: Option<f64>,
    /// Publisher said it sends video (a video codec id was announced).
    pub has_video: Option<bool>,
    /// Publisher said it sends audio.
    pub has_audio: Option<bool>,
    pub encoder: Option<String>,
}

/// Everything a publish session sends downstream, in arrival order.
#[derive(Debug, Clone)]
pub enum MediaPacket {
    Metadata(StreamMetadata),
    VideoConfig(VideoConfig),
    AudioConfig(AudioConfig),
    Video(VideoFrame),
    Audio(AudioFrame),
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a publisher's connection, whatever its protocol.
pub fn next_connection_id() -> u64 {
    NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed)
}

/// A publisher asks to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// "rtmp", "whip", "rtsp".
    pub protocol: &'static str,
    /// Application name from the URL (`live` in `rtmp://host/live/<key>`).
    pub app: String,
    /// The stream key with any `?query` already removed.
    pub stream_key: String,
    pub client_addr: SocketAddr,
    /// Process-unique connection id, for logs.
    pub connection_id: u64,
}

/// Why a publish was refused. `description` is shown to the publisher
/// (ffmpeg prints it as "Server error: <description>").
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {description}")]
pub struct PublishRejection {
    pub code: RejectCode,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// Unknown or disabled stream key (`NetStream.Publish.BadName`).
    BadName,
    /// Known key, but refused for another reason: limits, failing control plane
    /// (`NetStream.Publish.Rejected`).
    Rejected,
    /// The server has no room for this publish now (transcode budget, shutting
    /// down); the same request may succeed later (`NetStream.Publish.Rejected`,
    /// WHIP 503 with `Retry-After`).
    Overloaded,
}

/// An accepted publish. Ingest pushes media into `media` and must stop
/// (close the connection) as soon as `kicked` is cancelled or `media` is closed.
#[derive(Debug)]
pub struct PublishSession {
    pub stream_id: String,
    pub media: mpsc::Sender<MediaPacket>,
    pub kicked: CancellationToken,
    /// Ingest counts what it receives here; the control plane reads it.
    pub counters: Arc<IngestCounters>,
    /// Notified when downstream needs a keyframe (the decoder lost its
    /// way). A protocol that can ask the publisher for one does (WHIP: an
    /// RTCP PLI); RTMP cannot and ignores it.
    pub keyframe_wanted: Arc<tokio::sync::Notify>,
}

/// What a publish session has received, counted by ingest on its own thread
/// with relaxed atomics (read now and then for stats and metrics).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Bytes read from the publisher's connection (protocol overhead included).
    pub bytes: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    /// Frames ingest threw away: before the decoder configuration, or malformed.
    pub discarded_frames: AtomicU64,
    tracks: Mutex<Tracks>,
}

/// The decoder configurations and metadata last announced: they change
/// rarely, so a lock is fine here.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    pub video: Option<VideoConfig>,
    pub audio: Option<AudioConfig>,
    pub metadata: Option<StreamMetadata>,
}

impl IngestCounters {
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn discarded(&self) {
        self.discarded_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a packet on its way downstream.
    pub fn on_packet(&self, packet: &MediaPacket) {
        match packet {
            MediaPacket::Video(_) => {
                self.video_frames.fetch_add(1, Ordering::Relaxed);
            }
            MediaPacket::Audio(_) => {
                self.audio_frames.fetch_add(1, Ordering::Relaxed);
            }
            MediaPacket::VideoConfig(config) => self.tracks.lock().video = Some(config.clone()),
            MediaPacket::AudioConfig(config) => self.tracks.lock().audio = Some(config.clone()),
            MediaPacket::Metadata(metadata) => self.tracks.lock().metadata = Some(metadata.clone()),
        }
    }

    pub fn tracks(&self) -> Tracks {
        self.tracks.lock().clone()
    }
}

/// The one door from ingest into the rest of the server: authorise a publish
/// and get a session to push media into. Implemented by the control plane.
pub trait PublishGate: Send + Sync + 'static {
    fn begin(
        &self,
        request: PublishRequest,
    ) -> futures::future::BoxFuture<'static, Result<PublishSession, PublishRejection>>;

    /// Authorises without starting anything (no takeover): WHIP checks the
    /// key before it parses an offer, and begins only once the offer is good.
    /// A refusal counts as `begin`'s would. Default: nothing to check.
    fn check(&self, _request: PublishRequest) -> futures::future::BoxFuture<'static, Result<(), PublishRejection>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(keyframe: bool) -> MediaPacket {
        MediaPacket::Video(VideoFrame {
            dts_ms: 0,
            pts_ms: 0,
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        })
    }

    #[test]
    fn counters_count_frames_and_keep_the_latest_configuration() {
        let counters = IngestCounters::default();
        counters.add_bytes(1200);
        counters.add_bytes(300);
        counters.on_packet(&MediaPacket::VideoConfig(VideoConfig::H264 {
            avcc: Bytes::from_static(b"first"),
        }));
        counters.on_packet(&video(true));
        counters.on_packet(&video(false));
        counters.on_packet(&MediaPacket::Audio(AudioFrame {
            pts_ms: 0,
            data: Bytes::from_static(&[1, 2]),
        }));
        counters.on_packet(&MediaPacket::AudioConfig(AudioConfig::Mp3 {
            sample_rate: 44100,
            channels: 2,
        }));
        // A new decoder configuration mid-stream (an encoder restart) replaces the old one.
        counters.on_packet(&MediaPacket::VideoConfig(VideoConfig::H264 {
            avcc: Bytes::from_static(b"second"),
        }));
        counters.discarded();

        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (
                load(&counters.bytes),
                load(&counters.video_frames),
                load(&counters.audio_frames),
                load(&counters.discarded_frames)
            ),
            (1500, 2, 1, 1)
        );
        let tracks = counters.tracks();
        assert_eq!(
            tracks.video,
            Some(VideoConfig::H264 {
                avcc: Bytes::from_static(b"second")
            })
        );
        assert_eq!(
            tracks.audio,
            Some(AudioConfig::Mp3 {
                sample_rate: 44100,
                channels: 2
            })
        );
        assert_eq!(tracks.metadata, None);
    }
}
