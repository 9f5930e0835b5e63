//! Playlist text. Written by hand: no m3u8 crate writes LL-HLS tags.

mod cache;
mod master;
mod media;

pub(crate) use cache::PlaylistCache;
pub(crate) use master::render_master;
pub(crate) use media::{render_media, MediaPlaylist, MediaTemplate};

use std::time::SystemTime;

/// Stream-wide timing, identical in every rendition's playlist (the spec
/// requires the same SERVER-CONTROL everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamTiming {
    pub target_duration_secs: u64,
    pub part_target_ns: u64,
}

/// Seconds with millisecond precision and no trailing zeros ("0.2", "6", "2.005").
pub(crate) fn seconds(ns: u64) -> String {
    let ms = crate::hls::settings::round_ms(ns);
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let text = format!("{whole}.{frac:03}");
    text.trim_end_matches('0').to_string()
}

/// RFC 3339 in UTC with milliseconds, as EXT-X-PROGRAM-DATE-TIME wants.
pub(crate) fn date_time(at: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from(at)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

pub(crate) fn with_query(uri: &str, query: &str) -> String {
    if query.is_empty() {
        uri.to_string()
    } else {
        format!("{uri}?{query}")
    }
}

/// Attribute values we quote must not carry quotes or line breaks.
pub(crate) fn quoted_safe(value: &str) -> String {
    value.chars().filter(|c| !matches!(c, '"' | '\r' | '\n')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn seconds_are_short_and_exact_to_the_millisecond() {
        assert_eq!(seconds(200_000_000), "0.2");
        assert_eq!(seconds(6_000_000_000), "6");
        assert_eq!(seconds(2_005_333_333), "2.005");
        assert_eq!(seconds(192_000_000), "0.192");
    }

    #[test]
    fn date_time_is_rfc3339_utc_with_millis() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_428_000_123);
        assert_eq!(date_time(at), "2026-11-23T10:00:00.123Z");
    }
}
