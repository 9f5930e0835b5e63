//! What the media stage hands to packaging: CMAF init segments and chunks,
//! one stream of them per rendition.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq)]
pub enum RenditionKind {
    Video { width: u32, height: u32, framerate: f64 },
    Audio { sample_rate: u32, channels: u32 },
}

/// One output rendition of a ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionSpec {
    /// Stable name used in URLs: "1080p", "720p", "audio", …
    pub name: String,
    pub kind: RenditionKind,
    /// Peak bits per second, for BANDWIDTH (estimate from the profile or source).
    pub bandwidth: u64,
    /// Average bits per second, for AVERAGE-BANDWIDTH.
    pub average_bandwidth: u64,
    /// RFC 6381 codec string, e.g. "avc1.64001f" or "mp4a.40.2".
    pub codecs: String,
    /// True when this rung copies the source video instead of encoding it.
    pub passthrough: bool,
}

/// One CMAF chunk (`moof`+`mdat`, optionally preceded by `styp`).
/// A chunk maps to an LL-HLS part; a run of chunks starting with
/// `starts_segment` maps to a segment.
#[derive(Debug, Clone)]
pub struct CmafChunk {
    pub data: Bytes,
    /// Presentation time of the first sample, nanoseconds on the session timeline.
    pub pts_ns: u64,
    /// Duration of the chunk in nanoseconds.
    pub duration_ns: u64,
    /// First chunk of a new fragment (segment): begins with a sync sample.
    pub starts_segment: bool,
    /// The chunk's first sample is a sync sample (IDR for video; always for AAC).
    pub independent: bool,
    /// When the last source frame that this chunk covers reached the ladder,
    /// so packaging can measure how long a part took to become available.
    pub source_arrival: Option<std::time::Instant>,
    /// How long the last frame of the chunk spent inside its video encoder
    /// (None for copied media): the share of the lag no packager can remove.
    pub encoder_delay: Option<std::time::Duration>,
}

/// Everything a running ladder reports, in order per rendition.
#[derive(Debug, Clone)]
pub enum LadderEvent {
    /// Sent once, before any init or chunk: the renditions this ladder produces.
    /// Rendition indices in later events refer to this list.
    Renditions(Vec<RenditionSpec>),
    /// A (new) init segment for a rendition. Sent before its first chunk, and
    /// again if the codec configuration changes.
    Init {
        rendition: usize,
        data: Bytes,
    },
    Chunk {
        rendition: usize,
        chunk: CmafChunk,
    },
    /// Something the operator should see (e.g. keyframe interval too long).
    Warning(String),
    /// The ladder stopped. `Err` carries the reason for a failure.
    Ended(Result<(), String>),
}
