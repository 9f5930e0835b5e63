//! Recordings: while a stream records, every segment whose store copy is
//! durable is reported to a [`RecordingSink`] (the control plane keeps the
//! list), and at the end the list becomes a VOD playlist. The segments stay
//! where the live window put them; a recording is only their list, its keys
//! and its playlists.

use std::fmt::Write;
use std::time::SystemTime;

use super::playlist::{date_time, seconds};
use super::rendition::{init_file, segment_file};
use super::settings::nearest_secs;

/// A content key as a recording needs it: the edge serves it to players
/// with a playback token long after the live window let it go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedKey {
    pub key_id: u64,
    pub key: [u8; 16],
    pub iv: [u8; 16],
}

/// One segment durable in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSegment {
    pub stream_id: String,
    pub rendition: String,
    pub msn: u64,
    pub duration_ns: u64,
    pub discontinuity: bool,
    pub init_id: u64,
    pub key: Option<RecordedKey>,
    pub program_date_time: SystemTime,
}

/// Receives what a recording is made of. Called from store-writer tasks:
/// implementations hand the work off and return at once.
pub trait RecordingSink: Send + Sync + 'static {
    /// The stream's ladder changed; `master` is its multivariant playlist
    /// (media playlists at `<rendition>/index.m3u8`).
    fn ladder(&self, stream_id: &str, master: String);
    fn segment(&self, segment: RecordedSegment);
}

/// One listed segment of a VOD media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodSegment {
    pub msn: u64,
    pub duration_ns: u64,
    pub discontinuity: bool,
    pub init_id: u64,
    /// Key id and IV when encrypted.
    pub key: Option<(u64, [u8; 16])>,
    pub program_date_time: SystemTime,
}

/// Where a VOD playlist's URIs point.
#[derive(Debug, Clone, Copy)]
pub struct VodUris<'a> {
    /// Prefix of init and segment URIs ("" for relative, or a CDN base ending in '/').
    pub media_base: &'a str,
    /// Prefix of key URIs, e.g. "../key/".
    pub key_base: &'a str,
    /// Appended to key URIs (a viewer's `token=…`); "" for none.
    pub key_query: &'a str,
}

/// A complete VOD media playlist (ENDLIST, no parts). Segments must be in
/// sequence order; gaps (segments lost to an outage) are allowed and marked
/// as discontinuities.
pub fn render_vod_media(segments: &[VodSegment], uris: VodUris<'_>) -> String {
    let target = segments
        .iter()
        .map(|s| nearest_secs(s.duration_ns))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(128 + segments.len() * 160);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", segments.first().map_or(0, |s| s.msn));
    let mut previous: Option<&VodSegment> = None;
    let mut key_in_force: Option<(u64, [u8; 16])> = None;
    for segment in segments {
        let gap = previous.is_some_and(|p| p.msn.saturating_add(1) != segment.msn);
        if previous.is_some() && (segment.discontinuity || gap) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if previous.is_none_or(|p| p.init_id != segment.init_id) {
            // A MAP under a KEY would be decrypted by ffmpeg: end the key first.
            if key_in_force.take().is_some() {
                out.push_str("#EXT-X-KEY:METHOD=NONE\n");
            }
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}{}\"",
                uris.media_base,
                init_file(segment.init_id)
            );
        }
        if segment.key != key_in_force {
            match segment.key {
                Some((key_id, iv)) => {
                    let _ = write!(out, "#EXT-X-KEY:METHOD=AES-128,URI=\"{}{key_id}.key", uris.key_base);
                    if !uris.key_query.is_empty() {
                        out.push('?');
                        out.push_str(&super::playlist::quoted_safe(uris.key_query));
                    }
                    out.push_str("\",IV=0x");
                    out.push_str(&hex::encode_upper(iv));
                    out.push('\n');
                }
                None => out.push_str("#EXT-X-KEY:METHOD=NONE\n"),
            }
            key_in_force = segment.key;
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(segment.program_date_time));
        let _ = writeln!(
            out,
            "#EXTINF:{},\n{}{}",
            seconds(segment.duration_ns),
            uris.media_base,
            segment_file(segment.msn)
        );
        previous = Some(segment);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A multivariant playlist with `query` (a viewer's `token=…`) appended
/// to every media playlist URI, as the live master carries it.
pub fn master_with_query(master: &str, query: &str) -> String {
    if query.is_empty() {
        return master.to_string();
    }
    let query = super::playlist::quoted_safe(query);
    let mut out = String::with_capacity(master.len() + 64);
    for line in master.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            let _ = writeln!(out, "{line}?{query}");
        } else if let Some(start) = line.find("URI=\"") {
            let from = start + 5;
            match line[from..].find('"') {
                Some(end) => {
                    let _ = writeln!(out, "{}?{query}{}", &line[..from + end], &line[from + end..]);
                }
                None => {
                    let _ = writeln!(out, "{line}");
                }
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn master_query_goes_on_every_media_playlist_uri() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",URI=\"audio/index.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n";
        let out = master_with_query(master, "token=t");
        assert!(out.contains("URI=\"audio/index.m3u8?token=t\"\n"), "{out}");
        assert!(out.contains("\n720p/index.m3u8?token=t\n"), "{out}");
        assert!(out.starts_with("#EXTM3U\n#EXT-X-MEDIA"));
        assert_eq!(master_with_query(master, ""), master);
    }

    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn seg(msn: u64, init_id: u64, key: Option<(u64, [u8; 16])>) -> VodSegment {
        VodSegment {
            msn,
            duration_ns: 2_002_000_000,
            discontinuity: false,
            init_id,
            key,
            program_date_time: UNIX_EPOCH + Duration::from_secs(1_800_000_000 + msn * 2),
        }
    }

    #[test]
    fn vod_playlist_lists_every_segment_with_keys_maps_and_endlist() {
        let iv = [0xab; 16];
        let segments = vec![
            seg(10, 1, Some((5, iv))),
            seg(11, 1, Some((5, iv))),
            seg(12, 1, Some((6, iv))),
            // Lost in an outage: 13 is missing.
            seg(14, 2, Some((6, iv))),
        ];
        let text = render_vod_media(
            &segments,
            VodUris {
                media_base: "",
                key_base: "../key/",
                key_query: "token=t",
            },
        );
        assert!(text.starts_with("#EXTM3U\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:10\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXTINF:2.002,").count(), 4);
        assert!(!text.contains("#EXT-X-PART"), "VOD has no parts");
        // A key line where the key changes, and again after a new MAP.
        assert_eq!(
            text.matches("#EXT-X-KEY:METHOD=AES-128,URI=\"../key/5.key?token=t\"")
                .count(),
            1
        );
        assert_eq!(
            text.matches("#EXT-X-KEY:METHOD=AES-128,URI=\"../key/6.key?token=t\"")
                .count(),
            2
        );
        assert_eq!(text.matches("#EXT-X-MAP:URI=\"init1.mp4\"").count(), 1);
        assert_eq!(text.matches("#EXT-X-MAP:URI=\"init2.mp4\"").count(), 1);
        // The gap is a discontinuity, and the MAP comes before the key it must not inherit.
        let gap = text.find("#EXT-X-DISCONTINUITY").expect("gap marked");
        let map2 = text.find("init2.mp4").expect("map");
        assert!(gap < map2);
        let none = text[..map2]
            .rfind("#EXT-X-KEY:METHOD=NONE")
            .expect("key ended before MAP");
        assert!(none > gap);
    }

    #[test]
    fn cdn_base_prefixes_media_but_not_keys() {
        let text = render_vod_media(
            &[seg(1, 1, None)],
            VodUris {
                media_base: "https://cdn.example/m/s1/720p/",
                key_base: "../key/",
                key_query: "",
            },
        );
        assert!(text.contains("#EXT-X-MAP:URI=\"https://cdn.example/m/s1/720p/init1.mp4\""));
        assert!(text.contains("\nhttps://cdn.example/m/s1/720p/1.mp4\n"));
        assert!(!text.contains("#EXT-X-KEY"));
    }
}
