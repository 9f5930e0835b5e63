//! One rendition's retained media: segments (each a run of parts), init
//! segments, and the live edge that blocking requests wait on.

use std::collections::VecDeque;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::watch;

use super::crypto::Block;
use crate::media::RenditionSpec;

/// Where a published object's bytes are served from.
///
/// Segments go to the store when they complete; memory only bridges the time
/// until that copy is durable. Parts never go to the store (a file per
/// 200 ms part made the file system, not packaging, the main cost of a
/// passthrough stream): the newest ones, which players at the live edge fetch
/// at once (blocking reloads, preload hints), stay in memory, and older ones
/// are cut back out of their stored parent segment on request.
/// Holding a stream's whole live window in memory would cost ~20 MiB per
/// 3 Mbit/s stream; a fan-in edge cannot afford that.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// In memory; `stored` once the store holds a durable copy (segments).
    Memory { bytes: Bytes, stored: bool },
    /// Not in memory: a segment is read from the store, a part is cut out of
    /// its stored parent segment.
    Stored,
}

impl Body {
    pub(crate) fn memory(bytes: Bytes) -> Self {
        Body::Memory { bytes, stored: false }
    }

    /// The bytes, if still held in memory.
    pub(crate) fn bytes(&self) -> Option<&Bytes> {
        match self {
            Body::Memory { bytes, .. } => Some(bytes),
            Body::Stored => None,
        }
    }

    fn memory_len(&self) -> usize {
        self.bytes().map_or(0, Bytes::len)
    }

    fn mark_stored(&mut self) {
        if let Body::Memory { stored, .. } = self {
            *stored = true;
        }
    }

    /// Drops the bytes if the store has them; never before (a listed object
    /// must not 404 while its write is in flight or after it failed).
    fn release(&mut self) {
        if matches!(self, Body::Memory { stored: true, .. }) {
            *self = Body::Stored;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub duration_ns: u64,
    pub independent: bool,
    /// Length of the clear payload: where the part sits in its parent segment.
    pub clear_len: usize,
    /// How `{msn}.{part}.mp4` is served; None once the part leaves part
    /// retention while its parent segment stays (then it is not fetchable).
    pub data: Option<Body>,
    /// The part is an object in the store (only when the store keeps parts).
    pub in_store: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentKey {
    pub key_id: u64,
    /// Kept with the segment so closing it never depends on the key ring.
    pub key: Block,
    pub iv: Block,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub msn: u64,
    /// Start on the rendition's gap-free timeline (sum of earlier durations).
    pub start_ns: u64,
    pub duration_ns: u64,
    pub program_date_time: SystemTime,
    pub discontinuity: bool,
    pub init_id: u64,
    pub key: Option<SegmentKey>,
    pub parts: Vec<Part>,
    /// Clear part payloads while the segment is open: the parent segment is
    /// encrypted from these as one resource when it closes.
    pub clear_parts: Vec<Bytes>,
    /// The parent segment; `Some` exactly when the segment is complete.
    pub data: Option<Body>,
}

impl Segment {
    pub(crate) fn is_complete(&self) -> bool {
        self.data.is_some()
    }

    /// The parent segment is durable in the store.
    pub(crate) fn in_store(&self) -> bool {
        matches!(self.data, Some(Body::Memory { stored: true, .. } | Body::Stored))
    }

    pub(crate) fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}

/// Where a rendition's live edge is; blocking requests wait on changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Edge {
    /// (msn, part index) of the newest published part.
    pub last_part: Option<(u64, u64)>,
    /// Newest complete segment.
    pub last_complete: Option<u64>,
    /// ENDLIST is written: directives are ignored, nothing more will come.
    pub ended: bool,
}

/// Counters the lead may expose (admin API, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenditionStats {
    pub name: String,
    pub last_msn: Option<u64>,
    pub last_part: Option<u64>,
    pub parts_published: u64,
    pub segments_published: u64,
    /// Clear media bytes received from the ladder.
    pub bytes_in: u64,
    /// Media time published (sum of part durations), in nanoseconds.
    pub media_ns: u64,
    pub retained_segments: usize,
    /// Bytes held in memory (parts, segments, inits); objects served from
    /// the store are not counted.
    pub retained_bytes: usize,
}

/// How a rendition's objects relate to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StoreLayout {
    /// Parts are objects in the store too (a bucket behind a CDN).
    pub parts: bool,
    /// Players fetch media from the store (CDN mode): nothing is listed
    /// before its object is durable there, and listing stays in order.
    pub gated: bool,
    /// Recording: segments and inits stay in the store after they leave the
    /// live window (parts still go).
    pub keep_media: bool,
}

/// What players may be told exists (see [`Rendition::visible`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Visible {
    /// Complete segments below this sequence number are listed.
    pub complete_until: u64,
    /// The segment after them, listed as its first `parts` parts only.
    pub partial: Option<(u64, usize)>,
}

pub(crate) struct NewSegment {
    pub program_date_time: SystemTime,
    pub key: Option<SegmentKey>,
}

pub(crate) struct Rendition {
    pub spec: RenditionSpec,
    pub segments: VecDeque<Segment>,
    pub next_msn: u64,
    /// First sequence number written to the playlist; older retained
    /// segments are in their post-listing grace period.
    pub listed_from: u64,
    pub discontinuity_sequence: u64,
    pub inits: VecDeque<(u64, Bytes)>,
    pub current_init: Option<u64>,
    /// The next segment starts after a session change or an init change.
    pub pending_discontinuity: bool,
    /// A new init arrived mid-segment: the next chunk must start a segment.
    pub force_new_segment: bool,
    /// Parts published in the current publisher session.
    pub session_parts: u64,
    /// An init arrived in the current session (chunks need one).
    pub session_init: bool,
    pub edge: watch::Sender<Edge>,
    pub parts_published: u64,
    pub media_ns: u64,
    pub segments_published: u64,
    pub bytes_in: u64,
    pub layout: StoreLayout,
    /// Init segments durable in the store (only tracked when gated).
    pub inits_in_store: Vec<u64>,
    /// Absolute base of media URIs (CDN mode), ending in '/'; relative URIs otherwise.
    pub media_base: Option<String>,
}

impl Rendition {
    pub(crate) fn new(spec: RenditionSpec, first_msn: u64) -> Self {
        Self {
            spec,
            segments: VecDeque::new(),
            next_msn: first_msn,
            listed_from: first_msn,
            discontinuity_sequence: 0,
            inits: VecDeque::new(),
            current_init: None,
            pending_discontinuity: false,
            force_new_segment: false,
            session_parts: 0,
            session_init: false,
            edge: watch::Sender::new(Edge::default()),
            parts_published: 0,
            media_ns: 0,
            segments_published: 0,
            bytes_in: 0,
            layout: StoreLayout::default(),
            inits_in_store: Vec::new(),
            media_base: None,
        }
    }

    /// What a playlist lists. Served by the edge, that is everything
    /// published (the edge holds what the store does not have yet). In CDN
    /// mode players fetch from the store, so listing stops at the first
    /// segment (or part) whose object, or whose init segment, is not durable
    /// there yet: a player must never be told of something that 404s.
    pub(crate) fn visible(&self) -> Visible {
        if !self.layout.gated {
            return match self.open_segment() {
                Some(open) => Visible {
                    complete_until: open.msn,
                    partial: Some((open.msn, open.parts.len())),
                },
                None => Visible {
                    complete_until: self.next_msn,
                    partial: None,
                },
            };
        }
        for segment in self.segments.iter().filter(|s| s.msn >= self.listed_from) {
            let init_ready = self.inits_in_store.contains(&segment.init_id);
            if segment.is_complete() && segment.in_store() && init_ready {
                continue;
            }
            let parts = if init_ready {
                segment.parts.iter().take_while(|p| p.in_store).count()
            } else {
                0
            };
            return Visible {
                complete_until: segment.msn,
                partial: Some((segment.msn, parts)),
            };
        }
        Visible {
            complete_until: self.next_msn,
            partial: None,
        }
    }

    /// The newest listed part, as EXT-X-RENDITION-REPORT and blocking
    /// reloads see it.
    pub(crate) fn visible_last_part(&self) -> Option<(u64, u64)> {
        if !self.layout.gated {
            return self.last_part();
        }
        let visible = self.visible();
        if let Some((msn, parts)) = visible.partial {
            if let Some(last) = (parts as u64).checked_sub(1) {
                return Some((msn, last));
            }
        }
        let last_complete = visible.complete_until.checked_sub(1)?;
        let segment = self.segment(last_complete)?;
        Some((segment.msn, (segment.parts.len() as u64).checked_sub(1)?))
    }

    fn visible_last_complete(&self) -> Option<u64> {
        if !self.layout.gated {
            return self.last_complete();
        }
        let until = self.visible().complete_until;
        self.segments
            .iter()
            .rev()
            .find(|s| s.is_complete() && s.msn < until)
            .map(|s| s.msn)
    }

    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    pub(crate) fn open_segment(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| !s.is_complete())
    }

    fn open_segment_mut(&mut self) -> Option<&mut Segment> {
        self.segments.back_mut().filter(|s| !s.is_complete())
    }

    pub(crate) fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.get(self.index_of(msn)?)
    }

    fn segment_mut(&mut self, msn: u64) -> Option<&mut Segment> {
        let index = self.index_of(msn)?;
        self.segments.get_mut(index)
    }

    fn index_of(&self, msn: u64) -> Option<usize> {
        let front = self.segments.front()?.msn;
        usize::try_from(msn.checked_sub(front)?).ok()
    }

    pub(crate) fn timeline_end_ns(&self) -> u64 {
        self.segments.back().map_or(0, Segment::end_ns)
    }

    pub(crate) fn last_part(&self) -> Option<(u64, u64)> {
        let last = self.segments.back()?;
        let index = u64::try_from(last.parts.len()).ok()?.checked_sub(1)?;
        Some((last.msn, index))
    }

    pub(crate) fn last_complete(&self) -> Option<u64> {
        self.segments.iter().rev().find(|s| s.is_complete()).map(|s| s.msn)
    }

    /// The part a player may request before it exists (EXT-X-PRELOAD-HINT).
    pub(crate) fn preload_hint(&self) -> (u64, u64) {
        match self.open_segment() {
            Some(open) => (open.msn, open.parts.len() as u64),
            None => (self.next_msn, 0),
        }
    }

    pub(crate) fn publish_edge(&self, ended: bool) {
        let edge = Edge {
            last_part: self.visible_last_part(),
            last_complete: self.visible_last_complete(),
            ended,
        };
        super::blocking::edge_published(self.name(), &edge);
        self.edge.send_replace(edge);
    }

    pub(crate) fn add_init(&mut self, id: u64, data: Bytes) {
        self.inits.push_back((id, data));
        self.current_init = Some(id);
    }

    pub(crate) fn current_init_data(&self) -> Option<&Bytes> {
        let id = self.current_init?;
        self.init_data(id)
    }

    pub(crate) fn init_data(&self, id: u64) -> Option<&Bytes> {
        self.inits.iter().find(|(i, _)| *i == id).map(|(_, d)| d)
    }

    /// Opens segment `next_msn`; the caller has closed any open one.
    pub(crate) fn begin_segment(&mut self, init_id: u64, new: NewSegment) -> u64 {
        let msn = self.next_msn;
        let start_ns = self.timeline_end_ns();
        self.segments.push_back(Segment {
            msn,
            start_ns,
            duration_ns: 0,
            program_date_time: new.program_date_time,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            init_id,
            key: new.key,
            parts: Vec::new(),
            clear_parts: Vec::new(),
            data: None,
        });
        self.next_msn = msn.saturating_add(1);
        self.force_new_segment = false;
        msn
    }

    /// Appends a part to the open segment; returns its index, or None when
    /// no segment is open (a caller bug, reported by the caller).
    pub(crate) fn append_part(
        &mut self,
        served: Bytes,
        clear: Bytes,
        duration_ns: u64,
        independent: bool,
    ) -> Option<u64> {
        let clear_len = clear.len() as u64;
        let open = self.open_segment_mut()?;
        open.parts.push(Part {
            duration_ns,
            independent,
            clear_len: clear.len(),
            data: Some(Body::memory(served)),
            in_store: false,
        });
        open.clear_parts.push(clear);
        open.duration_ns = open.duration_ns.saturating_add(duration_ns);
        let index = open.parts.len() as u64 - 1;
        self.session_parts += 1;
        self.parts_published += 1;
        self.media_ns = self.media_ns.saturating_add(duration_ns);
        self.bytes_in = self.bytes_in.saturating_add(clear_len);
        Some(index)
    }

    /// Marks the open segment complete with its parent-segment bytes.
    pub(crate) fn complete_open(&mut self, data: Bytes) -> Option<u64> {
        let open = self.open_segment_mut()?;
        open.data = Some(Body::memory(data));
        open.clear_parts = Vec::new();
        let msn = open.msn;
        self.segments_published += 1;
        Some(msn)
    }

    /// Applies the retention rules and returns the file names that left
    /// memory (so the caller deletes them from the store):
    /// - `window` complete segments are listed;
    /// - a segment that left the playlist stays fetchable for the playlist's
    ///   duration plus its own (RFC 8216 §6.2.2), i.e. `window + 1` more segments;
    /// - part files stay 6 target durations from the live edge (listed for 3);
    /// - init segments stay while a retained segment uses them;
    /// - segments durable in the store leave memory, and so do their parts
    ///   unless they end within one target duration of the live edge (see [`Body`]).
    pub(crate) fn enforce_retention(&mut self, window: usize, target_duration_ns: u64) -> Vec<String> {
        let mut removed = Vec::new();
        let window = window as u64;
        let last_complete = self.last_complete();
        if let Some(last_complete) = last_complete {
            while last_complete.saturating_sub(self.listed_from) + 1 > window && self.listed_from <= last_complete {
                if self.segment(self.listed_from).is_some_and(|s| s.discontinuity) {
                    self.discontinuity_sequence += 1;
                }
                self.listed_from += 1;
            }
        }
        while let Some(front) = self.segments.front() {
            if !front.is_complete() || front.msn.saturating_add(window + 1) >= self.listed_from {
                break;
            }
            if let Some(segment) = self.segments.pop_front() {
                self.push_removed_files(&segment, &mut removed);
            }
        }
        let edge = self.timeline_end_ns();
        let part_horizon = target_duration_ns.saturating_mul(6);
        for segment in self.segments.iter_mut().filter(|s| s.is_complete()) {
            if segment.end_ns().saturating_add(part_horizon) >= edge {
                break;
            }
            for part in &mut segment.parts {
                part.data = None;
            }
        }
        let oldest_used = self.segments.iter().map(|s| s.init_id).min();
        let current = self.current_init;
        while let Some((id, _)) = self.inits.front() {
            let id = *id;
            let in_use = Some(id) == current || oldest_used.is_some_and(|oldest| id >= oldest);
            if in_use {
                break;
            }
            self.inits.pop_front();
            self.inits_in_store.retain(|stored| *stored != id);
            if !self.layout.keep_media {
                removed.push(init_file(id));
            }
        }
        self.release_stored(target_duration_ns);
        removed
    }

    /// Notes that segment `msn`'s store copy is durable and releases the
    /// memory it no longer needs.
    pub(crate) fn mark_stored(&mut self, msn: u64, target_duration_ns: u64) {
        if let Some(body) = self.segment_mut(msn).and_then(|s| s.data.as_mut()) {
            body.mark_stored();
        }
        self.release_stored(target_duration_ns);
    }

    /// Drops the memory of every durable segment, and of the parts of such
    /// segments that ended more than `recent_ns` before the live edge.
    fn release_stored(&mut self, recent_ns: u64) {
        let edge = self.timeline_end_ns();
        for segment in &mut self.segments {
            let Some(body) = segment.data.as_mut() else {
                continue; // open: its parts are all it has
            };
            body.release();
            if body.bytes().is_some() {
                continue;
            }
            let mut part_end = segment.start_ns;
            for part in &mut segment.parts {
                part_end = part_end.saturating_add(part.duration_ns);
                if part_end.saturating_add(recent_ns) >= edge {
                    break;
                }
                if let Some(Body::Memory { .. }) = part.data {
                    part.data = Some(Body::Stored);
                }
            }
        }
    }

    /// The store objects of a segment that leaves retention: its parts (if
    /// the store keeps parts) and, unless recording, the segment itself.
    fn push_removed_files(&self, segment: &Segment, files: &mut Vec<String>) {
        if self.layout.parts {
            files.extend((0..segment.parts.len() as u64).map(|i| part_file(segment.msn, i)));
        }
        if segment.is_complete() && !self.layout.keep_media {
            files.push(segment_file(segment.msn));
        }
    }

    /// Every object of this rendition in the store that may go when the
    /// stream goes (a recording's segments and inits stay).
    pub(crate) fn all_files(&self) -> Vec<String> {
        let mut files: Vec<String> = Vec::new();
        if !self.layout.keep_media {
            files.extend(self.inits.iter().map(|(id, _)| init_file(*id)));
        }
        for segment in &self.segments {
            self.push_removed_files(segment, &mut files);
        }
        files
    }

    /// Notes that part `index` of segment `msn` is durable in the store.
    pub(crate) fn mark_part_stored(&mut self, msn: u64, index: usize) {
        if let Some(part) = self.segment_mut(msn).and_then(|s| s.parts.get_mut(index)) {
            part.in_store = true;
        }
    }

    pub(crate) fn mark_init_stored(&mut self, id: u64) {
        if self.inits.iter().any(|(i, _)| *i == id) && !self.inits_in_store.contains(&id) {
            self.inits_in_store.push(id);
        }
    }

    pub(crate) fn stats(&self) -> RenditionStats {
        let last = self.last_part();
        let retained_bytes = self.inits.iter().map(|(_, d)| d.len()).sum::<usize>()
            + self
                .segments
                .iter()
                .map(|s| {
                    s.data.as_ref().map_or(0, Body::memory_len)
                        + s.parts
                            .iter()
                            .filter_map(|p| p.data.as_ref())
                            .map(Body::memory_len)
                            .sum::<usize>()
                        + s.clear_parts.iter().map(Bytes::len).sum::<usize>()
                })
                .sum::<usize>();
        RenditionStats {
            name: self.spec.name.clone(),
            last_msn: last.map(|(m, _)| m),
            last_part: last.map(|(_, p)| p),
            parts_published: self.parts_published,
            segments_published: self.segments_published,
            bytes_in: self.bytes_in,
            media_ns: self.media_ns,
            retained_segments: self.segments.len(),
            retained_bytes,
        }
    }
}

pub(crate) fn segment_file(msn: u64) -> String {
    format!("{msn}.mp4")
}

pub(crate) fn part_file(msn: u64, part: u64) -> String {
    format!("{msn}.{part}.mp4")
}

pub(crate) fn init_file(id: u64) -> String {
    format!("init{id}.mp4")
}

/// Cuts part `clear_range` (its clear bytes' place in the parent segment)
/// back out of the stored parent segment and encrypts it exactly as it was
/// first served: CBC with the segment's key and IV, padded on its own. Only
/// the blocks covering the part are decrypted. None if the stored bytes do
/// not fit (a store that lost or changed the object).
pub(crate) fn derive_part(
    segment: &[u8],
    key: Option<&SegmentKey>,
    clear_range: std::ops::Range<usize>,
) -> Option<Bytes> {
    use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
    let Some(key) = key else {
        return segment.get(clear_range).map(Bytes::copy_from_slice);
    };
    let first_block = clear_range.start / 16;
    let end_block = clear_range.end.div_ceil(16);
    let iv: Block = match first_block.checked_sub(1) {
        None => key.iv,
        Some(previous) => segment.get(previous * 16..first_block * 16)?.try_into().ok()?,
    };
    let mut blocks = segment.get(first_block * 16..end_block * 16)?.to_vec();
    let clear = cbc::Decryptor::<aes::Aes128>::new((&key.key).into(), (&iv).into())
        .decrypt_padded_mut::<NoPadding>(&mut blocks)
        .ok()?;
    let from = clear_range.start - first_block * 16;
    let part = clear.get(from..from + clear_range.len())?;
    Some(super::crypto::encrypt_concat(
        &key.key,
        &key.iv,
        &[Bytes::copy_from_slice(part)],
    ))
}
