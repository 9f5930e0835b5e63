//! RTMP timestamps are u32 milliseconds that wrap after ~49.7 days and that
//! encoders occasionally send out of order. Downstream wants an i64 timeline
//! that never goes backwards per track.

use tracing::warn;

/// A forward step larger than this is logged; it usually means an encoder
/// restarted its clock.
const SUSPICIOUS_JUMP_MS: i64 = 10_000;

/// Unfolds wrapping u32 timestamps into i64 by taking each step as the
/// shortest signed distance from the previous one.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimestampUnfolder {
    last: Option<(u32, i64)>,
}

impl TimestampUnfolder {
    pub(crate) fn unfold(&mut self, raw: u32) -> i64 {
        let unfolded = match self.last {
            None => i64::from(raw),
            Some((last_raw, last_unfolded)) => last_unfolded + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.last = Some((raw, unfolded));
        unfolded
    }
}

/// One track's decode timeline: unfolding plus a monotonic clamp.
#[derive(Debug, Clone)]
pub(crate) struct TrackClock {
    track: &'static str,
    unfolder: TimestampUnfolder,
    last_dts: Option<i64>,
}

impl TrackClock {
    pub(crate) fn new(track: &'static str) -> Self {
        Self {
            track,
            unfolder: TimestampUnfolder::default(),
            last_dts: None,
        }
    }

    /// Returns the decode time to use for a packet stamped `raw`.
    pub(crate) fn dts(&mut self, raw: u32) -> i64 {
        let unfolded = self.unfolder.unfold(raw);
        let dts = match self.last_dts {
            Some(last) if unfolded < last => {
                warn!(
                    track = self.track,
                    from_ms = last,
                    to_ms = unfolded,
                    "timestamp went backwards; clamping to keep DTS monotonic"
                );
                last
            }
            Some(last) if unfolded - last > SUSPICIOUS_JUMP_MS => {
                warn!(
                    track = self.track,
                    from_ms = last,
                    to_ms = unfolded,
                    "timestamp jumped forward"
                );
                unfolded
            }
            _ => unfolded,
        };
        self.last_dts = Some(dts);
        dts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_across_u32_wrap() {
        let mut unfolder = TimestampUnfolder::default();
        let near_end = u32::MAX - 20;
        assert_eq!(unfolder.unfold(near_end), i64::from(near_end));
        assert_eq!(unfolder.unfold(u32::MAX), i64::from(u32::MAX));
        assert_eq!(unfolder.unfold(13), (1i64 << 32) + 13);
        assert_eq!(unfolder.unfold(46), (1i64 << 32) + 46);
    }

    #[test]
    fn small_backward_step_unfolds_negative_not_forward_wrap() {
        let mut unfolder = TimestampUnfolder::default();
        assert_eq!(unfolder.unfold(5), 5);
        assert_eq!(unfolder.unfold(2), 2);
        // Backwards over zero stays below zero rather than jumping 49 days ahead.
        assert_eq!(unfolder.unfold(u32::MAX), -1);
    }

    #[test]
    fn track_clock_clamps_backwards_and_survives_wrap() {
        let mut clock = TrackClock::new("video");
        assert_eq!(clock.dts(u32::MAX - 33), i64::from(u32::MAX - 33));
        assert_eq!(clock.dts(0), (1i64 << 32) - 1 + 1);
        // Out-of-order packet: clamped to the previous DTS.
        assert_eq!(clock.dts(u32::MAX - 10), (1i64 << 32));
        assert_eq!(clock.dts(33), (1i64 << 32) + 33);
        // A big forward jump is kept (and logged).
        assert_eq!(clock.dts(60_033), (1i64 << 32) + 60_033);
    }
}
