//! Keeping the encoded rungs near live when the machine cannot encode in
//! real time, without ever holding up the passthrough copy.
//!
//! The source video goes through one tee to the copy and to the decoder.
//! Were the decoder's queue allowed to fill, the tee would wait for it, and
//! with it the copy, the feeder and in the end the publisher: the whole
//! stream would drift behind live. So the decoder's queue is bounded in
//! media time, and once it holds `max_backlog` the encode branch **skips**:
//! compressed frames are dropped before the decoder until a source keyframe
//! arrives with the queue at most half that full (a keyframe, so that the
//! decoder never sees a reference it lacks). The copy and the audio never
//! wait for the encodes.
//!
//! A skip leaves a gap in the decoded pictures, which each encoded rung
//! fills at its gate (`GapFill`) with repeats of the last picture before the
//! gap, at the nominal frame rate. An unfilled gap would become one sample
//! as long as the gap: a part longer than PART-TARGET (which the packager
//! would then have to raise for every player) and a segment off the other
//! renditions' grid. Repeats cost x264 little (their macroblocks skip).
//!
//! Skipped media time is counted (`SkipMeter`): the overload detector takes
//! it off the output's progress, so a ladder that keeps up only by skipping
//! is behind and sheds work until it no longer has to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// Media time the encode branch skipped, shared by the skip probe, the
/// rung gates (which fill the gaps) and the overload detector.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkipMeter {
    skipped_ns: Arc<AtomicU64>,
    skips: Arc<AtomicU64>,
    /// PTS of the latest source keyframes skipped: the repeats at those
    /// times are made keyframes, so the rungs keep the copy's segment grid.
    skipped_keys: Arc<Mutex<VecDeque<u64>>>,
}

/// Skipped keyframes remembered (a few skips' worth).
const KEPT_SKIPPED_KEYS: usize = 256;

impl SkipMeter {
    /// Total media time dropped before the decoder so far.
    pub fn skipped(&self) -> Duration {
        Duration::from_nanos(self.skipped_ns.load(Ordering::Acquire))
    }

    /// Skips that have ended (each one leaves one gap to fill).
    pub fn skips(&self) -> u64 {
        self.skips.load(Ordering::Acquire)
    }

    fn skipped_keyframe(&self, pts_ns: u64) {
        if let Ok(mut keys) = self.skipped_keys.lock() {
            if keys.len() >= KEPT_SKIPPED_KEYS {
                keys.pop_front();
            }
            keys.push_back(pts_ns);
        }
    }

    /// The PTS of a source keyframe skipped within `tolerance_ns` of `pts_ns`.
    fn skipped_keyframe_near(&self, pts_ns: u64, tolerance_ns: u64) -> Option<u64> {
        let keys = self.skipped_keys.lock().ok()?;
        keys.iter().copied().find(|key| key.abs_diff(pts_ns) <= tolerance_ns)
    }

    fn add(&self, skipped_ns: u64) {
        self.skipped_ns.fetch_add(skipped_ns, Ordering::AcqRel);
        self.skips.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the skip probe does with one compressed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipVerdict {
    Pass,
    Drop,
    /// The first frame after a skip; the skip covered this much media.
    Resume {
        skipped_ns: u64,
    },
}

/// The skip decision, apart from GStreamer.
#[derive(Debug)]
pub(crate) struct SkipState {
    max_backlog_ns: u64,
    /// PTS of the first frame dropped by the current skip.
    skipping_from: Option<u64>,
}

impl SkipState {
    pub fn new(max_backlog: Duration) -> Self {
        Self {
            max_backlog_ns: u64::try_from(max_backlog.as_nanos()).unwrap_or(u64::MAX).max(1),
            skipping_from: None,
        }
    }

    /// `queued_ns`: media waiting in the decoder's queue; `full`: the queue
    /// is near one of its other limits (bytes), which counts as a backlog.
    pub fn judge(&mut self, pts_ns: u64, keyframe: bool, queued_ns: u64, full: bool) -> SkipVerdict {
        let backlogged = full || queued_ns >= self.max_backlog_ns;
        match self.skipping_from {
            None if !backlogged => SkipVerdict::Pass,
            None => {
                self.skipping_from = Some(pts_ns);
                SkipVerdict::Drop
            }
            Some(from) if keyframe && !full && queued_ns <= self.max_backlog_ns / 2 => {
                self.skipping_from = None;
                SkipVerdict::Resume {
                    skipped_ns: pts_ns.saturating_sub(from),
                }
            }
            Some(_) => SkipVerdict::Drop,
        }
    }
}

/// Bounds the decoder's queue in media time (with room above `max_backlog`
/// so that it never blocks the tee) and installs the skip probe on its sink.
pub(crate) fn install_skip(queue: &gst::Element, max_backlog: Duration, meter: SkipMeter) -> Result<(), String> {
    const MAX_BYTES: u32 = 32 * 1024 * 1024;
    let limit = max_backlog.saturating_mul(2).max(max_backlog + Duration::from_secs(1));
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", MAX_BYTES);
    queue.set_property("max-size-time", u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX));
    let pad = queue
        .static_pad("sink")
        .ok_or_else(|| "decode queue has no sink pad".to_string())?;
    let weak = queue.downgrade();
    let state = Mutex::new(SkipState::new(max_backlog));
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let (Some(buffer), Some(queue)) = (info.buffer(), weak.upgrade()) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts().or(buffer.dts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let queued_ns = queue.property::<u64>("current-level-time");
        let full = queue.property::<u32>("current-level-bytes") >= MAX_BYTES / 4 * 3;
        let Ok(mut state) = state.lock() else {
            return gst::PadProbeReturn::Ok;
        };
        match state.judge(pts.nseconds(), keyframe, queued_ns, full) {
            SkipVerdict::Pass => gst::PadProbeReturn::Ok,
            // `Handled`, not `Drop`: the bindings own (and free) the buffer,
            // and with `Drop` GStreamer 1.22 also unrefs it (a CRITICAL).
            SkipVerdict::Drop => {
                if keyframe {
                    meter.skipped_keyframe(pts.nseconds());
                }
                gst::PadProbeReturn::Handled
            }
            SkipVerdict::Resume { skipped_ns } => {
                meter.add(skipped_ns);
                tracing::debug!(
                    skipped_ms = skipped_ns / 1_000_000,
                    "encode branch skipped ahead to a keyframe"
                );
                gst::PadProbeReturn::Ok
            }
        }
    });
    Ok(())
}

/// The most repeats one gap gets: a longer gap (a source keyframe interval
/// above this) stays a gap rather than a burst of encodes.
const MAX_FILL_FRAMES: u64 = 600;

/// Timestamps of the repeats that fill the gap between a picture at
/// `last_ns` and the next at `next_ns`, one per nominal frame; none when
/// the gap is under one and a half frames (jitter, not a skip).
pub(crate) fn fill_slots(last_ns: u64, next_ns: u64, frame_ns: u64) -> impl Iterator<Item = u64> {
    let frame_ns = frame_ns.max(1);
    let gap = next_ns.saturating_sub(last_ns);
    let count = if gap.saturating_mul(2) < frame_ns.saturating_mul(3) {
        0
    } else {
        // Slots at least half a frame before the next picture.
        (gap.saturating_sub(frame_ns / 2) / frame_ns).min(MAX_FILL_FRAMES)
    };
    (1..=count).map(move |k| last_ns.saturating_add(k.saturating_mul(frame_ns)))
}

/// One rung's gap filling, kept by its gate: the last picture sent on, and
/// how many skips' gaps it has filled (skips can end faster than their gaps
/// reach the gate, so each gap is matched to one skip, in order).
#[derive(Debug, Default)]
pub(crate) struct GapFill {
    last: Option<gst::Buffer>,
    filled_skips: u64,
}

impl GapFill {
    /// Repeats to send before `next` (with their timestamps set, and whether
    /// each stands in for a skipped source keyframe), when a skip happened
    /// since the last gap this rung filled. Remembers `next`.
    pub fn before(&mut self, next: &gst::Buffer, meter: &SkipMeter, nominal_frame_ns: u64) -> Vec<(gst::Buffer, bool)> {
        let last = self.last.replace(next.clone());
        let skips = meter.skips();
        let (Some(last), Some(next_pts)) = (last, next.pts()) else {
            return Vec::new();
        };
        let Some(last_pts) = last.pts() else {
            return Vec::new();
        };
        if skips <= self.filled_skips {
            return Vec::new();
        }
        let frame_ns = last
            .duration()
            .map(|d| d.nseconds())
            .filter(|&d| d > 0)
            .unwrap_or(nominal_frame_ns);
        // A repeat standing in for a skipped keyframe takes its exact time:
        // the muxer cuts segments by it, and a slot a few nanoseconds early
        // would miss the segment boundary.
        let slots: Vec<(u64, bool)> = fill_slots(last_pts.nseconds(), next_pts.nseconds(), frame_ns)
            .map(|slot| match meter.skipped_keyframe_near(slot, frame_ns / 2) {
                Some(key) => (key, true),
                None => (slot, false),
            })
            .collect();
        // Each lasts until the next: no drift between the repeats and the
        // next picture.
        let ends = slots.iter().skip(1).map(|&(pts, _)| pts).chain([next_pts.nseconds()]);
        let repeats: Vec<(gst::Buffer, bool)> = slots
            .iter()
            .zip(ends)
            .map(|(&(pts, keyframe), end)| {
                let mut repeat = last.copy();
                let target = repeat.make_mut();
                target.set_pts(gst::ClockTime::from_nseconds(pts));
                target.set_dts(gst::ClockTime::from_nseconds(pts));
                target.set_duration(gst::ClockTime::from_nseconds(end.saturating_sub(pts)));
                target.unset_flags(gst::BufferFlags::DISCONT);
                (repeat, keyframe)
            })
            .collect();
        if !repeats.is_empty() {
            self.filled_skips += 1;
        }
        repeats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn skips_from_a_full_queue_to_the_first_keyframe_with_room_and_reports_what_it_dropped() {
        let mut state = SkipState::new(Duration::from_secs(1));
        assert_eq!(state.judge(0, true, 0, false), SkipVerdict::Pass);
        assert_eq!(state.judge(33 * MS, false, 999 * MS, false), SkipVerdict::Pass);
        assert_eq!(state.judge(66 * MS, false, 1000 * MS, false), SkipVerdict::Drop);
        assert_eq!(
            state.judge(100 * MS, false, 200 * MS, false),
            SkipVerdict::Drop,
            "not a keyframe"
        );
        assert_eq!(
            state.judge(2000 * MS, true, 900 * MS, false),
            SkipVerdict::Drop,
            "a keyframe, but the queue has not drained yet: on to the next one"
        );
        assert_eq!(
            state.judge(4000 * MS, true, 400 * MS, false),
            SkipVerdict::Resume { skipped_ns: 3934 * MS }
        );
        assert_eq!(state.judge(4033 * MS, false, 433 * MS, false), SkipVerdict::Pass);
    }

    #[test]
    fn a_queue_full_by_bytes_skips_too_and_hostile_timestamps_do_not_overflow() {
        let mut state = SkipState::new(Duration::from_secs(1));
        assert_eq!(state.judge(u64::MAX, false, 0, true), SkipVerdict::Drop);
        assert_eq!(state.judge(0, true, 0, true), SkipVerdict::Drop, "still full");
        assert_eq!(state.judge(0, true, 0, false), SkipVerdict::Resume { skipped_ns: 0 });
        let mut zero = SkipState::new(Duration::ZERO);
        assert_eq!(zero.judge(0, true, 0, false), SkipVerdict::Pass);
    }

    #[test]
    fn gaps_are_filled_one_repeat_per_frame_but_jitter_is_not() {
        let frame = 33_333_333;
        assert_eq!(fill_slots(0, frame, frame).count(), 0);
        assert_eq!(fill_slots(0, frame * 3 / 2 - 1, frame).count(), 0, "jitter");
        assert_eq!(fill_slots(0, 2 * frame, frame).collect::<Vec<_>>(), vec![frame]);
        let slots: Vec<u64> = fill_slots(1000, 1000 + 60 * frame, frame).collect();
        assert_eq!(slots.len(), 59);
        assert_eq!(slots.first(), Some(&(1000 + frame)));
        assert_eq!(slots.last(), Some(&(1000 + 59 * frame)));
        assert_eq!(fill_slots(0, u64::MAX, 1).count() as u64, MAX_FILL_FRAMES);
        assert_eq!(fill_slots(u64::MAX, 0, 0).count(), 0, "backwards");
    }

    #[test]
    fn only_a_gap_after_a_skip_is_filled_and_each_skip_once() {
        gst::init().expect("gstreamer");
        let frame = 40 * MS;
        let at = |pts: u64| {
            let mut buffer = gst::Buffer::with_size(4).expect("buffer");
            let b = buffer.get_mut().expect("writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(frame));
            buffer
        };
        let meter = SkipMeter::default();
        let mut fill = GapFill::default();
        assert!(fill.before(&at(0), &meter, frame).is_empty());
        assert!(
            fill.before(&at(400 * MS), &meter, frame).is_empty(),
            "a source gap, no skip"
        );
        meter.add(800 * MS);
        let repeats = fill.before(&at(1200 * MS), &meter, frame);
        assert_eq!(repeats.len(), 19);
        assert_eq!(repeats[0].0.pts(), Some(gst::ClockTime::from_nseconds(440 * MS)));
        assert_eq!(repeats[18].0.pts(), Some(gst::ClockTime::from_nseconds(1160 * MS)));
        for (pair, next) in repeats.windows(2).zip(1..) {
            let (this, following) = (&pair[0].0, &pair[1].0);
            assert_eq!(
                this.pts().zip(this.duration()).map(|(p, d)| p + d),
                following.pts(),
                "repeat {next}"
            );
        }
        let last = &repeats[18].0;
        assert_eq!(
            last.pts().zip(last.duration()).map(|(p, d)| p + d),
            Some(gst::ClockTime::from_nseconds(1200 * MS))
        );
        assert!(repeats.iter().all(|(_, key)| !key));
        assert!(
            fill.before(&at(2000 * MS), &meter, frame).is_empty(),
            "that skip is filled"
        );
        // Two skips ended before either gap reached the rung: both are filled.
        meter.add(400 * MS);
        meter.add(400 * MS);
        assert_eq!(fill.before(&at(2400 * MS), &meter, frame).len(), 9);
        assert_eq!(fill.before(&at(2440 * MS), &meter, frame).len(), 0, "no gap");
        assert_eq!(fill.before(&at(2840 * MS), &meter, frame).len(), 9);
        assert!(fill.before(&at(3240 * MS), &meter, frame).is_empty(), "both filled");
        // The repeat at a skipped source keyframe's time stands in for it.
        meter.skipped_keyframe(3600 * MS + 1000);
        meter.add(400 * MS);
        let repeats = fill.before(&at(3640 * MS), &meter, frame);
        let keys: Vec<usize> = (0..repeats.len()).filter(|&i| repeats[i].1).collect();
        assert_eq!(keys, vec![8]);
        assert_eq!(
            repeats[8].0.pts(),
            Some(gst::ClockTime::from_nseconds(3600 * MS + 1000)),
            "its exact time"
        );
    }
}
