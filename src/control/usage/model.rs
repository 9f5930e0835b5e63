//! Usage records: what an app is billed on, per stream and hour.

use serde::Serialize;
use utoipa::ToSchema;

/// Amounts to add to one (app, stream, hour) row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub ingest_ms: u64,
    pub rendition_ms: u64,
    pub delivered_bytes: u64,
    pub viewer_ms: u64,
    /// Kept as a maximum, not added.
    pub peak_viewers: u64,
}

impl UsageDelta {
    pub fn add(&mut self, other: &UsageDelta) {
        self.ingest_ms += other.ingest_ms;
        self.rendition_ms += other.rendition_ms;
        self.delivered_bytes += other.delivered_bytes;
        self.viewer_ms += other.viewer_ms;
        self.peak_viewers = self.peak_viewers.max(other.peak_viewers);
    }

    pub fn is_empty(&self) -> bool {
        *self == UsageDelta::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    pub app_id: String,
    pub stream_id: String,
    /// Seconds since the epoch at the start of the hour.
    pub hour: i64,
}

/// One hour of one stream, or of a whole app when `stream_id` is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageRow {
    pub app_id: String,
    pub stream_id: Option<String>,
    /// Start of the hour, seconds since the epoch.
    pub hour: i64,
    pub ingest_minutes: f64,
    /// Minutes of transcoded renditions (copied renditions are not counted).
    pub rendition_minutes: f64,
    pub delivered_bytes: u64,
    pub viewer_seconds: f64,
    /// The most viewers at once in that hour (for an app: the largest of
    /// its streams').
    pub peak_viewers: u64,
}

#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub app_id: Option<String>,
    pub stream_id: Option<String>,
    /// Hours starting at or after this (seconds since the epoch).
    pub from: Option<i64>,
    /// Hours starting before this.
    pub to: Option<i64>,
    /// One row per app and hour instead of per stream and hour.
    pub per_app: bool,
    pub limit: u32,
}

pub fn hour_of(unix_secs: i64) -> i64 {
    unix_secs - unix_secs.rem_euclid(3600)
}
