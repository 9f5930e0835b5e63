//! What the ladder counts while it runs, for the control plane's live stats.
//! Relaxed atomics bumped on the feeding task: nothing on the media path waits
//! for a reader.

use std::sync::atomic::{AtomicU64, Ordering};

use super::skip::SkipMeter;

/// Input frames the ladder threw away instead of handing them to the
/// pipeline: video before its first keyframe, audio before its decoder
/// configuration, timestamps running backwards or before the ladder's start,
/// audio of a codec the branch was not built for, and buffers the pipeline's
/// sources refused. Audio a profile drops on purpose (`audio = "drop"`) is
/// not counted.
#[derive(Debug, Default)]
pub struct LadderStats {
    video_frames_dropped: AtomicU64,
    audio_frames_dropped: AtomicU64,
    /// Frames the video decoder reported it could not decode.
    decode_errors: AtomicU64,
    /// What the encode branch skipped to stay live, once the ladder is built.
    skip: std::sync::OnceLock<SkipMeter>,
}

impl LadderStats {
    pub fn video_frames_dropped(&self) -> u64 {
        self.video_frames_dropped.load(Ordering::Relaxed)
    }

    pub fn audio_frames_dropped(&self) -> u64 {
        self.audio_frames_dropped.load(Ordering::Relaxed)
    }

    pub fn frames_dropped(&self) -> u64 {
        self.video_frames_dropped() + self.audio_frames_dropped()
    }

    pub(crate) fn video_dropped(&self) {
        self.video_frames_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn audio_dropped(&self) {
        self.audio_frames_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    pub(crate) fn decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Source video the encoded rungs skipped (and showed as repeats of the
    /// last picture) to stay near live; the passthrough copy has all of it.
    pub fn encode_skipped(&self) -> std::time::Duration {
        self.skip.get().map_or(std::time::Duration::ZERO, SkipMeter::skipped)
    }

    pub(crate) fn attach_skip(&self, meter: SkipMeter) {
        let _ = self.skip.set(meter);
    }
}

#[cfg(test)]
mod tests {
    use super::LadderStats;

    #[test]
    fn drops_are_counted_per_track_and_summed() {
        let stats = LadderStats::default();
        stats.video_dropped();
        stats.video_dropped();
        stats.audio_dropped();
        assert_eq!(
            (
                stats.video_frames_dropped(),
                stats.audio_frames_dropped(),
                stats.frames_dropped()
            ),
            (2, 1, 3)
        );
    }
}
