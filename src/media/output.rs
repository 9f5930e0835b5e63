//! From cmafmux buffers on GStreamer streaming threads to `LadderEvent`s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encoder_delay::EncoderClock;
use super::types::{CmafChunk, LadderEvent};

/// Sends events from GStreamer threads. Blocks for back-pressure like
/// `blocking_send`, but gives up when the ladder is being torn down so that a
/// stalled consumer can never deadlock `set_state(Null)`.
#[derive(Clone)]
pub(crate) struct EventSink {
    pub tx: mpsc::Sender<LadderEvent>,
    pub stopping: CancellationToken,
    pub arrivals: ArrivalLog,
    pub progress: OutputProgress,
    pub ends: MuxEnds,
}

/// Where one muxer is in draining at the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MuxEnd {
    /// No buffer has reached it yet.
    Unfed,
    Fed,
    /// Its EOS reached its appsink: everything it made went out.
    Ended,
    /// Its input ended before any buffer: the EOS was held back.
    Empty,
}

/// Tracks each muxer through the drain at the end of the input, and keeps
/// EOS away from a muxer that never got a buffer (a track that was
/// announced but never sent, or whose decoder or encoder never produced
/// anything). fmp4mux 0.13 panics draining such a muxer
/// (`fragment_start_pts.unwrap()`), and a panicked gst-rs element ignores
/// state changes: its streaming thread then outlives the pipeline and
/// crashes the process. Held back, the muxer simply stops at teardown.
#[derive(Clone)]
pub(crate) struct MuxEnds(Arc<tokio::sync::watch::Sender<Vec<MuxEnd>>>);

impl Default for MuxEnds {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(Vec::new())))
    }
}

impl MuxEnds {
    /// Watches `mux` (its sink pads) and the sink pad of the element it feeds.
    pub fn register(&self, mux: &gst::Element, sink_pad: &gst::Pad) {
        let mut index = 0;
        self.0.send_modify(|ends| {
            index = ends.len();
            ends.push(MuxEnd::Unfed);
        });
        for pad in mux.sink_pads() {
            let ends = self.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| {
                    ends.set(index, |end| (end == MuxEnd::Unfed).then_some(MuxEnd::Fed));
                    gst::PadProbeReturn::Remove
                },
            );
            let ends = self.clone();
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                let is_eos = matches!(info.event().map(|e| e.type_()), Some(gst::EventType::Eos));
                if is_eos && ends.set(index, |end| (end == MuxEnd::Unfed).then_some(MuxEnd::Empty)) {
                    // Replaced rather than dropped: a gst-rs probe that drops
                    // an event leaves GStreamer unreffing a null pointer (a
                    // critical warning per stream). Nothing handles this one.
                    let held = gst::Structure::new_empty("pulse-edge/eos-held");
                    info.data = Some(gst::PadProbeData::Event(gst::event::CustomDownstream::new(held)));
                }
                gst::PadProbeReturn::Ok
            });
        }
        let ends = self.clone();
        sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if matches!(info.event().map(|e| e.type_()), Some(gst::EventType::Eos)) {
                ends.set(index, |_| Some(MuxEnd::Ended));
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Applies `change` to muxer `index`; whether it changed anything.
    fn set(&self, index: usize, change: impl FnOnce(MuxEnd) -> Option<MuxEnd>) -> bool {
        self.0.send_if_modified(|ends| match ends.get_mut(index) {
            Some(end) => match change(*end) {
                Some(new) if new != *end => {
                    *end = new;
                    true
                }
                _ => false,
            },
            None => false,
        })
    }

    /// Resolves once every muxer has drained or was held back.
    pub async fn settled(&self) {
        let mut ends = self.0.subscribe();
        let _ = ends
            .wait_for(|ends| ends.iter().all(|end| matches!(end, MuxEnd::Ended | MuxEnd::Empty)))
            .await;
    }
}

/// How far each rendition's output has got (end of its latest chunk, ns on
/// the session timeline): the overload detector's measure of speed.
#[derive(Clone, Default)]
pub(crate) struct OutputProgress(Arc<Mutex<std::collections::HashMap<usize, u64>>>);

impl OutputProgress {
    fn record(&self, rendition: usize, end_ns: u64) {
        if let Ok(mut ends) = self.0.lock() {
            let end = ends.entry(rendition).or_insert(0);
            *end = (*end).max(end_ns);
        }
    }

    /// The least progress among `renditions`; `None` until each has output.
    pub fn slowest(&self, renditions: impl IntoIterator<Item = usize>) -> Option<u64> {
        let ends = self.0.lock().ok()?;
        renditions
            .into_iter()
            .map(|r| ends.get(&r).copied())
            .try_fold(u64::MAX, |min, end| end.map(|end| min.min(end)))
    }
}

/// Which source track a rendition is cut from, so its parts are timed
/// against the arrival of their own frames only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    Video,
    Audio,
}

/// When source frames entered the pipeline, per track, by output-timeline PTS; bounded.
#[derive(Clone, Default)]
pub(crate) struct ArrivalLog {
    video: Arc<Mutex<VecDeque<(u64, Instant)>>>,
    audio: Arc<Mutex<VecDeque<(u64, Instant)>>>,
}

/// About 30 s of 30 fps video, or of 48 kHz AAC.
const ARRIVALS_KEPT: usize = 1024;

impl ArrivalLog {
    fn track(&self, track: Track) -> &Mutex<VecDeque<(u64, Instant)>> {
        match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        }
    }

    pub fn record(&self, track: Track, pts_ns: u64) {
        if let Ok(mut log) = self.track(track).lock() {
            if log.len() == ARRIVALS_KEPT {
                log.pop_front();
            }
            log.push_back((pts_ns, Instant::now()));
        }
    }

    /// Arrival of the track's latest source frame that starts before `end_ns`.
    /// Entries are in arrival order, so the newest match is the latest
    /// arrival even when PTS are reordered (B-frames): scanning from the back
    /// stops after the few frames that arrived since the chunk's end instead
    /// of walking the whole log on every chunk.
    pub fn last_before(&self, track: Track, end_ns: u64) -> Option<Instant> {
        let log = self.track(track).lock().ok()?;
        log.iter().rev().find(|(pts, _)| *pts < end_ns).map(|(_, at)| *at)
    }
}

impl EventSink {
    /// False when the event could not be delivered (receiver gone or stopping).
    pub fn send_blocking(&self, event: LadderEvent) -> bool {
        let send = self.tx.send(event);
        let stop = self.stopping.cancelled();
        futures::executor::block_on(async {
            tokio::select! {
                biased;
                sent = send => sent.is_ok(),
                _ = stop => false,
            }
        })
    }
}

/// Which producer of a rendition an appsink belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Producer {
    Primary,
    /// The source-resolution encode that replaces a passthrough rung in
    /// long-GOP mode.
    Fallback,
}

#[derive(Default)]
struct RouterState {
    switch_pts_ns: Option<u64>,
    primary_done: bool,
    held: Vec<LadderEvent>,
}

/// Orders the hand-over from the passthrough producer to its fallback encode:
/// passthrough chunks that end by the switch point go out, then the
/// fallback's new init and chunks.
pub(crate) struct RenditionRouter {
    pub index: usize,
    state: Mutex<RouterState>,
}

/// The fallback may run ahead of the passthrough by a few chunks; more than
/// this means the passthrough producer stalled, and the fallback goes live.
const MAX_HELD_EVENTS: usize = 64;

impl RenditionRouter {
    pub fn new(index: usize) -> Arc<Self> {
        Arc::new(Self {
            index,
            state: Mutex::new(RouterState::default()),
        })
    }

    pub fn switch_at(&self, pts_ns: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.switch_pts_ns.get_or_insert(pts_ns);
        }
    }

    /// Events to forward now, in order.
    fn route(&self, producer: Producer, event: LadderEvent) -> Vec<LadderEvent> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let Some(switch) = state.switch_pts_ns else {
            return match producer {
                Producer::Primary => vec![event],
                // Cannot happen (the fallback gate opens only at the switch);
                // never mix two producers' chunks under one init.
                Producer::Fallback => Vec::new(),
            };
        };
        match producer {
            Producer::Primary if state.primary_done => Vec::new(),
            Producer::Primary => match &event {
                LadderEvent::Chunk { chunk, .. }
                    if chunk.pts_ns.saturating_add(chunk.duration_ns) <= switch.saturating_add(1_000_000) =>
                {
                    vec![event]
                }
                LadderEvent::Chunk { .. } => {
                    state.primary_done = true;
                    std::mem::take(&mut state.held)
                }
                _ => vec![event],
            },
            Producer::Fallback if state.primary_done => vec![event],
            Producer::Fallback => {
                state.held.push(event);
                if state.held.len() > MAX_HELD_EVENTS {
                    state.primary_done = true;
                    std::mem::take(&mut state.held)
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// At the end of the stream: whatever the fallback produced goes out.
    pub fn finish(&self) -> Vec<LadderEvent> {
        match self.state.lock() {
            Ok(mut state) => {
                state.primary_done = true;
                std::mem::take(&mut state.held)
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Wires an appsink after a cmafmux to the event sink.
pub(crate) fn attach_appsink(
    appsink: &gst_app::AppSink,
    router: Arc<RenditionRouter>,
    producer: Producer,
    events: EventSink,
    track: Track,
    encoder: Option<EncoderClock>,
) {
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffers: Vec<gst::Buffer> = if let Some(list) = sample.buffer_list() {
                    list.iter_owned().collect()
                } else if let Some(buffer) = sample.buffer_owned() {
                    vec![buffer]
                } else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // Encoders shift their segment (x264enc by 1000 h) so buffer
                // PTS differ between branches; running time is the shared timeline.
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                for event in cmaf_events(
                    router.index,
                    &buffers,
                    segment.as_ref(),
                    (&events.arrivals, track),
                    encoder.as_ref(),
                ) {
                    if let LadderEvent::Chunk { rendition, chunk } = &event {
                        events
                            .progress
                            .record(*rendition, chunk.pts_ns.saturating_add(chunk.duration_ns));
                    }
                    for routed in router.route(producer, event) {
                        if !events.send_blocking(routed) {
                            return Err(gst::FlowError::Flushing);
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn box_type(data: &[u8]) -> Option<&[u8]> {
    data.get(4..8)
}

/// One cmafmux output list → an optional init plus one chunk.
fn cmaf_events(
    rendition: usize,
    buffers: &[gst::Buffer],
    segment: Option<&gst::FormattedSegment<gst::ClockTime>>,
    (arrivals, track): (&ArrivalLog, Track),
    encoder: Option<&EncoderClock>,
) -> Vec<LadderEvent> {
    let mut events = Vec::new();
    let mut chunk_data = BytesMut::new();
    let mut chunk_head: Option<&gst::BufferRef> = None;
    for buffer in buffers {
        let Ok(map) = buffer.map_readable() else {
            continue;
        };
        if chunk_head.is_none() && box_type(&map) == Some(b"ftyp") {
            events.push(LadderEvent::Init {
                rendition,
                data: Bytes::copy_from_slice(&map),
            });
            continue;
        }
        if chunk_head.is_none() {
            chunk_head = Some(buffer.as_ref());
        }
        chunk_data.extend_from_slice(&map);
    }
    if let Some(head) = chunk_head {
        let data = chunk_data.freeze();
        let starts_segment = !head.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let independent = starts_segment || first_sample_is_sync(&data).unwrap_or(false);
        let pts_ns = head
            .pts()
            .map(|pts| segment.and_then(|s| s.to_running_time(pts)).unwrap_or(pts).nseconds())
            .unwrap_or(0);
        let duration_ns = head.duration().map(|t| t.nseconds()).unwrap_or(0);
        events.push(LadderEvent::Chunk {
            rendition,
            chunk: CmafChunk {
                pts_ns,
                duration_ns,
                starts_segment,
                independent,
                source_arrival: arrivals.last_before(track, pts_ns.saturating_add(duration_ns)),
                encoder_delay: encoder.and_then(|e| e.delay_of_last_before(pts_ns.saturating_add(duration_ns))),
                data,
            },
        });
    }
    events
}

/// Iterates the boxes of `data` as (type, body).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
        if size < 8 || size > data.len() {
            return None;
        }
        let kind = data.get(4..8)?;
        let body = data.get(8..size)?;
        data = data.get(size..)?;
        Some((kind, body))
    })
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the first sample's flags from `moof/traf/{tfhd,trun}`.
pub(crate) fn first_sample_is_sync(chunk: &[u8]) -> Option<bool> {
    const NON_SYNC: u32 = 0x0001_0000;
    let (_, moof) = boxes(chunk).find(|(kind, _)| *kind == b"moof")?;
    let (_, traf) = boxes(moof).find(|(kind, _)| *kind == b"traf")?;
    let mut default_flags = None;
    for (kind, body) in boxes(traf) {
        if kind == b"tfhd" {
            let flags = be_u32(body, 0)? & 0x00ff_ffff;
            let mut at = 8; // version/flags + track id
            for (bit, len) in [(0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4)] {
                if flags & bit != 0 {
                    at += len;
                }
            }
            if flags & 0x20 != 0 {
                default_flags = Some(be_u32(body, at)?);
            }
        } else if kind == b"trun" {
            let flags = be_u32(body, 0)? & 0x00ff_ffff;
            let mut at = 8; // version/flags + sample count
            if flags & 0x01 != 0 {
                at += 4;
            }
            if flags & 0x04 != 0 {
                return Some(be_u32(body, at)? & NON_SYNC == 0);
            }
            if flags & 0x100 != 0 {
                at += 4;
            }
            if flags & 0x200 != 0 {
                at += 4;
            }
            if flags & 0x400 != 0 {
                return Some(be_u32(body, at)? & NON_SYNC == 0);
            }
            return default_flags.map(|f| f & NON_SYNC == 0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_before_is_the_latest_arrival_even_with_reordered_pts() {
        let log = ArrivalLog::default();
        assert_eq!(log.last_before(Track::Video, u64::MAX), None);
        // Decode order of I P B B: presentation times 0, 99, 33, 66.
        for pts in [0, 99, 33, 66] {
            log.record(Track::Video, pts);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        log.record(Track::Audio, 500);
        let arrivals: Vec<Instant> = log.video.lock().expect("lock").iter().map(|(_, at)| *at).collect();
        // A chunk ending at 99 holds 0, 33 and 66: the last of them arrived last (66).
        assert_eq!(log.last_before(Track::Video, 99), Some(arrivals[3]));
        // One ending at 50 holds 0 and 33; 33 arrived after 0.
        assert_eq!(log.last_before(Track::Video, 50), Some(arrivals[2]));
        assert_eq!(log.last_before(Track::Video, 1), Some(arrivals[0]));
        assert_eq!(log.last_before(Track::Video, 0), None);
        assert!(log.last_before(Track::Audio, 501).is_some_and(|at| at > arrivals[3]));
        assert_eq!(log.last_before(Track::Audio, 500), None, "tracks are separate");
    }

    #[test]
    fn log_keeps_a_bounded_window() {
        let log = ArrivalLog::default();
        for pts in 0..(ARRIVALS_KEPT as u64 + 10) {
            log.record(Track::Audio, pts);
        }
        assert_eq!(log.audio.lock().expect("lock").len(), ARRIVALS_KEPT);
        assert_eq!(log.last_before(Track::Audio, 5), None, "the oldest entries are gone");
        assert!(log.last_before(Track::Audio, 11).is_some());
    }
}
