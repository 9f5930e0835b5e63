//! Just enough M3U8 reading for assertions. Deliberately independent of the
//! server's writer, so a bug there cannot hide in a shared parser.

use std::collections::BTreeMap;

/// Attributes of a tag line like `#EXT-X-PART:DURATION=0.2,URI="1.0.mp4"`.
pub fn attrs(line: &str) -> BTreeMap<String, String> {
    let body = line.split_once(':').map(|(_, b)| b).unwrap_or("");
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key.trim().to_owned(), value.to_owned());
        rest = next.trim_start_matches(',');
    }
    out
}

pub fn tag_lines<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let prefix = format!("{tag}:");
    text.lines().filter(|l| l.starts_with(&prefix) || *l == tag).collect()
}

pub fn tag_value<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    tag_lines(text, tag)
        .first()
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v)
}

/// Variant and rendition-group playlist URIs of a master playlist, relative.
pub fn media_uris(master: &str) -> Vec<String> {
    let mut uris = Vec::new();
    let mut lines = master.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("#EXT-X-STREAM-INF") {
            if let Some(uri) = lines.peek() {
                uris.push(uri.to_string());
            }
        } else if line.starts_with("#EXT-X-MEDIA:") {
            if let Some(uri) = attrs(line).get("URI") {
                uris.push(uri.clone());
            }
        }
    }
    uris
}

/// URI of the first (highest) video variant of a master playlist.
pub fn first_variant_uri(master: &str) -> String {
    master
        .lines()
        .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF"))
        .nth(1)
        .expect("a video variant")
        .to_owned()
}

/// Path part of a relative URI (no query).
pub fn path_of(uri: &str) -> &str {
    uri.split('?').next().unwrap_or(uri)
}

#[derive(Debug, Clone, Default)]
pub struct Segment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub parts: Vec<Part>,
    pub discontinuity: bool,
    pub key_line: Option<String>,
    pub map_uri: Option<String>,
    pub program_date_time: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Part {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MediaPlaylist {
    pub media_sequence: u64,
    pub segments: Vec<Segment>,
    /// Parts listed after the last complete segment.
    pub trailing_parts: Vec<Part>,
    pub skipped: u64,
    pub ended: bool,
}

impl MediaPlaylist {
    pub fn parse(text: &str) -> Self {
        let mut pl = MediaPlaylist::default();
        let mut cur = Segment::default();
        let mut key: Option<String> = None;
        let mut map: Option<String> = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                pl.media_sequence = v.trim().parse().expect("media sequence");
            } else if line.starts_with("#EXT-X-SKIP:") {
                pl.skipped = attrs(line)
                    .get("SKIPPED-SEGMENTS")
                    .and_then(|v| v.parse().ok())
                    .expect("skipped count");
            } else if line.starts_with("#EXT-X-KEY:") {
                key = Some(line.to_owned());
            } else if line.starts_with("#EXT-X-MAP:") {
                map = attrs(line).get("URI").cloned();
            } else if line == "#EXT-X-DISCONTINUITY" {
                cur.discontinuity = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                cur.program_date_time = Some(v.to_owned());
            } else if line.starts_with("#EXT-X-PART:") {
                let a = attrs(line);
                cur.parts.push(Part {
                    duration: a.get("DURATION").and_then(|d| d.parse().ok()).expect("part duration"),
                    uri: a.get("URI").cloned().expect("part uri"),
                    independent: a.get("INDEPENDENT").map(|v| v == "YES").unwrap_or(false),
                });
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                cur.duration = v
                    .trim_end_matches(',')
                    .split(',')
                    .next()
                    .and_then(|d| d.parse().ok())
                    .expect("extinf");
            } else if line == "#EXT-X-ENDLIST" {
                pl.ended = true;
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                cur.uri = line.to_owned();
                cur.key_line = key.clone();
                cur.map_uri = map.clone();
                cur.msn = pl.media_sequence + pl.skipped + pl.segments.len() as u64;
                pl.segments.push(std::mem::take(&mut cur));
            }
        }
        pl.trailing_parts = cur.parts;
        pl
    }

    pub fn last_msn(&self) -> Option<u64> {
        self.segments.last().map(|s| s.msn)
    }
}
