//! What the control plane keeps of a recording.

use serde::Serialize;

/// `recording` while its stream runs, `ready` once its playlists are
/// written, `failed` if they could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Recording {
    /// `rec_` and 24 hex digits.
    pub id: String,
    pub app_id: String,
    pub stream_id: String,
    pub status: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// Media duration of the longest rendition.
    pub duration_ms: u64,
    /// Segments kept, all renditions together.
    pub segments: u64,
    pub error: Option<String>,
    #[serde(skip)]
    pub storage_bucket: Option<String>,
    #[serde(skip)]
    pub storage_prefix: Option<String>,
    #[serde(skip)]
    pub cdn_base_url: Option<String>,
    #[serde(skip)]
    pub master: Option<String>,
}

pub struct NewRecording {
    pub id: String,
    pub app_id: String,
    pub stream_id: String,
    pub storage_bucket: Option<String>,
    pub storage_prefix: Option<String>,
    pub cdn_base_url: Option<String>,
    pub started_at: i64,
}

pub const STATUS_RECORDING: &str = "recording";
pub const STATUS_READY: &str = "ready";
pub const STATUS_FAILED: &str = "failed";

pub fn new_recording_id() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("rec_{}", hex::encode(bytes))
}
