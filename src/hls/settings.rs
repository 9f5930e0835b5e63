use std::time::Duration;

/// How the packager cuts, lists, retains and encrypts media.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsSettings {
    /// Advertised PART-TARGET. Raised automatically (never lowered) if the
    /// media stage delivers longer chunks, because a part may not exceed it.
    pub part_target: Duration,
    /// Lower bound for TARGETDURATION; the real segment lengths come from the ladder.
    pub segment_target: Duration,
    /// Complete segments listed in a live playlist.
    pub window_segments: usize,
    /// A new content key every N media sequence numbers.
    pub key_rotation_segments: u64,
    pub encrypt: bool,
    /// How long a blocking playlist or preload-hinted part request waits;
    /// `None` = 3 × TARGETDURATION, the spec's advice.
    pub blocking_timeout: Option<Duration>,
    /// Bytes queued for the store before the oldest queued parts (then
    /// segments) are dropped, per store.
    pub store_buffer_bytes: usize,
    /// Store operations in flight at once, per store.
    pub store_concurrency: usize,
    /// Back-off after a failed store operation: doubles from the first to the second.
    pub store_retry: (Duration, Duration),
    /// CDN mode: media URIs in playlists are `<base>/<stream>/<rendition>/<file>`
    /// and list only objects already in the store. `None`: the edge serves media.
    pub cdn_base_url: Option<String>,
    /// Keep every segment in the store for a recording (see `RecordingSink`).
    pub record: bool,
}

impl Default for HlsSettings {
    fn default() -> Self {
        Self {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_secs(2),
            // 12 × 2 s = 24 s listed: twice CAN-SKIP-UNTIL (6 × TD), so a delta
            // update skips about half the playlist.
            window_segments: 12,
            key_rotation_segments: 10,
            encrypt: true,
            blocking_timeout: None,
            store_buffer_bytes: 64 * 1024 * 1024,
            store_concurrency: 4,
            store_retry: (Duration::from_millis(200), Duration::from_secs(5)),
            cdn_base_url: None,
            record: false,
        }
    }
}

impl HlsSettings {
    pub(crate) fn part_target_ns(&self) -> u64 {
        duration_ns(self.part_target).max(1_000_000)
    }

    pub(crate) fn min_target_duration_secs(&self) -> u64 {
        ceil_secs(duration_ns(self.segment_target)).max(1)
    }

    pub(crate) fn window(&self) -> usize {
        self.window_segments.max(1)
    }

    pub(crate) fn key_rotation(&self) -> u64 {
        self.key_rotation_segments.max(1)
    }
}

pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds, rounded up, of a duration first rounded to whole milliseconds,
/// so that 2.0000004 s of accumulated rounding noise still counts as 2 s.
pub(crate) fn ceil_secs(ns: u64) -> u64 {
    let ms = round_ms(ns);
    ms.div_ceil(1000)
}

pub(crate) fn nearest_secs(ns: u64) -> u64 {
    ns.saturating_add(500_000_000) / 1_000_000_000
}

pub(crate) fn round_ms(ns: u64) -> u64 {
    ns.saturating_add(500_000) / 1_000_000
}
