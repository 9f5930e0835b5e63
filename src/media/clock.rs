//! Network timestamps onto the ladder's timeline, without trusting them.
//!
//! Every publisher protocol hands us millisecond timestamps it took from the
//! wire. A hostile or broken one can step them by 2³¹ ms per frame, jump
//! them to the far future once, or send `i64` extremes: none of that may
//! panic the ladder (`ClockTime` arithmetic panics on overflow) or push the
//! output timeline hours ahead, where every later frame would look stale.
//! So each track keeps its own clock, and a step larger than the cap in
//! either direction is treated as a discontinuity: the frame is rebased to
//! just after the previous one, and the track carries on from there.

use gstreamer as gst;

/// The step used after a jump when the track has not shown a normal one
/// yet (one 50 fps frame, and a little under an AAC frame at 48 kHz).
const DEFAULT_STEP_MS: i64 = 20;
/// A normal step remembered for rebasing is at most this long.
const MAX_REMEMBERED_STEP_MS: i64 = 1000;

/// One track's mapping from source milliseconds to rebased milliseconds.
#[derive(Debug)]
pub(crate) struct TrackClock {
    max_jump_ms: i64,
    /// Added to every source timestamp (changes at each rebase).
    shift_ms: i64,
    /// The latest rebased timestamp of this track.
    last_ms: Option<i64>,
    /// The last normal step, used as the step across a jump.
    step_ms: i64,
}

/// What [`TrackClock::map`] did with a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub ms: i64,
    /// The step that was refused (source ms, may be negative) when the
    /// frame was rebased.
    pub rebased_from_step: Option<i64>,
}

impl TrackClock {
    pub fn new(max_jump_ms: i64) -> Self {
        Self {
            max_jump_ms: max_jump_ms.max(1),
            shift_ms: 0,
            last_ms: None,
            step_ms: DEFAULT_STEP_MS,
        }
    }

    /// Maps `ts_ms`. `anchor_ms` stands in for the previous frame when the
    /// track has none yet (the ladder's start), so that a track's very
    /// first frame cannot start in the far future either.
    pub fn map(&mut self, ts_ms: i64, anchor_ms: Option<i64>) -> Mapped {
        let mapped = ts_ms.saturating_add(self.shift_ms);
        let Some(last) = self.last_ms.or(anchor_ms) else {
            self.last_ms = Some(mapped);
            return Mapped {
                ms: mapped,
                rebased_from_step: None,
            };
        };
        let step = mapped.saturating_sub(last);
        if step > self.max_jump_ms || step < -self.max_jump_ms {
            let target = last.saturating_add(self.step_ms);
            self.shift_ms = target.saturating_sub(ts_ms);
            let ms = ts_ms.saturating_add(self.shift_ms);
            self.last_ms = Some(ms);
            return Mapped {
                ms,
                rebased_from_step: Some(step),
            };
        }
        if step > 0 {
            self.step_ms = step.min(MAX_REMEMBERED_STEP_MS);
        }
        // A small step back is the caller's to judge (it drops the frame);
        // it does not move the clock back.
        self.last_ms = Some(last.max(mapped));
        Mapped {
            ms: mapped,
            rebased_from_step: None,
        }
    }
}

/// `offset + (ts_ms - base_ms)` as a `ClockTime`, or `None` when the
/// timestamp is before the base or the sum does not fit.
pub(crate) fn timeline_time(ts_ms: i64, base_ms: i64, offset: gst::ClockTime) -> Option<gst::ClockTime> {
    let rel_ms = u64::try_from(ts_ms.checked_sub(base_ms)?).ok()?;
    let rel_ns = rel_ms.checked_mul(1_000_000)?;
    gst::ClockTime::from_nseconds(rel_ns).checked_add(offset)
}

/// `pts - dts` for a video frame, limited to the jump cap: a composition
/// offset is a few frames, and a huge one would move the presentation time
/// where the decode-time clock cannot see it.
pub(crate) fn capped_offset(pts_ms: i64, dts_ms: i64, max_jump_ms: i64) -> i64 {
    pts_ms.saturating_sub(dts_ms).clamp(-max_jump_ms, max_jump_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_steps_pass_unchanged() {
        let mut clock = TrackClock::new(10_000);
        for ts in [1000, 1033, 1066, 1100, 1100, 1090] {
            assert_eq!(clock.map(ts, None).ms, ts);
        }
    }

    #[test]
    fn a_jump_ahead_is_rebased_and_the_track_continues_from_there() {
        let mut clock = TrackClock::new(10_000);
        clock.map(0, None);
        clock.map(40, None);
        let jumped = clock.map(40 + 3_600_000, None);
        assert_eq!(jumped.ms, 80, "one normal step after the previous frame");
        assert_eq!(jumped.rebased_from_step, Some(3_600_000));
        assert_eq!(clock.map(40 + 3_600_040, None).ms, 120);
    }

    #[test]
    fn a_jump_back_beyond_the_cap_is_rebased_too() {
        let mut clock = TrackClock::new(10_000);
        clock.map(100_000, None);
        clock.map(100_033, None);
        let reset = clock.map(0, None);
        assert_eq!(reset.ms, 100_066);
        assert_eq!(clock.map(33, None).ms, 100_099);
    }

    #[test]
    fn steps_of_two_to_the_31_never_run_the_timeline_away() {
        let mut clock = TrackClock::new(10_000);
        let mut ts: i64 = 0;
        let mut last = 0;
        for _ in 0..20_000 {
            let mapped = clock.map(ts, Some(0));
            assert!(
                mapped.ms >= last && mapped.ms - last <= 10_000,
                "{mapped:?} after {last}"
            );
            last = mapped.ms;
            ts = ts.saturating_add(0x7fff_ffff);
        }
        assert!(last < 20_000 * 1000, "the timeline advanced by {last} ms");
        assert!(timeline_time(last, 0, gst::ClockTime::ZERO).is_some());
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut clock = TrackClock::new(10_000);
        for ts in [i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX] {
            let _ = clock.map(ts, Some(0));
        }
        assert_eq!(timeline_time(i64::MAX, i64::MIN, gst::ClockTime::ZERO), None);
        assert_eq!(timeline_time(-5, 0, gst::ClockTime::ZERO), None);
        assert_eq!(timeline_time(i64::MAX / 1_000_000, 0, gst::ClockTime::MAX), None);
        assert_eq!(
            timeline_time(1500, 500, gst::ClockTime::from_seconds(1)),
            Some(gst::ClockTime::from_seconds(2))
        );
        assert_eq!(capped_offset(i64::MAX, i64::MIN, 10_000), 10_000);
        assert_eq!(capped_offset(1033, 1000, 10_000), 33);
    }

    #[test]
    fn the_first_frame_of_a_track_is_held_near_the_anchor() {
        let mut clock = TrackClock::new(10_000);
        assert_eq!(
            clock.map(1_500, Some(0)).ms,
            1_500,
            "a late start within the cap is kept"
        );
        let mut other = TrackClock::new(10_000);
        let far = other.map(1 << 40, Some(0));
        assert_eq!(far.ms, DEFAULT_STEP_MS);
        assert!(far.rebased_from_step.is_some());
    }
}
