//! The gate in front of the long-GOP fallback encoder.
//!
//! The decision to switch is taken on the decoder's output, but the fallback
//! branch sits behind its own queue, which may still hold frames decoded
//! before the switch. A valve opened at the switch would let those through,
//! and the encoder would start (with a keyframe) ahead of every other rung.
//! So the gate judges each frame by its own timestamp instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gstreamer as gst;
use gstreamer_video as gst_video;

const CLOSED: u64 = u64::MAX;

#[derive(Debug, Clone)]
pub(crate) struct FallbackGate {
    open_from_ns: Arc<AtomicU64>,
}

impl FallbackGate {
    pub fn new() -> Self {
        Self {
            open_from_ns: Arc::new(AtomicU64::new(CLOSED)),
        }
    }

    /// Frames from `pts_ns` on go to the encoder. Only the first call counts.
    pub fn open_from(&self, pts_ns: u64) {
        let _ = self
            .open_from_ns
            .compare_exchange(CLOSED, pts_ns, Ordering::AcqRel, Ordering::Acquire);
    }

    fn passes(&self, pts_ns: u64) -> bool {
        pts_ns >= self.open_from_ns.load(Ordering::Acquire)
    }

    /// Drops frames before the switch, and the key-unit requests meant for
    /// them: queued up in the encoder they would make the first frames after
    /// the switch keyframes too. Sticky events (caps, segment, EOS) pass.
    pub fn install(&self, pad: &gst::Pad) {
        use gstreamer::prelude::*;
        let gate = self.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(buffer) = info.buffer() {
                    let pass = buffer.pts().is_some_and(|pts| gate.passes(pts.nseconds()));
                    return if pass {
                        gst::PadProbeReturn::Ok
                    } else {
                        gst::PadProbeReturn::Drop
                    };
                }
                let Some(event) = info.event() else {
                    return gst::PadProbeReturn::Ok;
                };
                match gst_video::DownstreamForceKeyUnitEvent::parse(event) {
                    Ok(request) => {
                        let pass = request.timestamp.is_some_and(|ts| gate.passes(ts.nseconds()));
                        // `Handled`, not `Drop`: with `Drop` GStreamer 1.22
                        // reports a CRITICAL (unref of NULL) for each event.
                        if pass {
                            gst::PadProbeReturn::Ok
                        } else {
                            gst::PadProbeReturn::Handled
                        }
                    }
                    Err(_) => gst::PadProbeReturn::Ok,
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_frames_by_their_own_time_and_keeps_the_first_switch_point() {
        let gate = FallbackGate::new();
        assert!(!gate.passes(0));
        assert!(!gate.passes(u64::MAX - 1));
        gate.open_from(1_556_000_000);
        gate.open_from(1_000_000_000);
        assert!(
            !gate.passes(1_390_000_000),
            "a frame still queued from before the switch"
        );
        assert!(gate.passes(1_556_000_000));
        assert!(gate.passes(5_000_000_000));
    }
}
