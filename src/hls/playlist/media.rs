use std::fmt::Write;

use super::{date_time, quoted_safe, seconds, StreamTiming};
use crate::hls::blocking::SkipRequest;
use crate::hls::rendition::{init_file, part_file, segment_file, Rendition, Segment};

/// Everything a media playlist depends on, except the viewer's key query
/// (see [`MediaTemplate`]).
pub(crate) struct MediaPlaylist<'a> {
    pub rendition: &'a Rendition,
    /// The stream's other renditions, for EXT-X-RENDITION-REPORT.
    pub others: Vec<&'a Rendition>,
    pub timing: StreamTiming,
    pub ended: bool,
    pub skip: Option<SkipRequest>,
}

/// A rendered media playlist that every viewer shares. The only per-viewer
/// part is the query (the viewer's token) on key URIs: it goes in at
/// `key_query_at`, so serving a viewer is a copy, not a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaTemplate {
    text: String,
    /// Byte offsets in `text` right after each key URI's path, ascending.
    key_query_at: Vec<usize>,
}

impl MediaTemplate {
    /// The playlist for a viewer whose key URIs carry `key_query` (e.g.
    /// `token=…`; empty for none). Quotes and line breaks are dropped from
    /// it, as from every quoted attribute value.
    pub(crate) fn assemble(&self, key_query: &str) -> String {
        if key_query.is_empty() || self.key_query_at.is_empty() {
            return self.text.clone();
        }
        let cleaned;
        let query = if key_query.contains(['"', '\r', '\n']) {
            cleaned = quoted_safe(key_query);
            cleaned.as_str()
        } else {
            key_query
        };
        let mut out = String::with_capacity(self.text.len() + self.key_query_at.len() * (query.len() + 1));
        let mut from = 0;
        for &at in &self.key_query_at {
            out.push_str(&self.text[from..at]);
            out.push('?');
            out.push_str(query);
            from = at;
        }
        out.push_str(&self.text[from..]);
        out
    }

    /// Length of the playlist without any key query.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }
}

const NS_PER_SEC: u64 = 1_000_000_000;

pub(crate) fn render_media(p: &MediaPlaylist<'_>) -> MediaTemplate {
    let r = p.rendition;
    let td_ns = p.timing.target_duration_secs.saturating_mul(NS_PER_SEC);
    let skip_until_ns = td_ns.saturating_mul(6);
    let visible = r.visible();
    // How many parts of each listed segment are listed: all, or the
    // `partial` count of the segment at the visible edge.
    let shown = |s: &Segment| match visible.partial {
        Some((msn, parts)) if msn == s.msn => parts,
        _ => s.parts.len(),
    };
    let listed: Vec<&Segment> = r
        .segments
        .iter()
        .filter(|s| s.msn >= r.listed_from && s.msn <= visible.complete_until)
        .filter(|s| s.msn < visible.complete_until || shown(s) > 0)
        .collect();
    let complete = |s: &Segment| s.is_complete() && s.msn < visible.complete_until;
    let base = r.media_base.as_deref().unwrap_or("");
    let edge_ns = r.timeline_end_ns();

    let mut out = String::with_capacity(4096);
    let mut key_query_at = Vec::new();
    out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", p.timing.target_duration_secs);
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},HOLD-BACK={},CAN-SKIP-UNTIL={}",
        seconds(p.timing.part_target_ns.saturating_mul(3)),
        seconds(td_ns.saturating_mul(3)),
        seconds(skip_until_ns),
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", seconds(p.timing.part_target_ns));
    let first_msn = listed.first().map_or(r.listed_from, |s| s.msn);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", r.discontinuity_sequence);

    // Delta update: drop complete segments that start more than the skip
    // boundary before the end of the playlist.
    let skipped = match p.skip {
        Some(_) => listed
            .iter()
            .take_while(|s| complete(s) && edge_ns.saturating_sub(s.start_ns) > skip_until_ns)
            .count(),
        None => 0,
    };
    if skipped > 0 {
        let _ = write!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        if p.skip == Some(SkipRequest::V2) {
            out.push_str(",RECENTLY-REMOVED-DATERANGES=\"\"");
        }
        out.push('\n');
    }

    let part_listing_ns = td_ns.saturating_mul(3);
    let mut previous_init = None;
    let mut key_in_force = false;
    for segment in listed.iter().skip(skipped) {
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        // MAP before KEY keeps the init segment clear. The first written
        // segment always gets both, so delta playlists carry them too.
        if previous_init != Some(segment.init_id) {
            // A MAP further down inherits the KEY above it in ffmpeg (it then
            // decrypts the clear init and stalls): end that key first.
            if key_in_force {
                out.push_str("#EXT-X-KEY:METHOD=NONE\n");
            }
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{base}{}\"", init_file(segment.init_id));
            previous_init = Some(segment.init_id);
        }
        key_in_force = segment.key.is_some();
        if let Some(key) = segment.key {
            let _ = write!(out, "#EXT-X-KEY:METHOD=AES-128,URI=\"../key/{}.key", key.key_id);
            key_query_at.push(out.len());
            out.push_str("\",IV=0x");
            push_hex_upper(&mut out, &key.iv);
            out.push('\n');
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(segment.program_date_time));
        let is_complete = complete(segment);
        let list_parts = !is_complete || segment.end_ns().saturating_add(part_listing_ns) >= edge_ns;
        let parts = &segment.parts[..shown(segment).min(segment.parts.len())];
        let fetchable = |part: &crate::hls::rendition::Part| part.data.is_some() && (!r.layout.gated || part.in_store);
        if list_parts && parts.iter().all(fetchable) {
            for (index, part) in parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={},URI=\"{base}{}\"",
                    seconds(part.duration_ns),
                    part_file(segment.msn, index as u64)
                );
                if part.independent {
                    out.push_str(",INDEPENDENT=YES");
                }
                out.push('\n');
            }
        }
        if is_complete {
            let _ = writeln!(
                out,
                "#EXTINF:{},\n{base}{}",
                seconds(segment.duration_ns),
                segment_file(segment.msn)
            );
        }
    }

    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    } else if !r.layout.gated {
        // Not in CDN mode: a bucket cannot hold a request until the part exists.
        let (msn, part) = r.preload_hint();
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", part_file(msn, part));
    }
    for other in &p.others {
        if let Some((msn, part)) = other.visible_last_part() {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"../{}/index.m3u8\",LAST-MSN={msn},LAST-PART={part}",
                quoted_safe(other.name())
            );
        }
    }
    MediaTemplate {
        text: out,
        key_query_at,
    }
}

fn push_hex_upper(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}
