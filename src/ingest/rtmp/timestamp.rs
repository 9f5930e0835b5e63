//! RTMP timestamps are u32 milliseconds that wrap after ~49.7 days and that
//! encoders occasionally send out of order or with jumps. Downstream wants an
//! i64 timeline per track that never goes backwards, never leaps, and stays
//! far from where milliseconds turned into nanoseconds overflow, whatever a
//! publisher sends.

use std::time::Instant;

use tracing::warn;

use crate::logging::LogLimiter;

/// The highest decode time handed downstream, in ms (about 34.8 years): in
/// nanoseconds an eighth of `i64::MAX`, so the ladder's arithmetic has room.
/// Only a peer sending far faster than real time for hours can get here.
pub(crate) const MAX_TIMELINE_MS: i64 = 1 << 40;

/// The largest composition time offset (PTS - DTS) passed on. FLV carries
/// it as a signed 24-bit value (up to ±2.3 hours); B-frame reordering needs
/// a few frames, well under a second at any usual frame rate.
pub(crate) const MAX_COMPOSITION_OFFSET_MS: i64 = 10_000;

/// When a jump is rebased, the timeline advances by the last ordinary step,
/// but never by more than this.
const MAX_REBASE_STEP_MS: i64 = 1_000;

/// The step a jump is rebased by before any ordinary step was seen (a
/// publisher whose every step is a jump): about one frame, so the timeline
/// still moves and the ladder's muxers can cut parts.
const FIRST_REBASE_STEP_MS: i64 = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{track} timestamps ran past {MAX_TIMELINE_MS} ms of media time")]
pub(crate) struct TimelineExhausted {
    track: &'static str,
}

/// One track's decode timeline.
///
/// Each packet's step from the previous one is the shortest signed distance
/// between the two u32 stamps (which unfolds the wrap). A step within
/// `max_jump_ms` either way is kept: forward it advances the timeline,
/// backward it is clamped to the last DTS until the source catches up. A
/// larger step (an encoder that restarted its clock, or a hostile one) is
/// rebased: the timeline advances by the last ordinary step instead.
#[derive(Debug, Clone)]
pub(crate) struct TrackClock {
    track: &'static str,
    max_jump_ms: i64,
    last_raw: Option<u32>,
    /// Where the source's own timeline puts the last packet on ours: below
    /// `last_dts` while clamping, never further than `max_jump_ms` from it.
    source_ms: i64,
    last_dts: i64,
    /// The last ordinary forward step, reused when rebasing.
    last_step: i64,
    backwards_log: LogLimiter,
    jump_log: LogLimiter,
    offset_log: LogLimiter,
}

impl TrackClock {
    pub(crate) fn new(track: &'static str, max_jump_ms: u32) -> Self {
        Self {
            track,
            max_jump_ms: i64::from(max_jump_ms),
            last_raw: None,
            source_ms: 0,
            last_dts: 0,
            last_step: FIRST_REBASE_STEP_MS,
            backwards_log: LogLimiter::default(),
            jump_log: LogLimiter::default(),
            offset_log: LogLimiter::default(),
        }
    }

    /// Returns the decode time to use for a packet stamped `raw`.
    pub(crate) fn dts(&mut self, raw: u32) -> Result<i64, TimelineExhausted> {
        self.dts_at(raw, Instant::now())
    }

    /// [`TrackClock::dts`] at `now` (which only paces the warnings).
    pub(crate) fn dts_at(&mut self, raw: u32, now: Instant) -> Result<i64, TimelineExhausted> {
        let Some(last_raw) = self.last_raw.replace(raw) else {
            self.source_ms = i64::from(raw);
            self.last_dts = i64::from(raw);
            return Ok(self.last_dts);
        };
        let step = i64::from(raw.wrapping_sub(last_raw) as i32);
        // |source_ms - last_dts| <= max_jump_ms and |step| < 2^31: no overflow.
        let source = self.source_ms + step;
        let (source, dts) = if (0..=self.max_jump_ms).contains(&(source - self.last_dts)) {
            if step > 0 {
                self.last_step = step.min(MAX_REBASE_STEP_MS);
            }
            (source, source)
        } else if (1..=self.max_jump_ms).contains(&(self.last_dts - source)) {
            if let Some(suppressed) = self.backwards_log.allow_at(now) {
                warn!(
                    track = self.track,
                    from_ms = self.last_dts,
                    to_ms = source,
                    suppressed,
                    "timestamp went backwards; clamping to keep DTS monotonic"
                );
            }
            (source, self.last_dts)
        } else {
            let dts = self.last_dts + self.last_step;
            if let Some(suppressed) = self.jump_log.allow_at(now) {
                warn!(
                    track = self.track,
                    step_ms = step,
                    max_ms = self.max_jump_ms,
                    rebased_to_ms = dts,
                    suppressed,
                    "timestamp jumped; rebasing the track's timeline"
                );
            }
            (dts, dts)
        };
        if dts > MAX_TIMELINE_MS {
            return Err(TimelineExhausted { track: self.track });
        }
        self.source_ms = source;
        self.last_dts = dts;
        Ok(dts)
    }

    /// The presentation time of a frame decoded at `dts` with the FLV
    /// composition time offset `cts_ms` (signed 24-bit on the wire). An
    /// offset outside 0..=[`MAX_COMPOSITION_OFFSET_MS`] is clamped: H.264
    /// never presents before it decodes, and no reorder delay is that long.
    pub(crate) fn pts(&mut self, dts: i64, cts_ms: i32) -> i64 {
        self.pts_at(dts, cts_ms, Instant::now())
    }

    pub(crate) fn pts_at(&mut self, dts: i64, cts_ms: i32, now: Instant) -> i64 {
        let cts = i64::from(cts_ms);
        let clamped = cts.clamp(0, MAX_COMPOSITION_OFFSET_MS);
        if clamped != cts {
            if let Some(suppressed) = self.offset_log.allow_at(now) {
                warn!(
                    track = self.track,
                    cts_ms = cts,
                    clamped_ms = clamped,
                    suppressed,
                    "composition time offset out of range; clamped"
                );
            }
        }
        dts + clamped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> TrackClock {
        TrackClock::new("video", 10_000)
    }

    fn dts(clock: &mut TrackClock, raw: u32) -> i64 {
        clock.dts(raw).expect("in range")
    }

    #[test]
    fn unfolds_across_u32_wrap() {
        let mut clock = clock();
        let near_end = u32::MAX - 20;
        assert_eq!(dts(&mut clock, near_end), i64::from(near_end));
        assert_eq!(dts(&mut clock, u32::MAX), i64::from(u32::MAX));
        assert_eq!(dts(&mut clock, 13), (1i64 << 32) + 13);
        assert_eq!(dts(&mut clock, 46), (1i64 << 32) + 46);
    }

    #[test]
    fn track_clock_clamps_small_backward_steps_and_catches_up() {
        let mut clock = clock();
        assert_eq!(dts(&mut clock, u32::MAX - 33), i64::from(u32::MAX - 33));
        assert_eq!(dts(&mut clock, 0), 1i64 << 32);
        // Out-of-order packet: clamped to the previous DTS...
        assert_eq!(dts(&mut clock, u32::MAX - 10), 1i64 << 32);
        // ...and the source's own timeline resumes, without drift.
        assert_eq!(dts(&mut clock, 33), (1i64 << 32) + 33);
        // Backwards over zero at the very start stays clamped at 0.
        let mut clock = TrackClock::new("audio", 10_000);
        assert_eq!(dts(&mut clock, 5), 5);
        assert_eq!(dts(&mut clock, u32::MAX), 5);
        assert_eq!(dts(&mut clock, 6), 6);
    }

    #[test]
    fn jumps_beyond_the_cap_are_rebased_by_the_last_step() {
        let mut clock = clock();
        for i in 0..=3 {
            assert_eq!(dts(&mut clock, 1000 + 33 * i), i64::from(1000 + 33 * i));
        }
        // An encoder restarting 60 s later or 1 h earlier: one step on.
        assert_eq!(dts(&mut clock, 61_099), 1132);
        assert_eq!(dts(&mut clock, 61_132), 1165);
        assert_eq!(dts(&mut clock, 5), 1198);
        assert_eq!(dts(&mut clock, 38), 1231);
        // A jump just within the cap is kept.
        assert_eq!(dts(&mut clock, 10_038), 11_231);
    }

    #[test]
    fn a_publisher_that_only_ever_jumps_still_moves_the_timeline() {
        let mut clock = clock();
        let mut raw = 0u32;
        let mut last = dts(&mut clock, raw);
        for _ in 0..100 {
            raw = raw.wrapping_add(0x7fff_ffff);
            let next = dts(&mut clock, raw);
            assert_eq!(next, last + FIRST_REBASE_STEP_MS, "frozen timestamps starve the muxers");
            last = next;
        }
    }

    #[test]
    fn hostile_steps_keep_dts_small_and_monotonic() {
        for step in [0x7fff_ffffu32, 0x8000_0000, 0x8000_0001, 0xffff_0000] {
            let mut clock = clock();
            let mut raw = 0u32;
            for _ in 0..3 {
                dts(&mut clock, raw);
                raw = raw.wrapping_add(40);
            }
            let mut last = 0;
            for _ in 0..100_000 {
                raw = raw.wrapping_add(step);
                let dts = dts(&mut clock, raw);
                assert!(dts >= last, "step {step:#x}: {dts} after {last}");
                last = dts;
            }
            // 100k frames rebased by 40 ms each at most.
            assert!(last <= 80 + 100_000 * 40, "step {step:#x}: {last}");
        }
    }

    #[test]
    fn a_timeline_run_past_the_ceiling_is_refused() {
        let mut clock = clock();
        assert_eq!(dts(&mut clock, 0), 0);
        // Where ~10 s steps, each within the cap, lead after 110 million packets.
        clock.last_dts = MAX_TIMELINE_MS - 5_000;
        clock.source_ms = clock.last_dts;
        assert_eq!(dts(&mut clock, 4_999), MAX_TIMELINE_MS - 1);
        assert_eq!(clock.dts(9_999), Err(TimelineExhausted { track: "video" }));
    }

    #[test]
    fn composition_offsets_are_bounded() {
        let mut clock = clock();
        assert_eq!(clock.pts(1000, 80), 1080);
        assert_eq!(clock.pts(1000, -40), 1000);
        assert_eq!(clock.pts(1000, 0x7f_ffff), 11_000);
        assert_eq!(clock.pts(1000, -0x80_0000), 1000);
    }

    /// Collects formatted log lines written while `f` runs on this thread.
    fn captured_log(f: impl FnOnce()) -> String {
        let captured = crate::logging::CapturedLog::start(tracing::Level::INFO);
        f();
        captured.text()
    }

    #[test]
    fn warnings_are_rate_limited_per_track_and_kind() {
        let log = captured_log(|| {
            let mut clock = clock();
            let t0 = Instant::now();
            let mut raw = 10_000u32;
            for i in 0..10_000u32 {
                // Alternately 5 ms back and 20 s forward.
                raw = if i % 2 == 0 { raw - 5 } else { raw + 20_000 };
                clock.dts_at(raw, t0).expect("in range");
                clock.pts_at(0, -1, t0);
            }
            // Ten seconds on, one more line of each kind with the count.
            let later = t0 + std::time::Duration::from_secs(10);
            clock.dts_at(raw - 5, later).expect("in range");
            clock.dts_at(raw + 20_000, later).expect("in range");
        });
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
        assert_eq!(count("timestamp went backwards"), 2, "{log}");
        assert_eq!(count("timestamp jumped"), 2, "{log}");
        assert_eq!(count("composition time offset out of range"), 1, "{log}");
        assert!(log.contains("suppressed=4999"), "{log}");
    }
}
