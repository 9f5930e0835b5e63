//! Keyframe placement for the encoded rungs. Every encoder gets the same
//! force-key-unit events, sent just before the decoded frame that should be
//! a keyframe, so all renditions (passthrough included) cut segments at the
//! same instants.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

/// What the probe decided for one decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyDecision {
    None,
    Force,
    /// Source keyframes are too far apart: force now, and from now on every
    /// segment target; the passthrough rung must hand over to an encode.
    ForceAndSwitchToGrid,
}

#[derive(Debug)]
pub(crate) struct KeyPlanner {
    /// PTS (ns) of source IDRs pushed into the pipeline but not yet decoded.
    pending_source_keys: VecDeque<u64>,
    last_key_ns: Option<u64>,
    grid_next_ns: Option<u64>,
    segment_ns: u64,
    /// Decided by the feeder (which sees frames before any branch does).
    switch_at_ns: Option<u64>,
    /// Nothing copies the source, so its keyframes do not matter: every
    /// segment target from the first frame (WebRTC sources send keyframes
    /// only when asked).
    grid_only: bool,
}

impl KeyPlanner {
    pub fn new(segment_ns: u64) -> Self {
        Self {
            pending_source_keys: VecDeque::new(),
            last_key_ns: None,
            grid_next_ns: None,
            segment_ns: segment_ns.max(1),
            switch_at_ns: None,
            grid_only: false,
        }
    }

    /// Keyframes every segment target from the first decoded frame on.
    pub fn on_grid(segment_ns: u64) -> Self {
        Self {
            grid_only: true,
            ..Self::new(segment_ns)
        }
    }

    /// From the first decoded frame at or after `pts_ns` on, keyframes follow
    /// the segment grid instead of the source.
    pub fn schedule_switch(&mut self, pts_ns: u64) {
        self.switch_at_ns.get_or_insert(pts_ns);
    }

    pub fn source_keyframe(&mut self, pts_ns: u64) {
        // Bounded: a decoder that drops frames must not make this grow.
        if self.pending_source_keys.len() >= 256 {
            self.pending_source_keys.pop_front();
        }
        self.pending_source_keys.push_back(pts_ns);
    }

    #[cfg(test)]
    fn in_grid_mode(&self) -> bool {
        self.grid_next_ns.is_some()
    }

    pub fn decoded_frame(&mut self, pts_ns: u64) -> KeyDecision {
        let mut at_source_key = false;
        while self.pending_source_keys.front().is_some_and(|&key| key <= pts_ns) {
            self.pending_source_keys.pop_front();
            at_source_key = true;
        }
        if let Some(next) = self.grid_next_ns {
            if pts_ns >= next {
                let mut next = next;
                while next <= pts_ns {
                    match next.checked_add(self.segment_ns) {
                        Some(later) => next = later,
                        None => break,
                    }
                }
                self.grid_next_ns = Some(next);
                self.last_key_ns = Some(pts_ns);
                return KeyDecision::Force;
            }
            return KeyDecision::None;
        }
        let Some(last) = self.last_key_ns else {
            // The video starts at a source keyframe.
            self.last_key_ns = Some(pts_ns);
            if self.grid_only {
                self.grid_next_ns = Some(pts_ns.saturating_add(self.segment_ns));
            }
            return KeyDecision::Force;
        };
        if at_source_key {
            self.last_key_ns = Some(pts_ns);
            return KeyDecision::Force;
        }
        let _ = last;
        if let Some(switch_at) = self.switch_at_ns {
            if pts_ns >= switch_at {
                self.grid_next_ns = Some(pts_ns.saturating_add(self.segment_ns));
                self.last_key_ns = Some(pts_ns);
                return KeyDecision::ForceAndSwitchToGrid;
            }
        }
        KeyDecision::None
    }
}

/// Installs the probe on the decoder's source pad. `on_switch` runs on the
/// streaming thread before the switching frame moves on.
pub(crate) fn install_key_probe(
    pad: &gst::Pad,
    planner: Arc<Mutex<KeyPlanner>>,
    on_switch: impl Fn(u64) + Send + Sync + 'static,
) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let decision = match planner.lock() {
            Ok(mut planner) => planner.decoded_frame(pts.nseconds()),
            Err(_) => KeyDecision::None,
        };
        if decision == KeyDecision::None {
            return gst::PadProbeReturn::Ok;
        }
        if decision == KeyDecision::ForceAndSwitchToGrid {
            on_switch(pts.nseconds());
        }
        // No running time: x264enc shifts its input timeline by 1000 h (its
        // min-pts), so a real running time would never match in GStreamer
        // 1.22. The event travels in-band right before this frame, and "no
        // running time" means "the next frame".
        let event = gst_video::DownstreamForceKeyUnitEvent::builder()
            .timestamp(pts)
            .stream_time(pts)
            .running_time(gst::ClockTime::NONE)
            .all_headers(true)
            .build();
        pad.push_event(event);
        gst::PadProbeReturn::Ok
    });
}

/// cmafmux asks upstream for a keyframe at every fragment boundary it
/// computes on its own; encoders honouring that would add keyframes the
/// passthrough rung does not have. Keyframes are our decision, so swallow
/// them (`Handled`: `Drop` on an upstream event triggers GStreamer-CRITICALs
/// in 1.22 here).
pub(crate) fn drop_upstream_key_requests(mux_sink_pad: &gst::Pad) {
    mux_sink_pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, |_, info| {
        let is_key_request = info.event().is_some_and(|event| {
            event.type_() == gst::EventType::CustomUpstream
                && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
        });
        if is_key_request {
            gst::PadProbeReturn::Handled
        } else {
            gst::PadProbeReturn::Ok
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn follows_source_keyframes() {
        let mut planner = KeyPlanner::new(2000 * MS);
        planner.source_keyframe(0);
        assert_eq!(planner.decoded_frame(0), KeyDecision::Force);
        assert_eq!(planner.decoded_frame(33 * MS), KeyDecision::None);
        planner.source_keyframe(1000 * MS);
        assert_eq!(planner.decoded_frame(967 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(1000 * MS), KeyDecision::Force);
        assert!(!planner.in_grid_mode());
    }

    #[test]
    fn long_source_gop_switches_to_segment_grid() {
        let mut planner = KeyPlanner::new(2000 * MS);
        planner.source_keyframe(0);
        assert_eq!(planner.decoded_frame(0), KeyDecision::Force);
        planner.schedule_switch(3033 * MS);
        assert_eq!(planner.decoded_frame(3000 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(3033 * MS), KeyDecision::ForceAndSwitchToGrid);
        assert!(planner.in_grid_mode());
        planner.source_keyframe(4000 * MS);
        assert_eq!(planner.decoded_frame(4000 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(5033 * MS), KeyDecision::Force);
        assert_eq!(planner.decoded_frame(5066 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(7033 * MS), KeyDecision::Force);
    }

    #[test]
    fn without_a_scheduled_switch_long_gops_stay_on_source_keys() {
        let mut planner = KeyPlanner::new(2000 * MS);
        assert_eq!(planner.decoded_frame(0), KeyDecision::Force);
        assert_eq!(planner.decoded_frame(8000 * MS), KeyDecision::None);
        assert!(!planner.in_grid_mode());
    }

    #[test]
    fn a_source_nobody_copies_gets_keyframes_on_the_segment_grid_from_the_start() {
        let mut planner = KeyPlanner::on_grid(2000 * MS);
        assert_eq!(planner.decoded_frame(100 * MS), KeyDecision::Force);
        assert!(planner.in_grid_mode());
        // A source keyframe off the grid cuts nothing.
        planner.source_keyframe(1000 * MS);
        assert_eq!(planner.decoded_frame(1000 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(2066 * MS), KeyDecision::None);
        assert_eq!(planner.decoded_frame(2100 * MS), KeyDecision::Force);
        assert_eq!(planner.decoded_frame(4133 * MS), KeyDecision::Force);
    }
}
