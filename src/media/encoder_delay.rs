//! How long each frame spends inside one video encoder.
//!
//! Part availability lag includes the encoder's own delay, which no packager
//! can remove; measuring it separately lets us hold the rest of the path (decode,
//! scaling, queues, muxing, packaging) to its own budget.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

/// A few seconds of frames: an encoder that holds more than this is broken anyway.
const KEPT: usize = 256;

#[derive(Default)]
struct Frames {
    /// Running time of each frame that entered the encoder, and when.
    entered: VecDeque<(u64, Instant)>,
    /// Running time of each frame that left, and how long it was inside.
    delays: VecDeque<(u64, Duration)>,
}

/// Records a frame (by running time) passing one side of the encoder.
type Note = fn(&EncoderClock, u64, Instant);

/// Shared between the encoder's pad probes and the rendition's appsink.
#[derive(Clone, Default)]
pub(crate) struct EncoderClock(Arc<Mutex<Frames>>);

impl EncoderClock {
    /// Watches frames in and out of `encoder`. Frames are matched by running
    /// time, which encoders preserve even when they shift PTS (x264enc adds 1000 h
    /// to both the buffers and the segment).
    pub fn install(&self, encoder: &gst::Element) {
        let sides: [(&str, Note); 2] = [("sink", Self::entered), ("src", Self::left)];
        for (pad_name, note) in sides {
            let Some(pad) = encoder.static_pad(pad_name) else {
                continue;
            };
            let clock = self.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(running) = buffer_running_time(pad, info) {
                    note(&clock, running, Instant::now());
                }
                gst::PadProbeReturn::Ok
            });
        }
    }

    fn entered(&self, running_ns: u64, at: Instant) {
        let Ok(mut frames) = self.0.lock() else { return };
        if frames.entered.len() == KEPT {
            frames.entered.pop_front();
        }
        frames.entered.push_back((running_ns, at));
    }

    fn left(&self, running_ns: u64, at: Instant) {
        let Ok(mut frames) = self.0.lock() else { return };
        // Output is in decode order, which is presentation order without
        // B-frames; anything older than this frame will never come out.
        let mut found = None;
        while let Some(&(entered_ns, entered_at)) = frames.entered.front() {
            if entered_ns > running_ns {
                break;
            }
            frames.entered.pop_front();
            if entered_ns == running_ns {
                found = Some(entered_at);
            }
        }
        if let Some(entered_at) = found {
            if frames.delays.len() == KEPT {
                frames.delays.pop_front();
            }
            frames
                .delays
                .push_back((running_ns, at.saturating_duration_since(entered_at)));
        }
    }

    /// The delay of the latest frame that starts before `end_ns` (running time):
    /// the frame whose output closes a chunk ending there.
    pub fn delay_of_last_before(&self, end_ns: u64) -> Option<Duration> {
        let frames = self.0.lock().ok()?;
        frames
            .delays
            .iter()
            .rev()
            .find(|(running, _)| *running < end_ns)
            .map(|(_, delay)| *delay)
    }
}

fn buffer_running_time(pad: &gst::Pad, info: &gst::PadProbeInfo) -> Option<u64> {
    let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
        return None;
    };
    let pts = buffer.pts()?;
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = event.segment().downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts).map(|t| t.nseconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_matched_by_running_time_and_old_frames_are_forgotten() {
        let clock = EncoderClock::default();
        let t0 = Instant::now();
        clock.entered(0, t0);
        clock.entered(33, t0 + Duration::from_millis(33));
        clock.entered(66, t0 + Duration::from_millis(66));
        // Frame 0 was dropped by the encoder; 33 comes out 20 ms after it went in.
        clock.left(33, t0 + Duration::from_millis(53));
        assert_eq!(clock.delay_of_last_before(66), Some(Duration::from_millis(20)));
        assert_eq!(clock.delay_of_last_before(33), None, "frame 0 never came out");
        clock.left(66, t0 + Duration::from_millis(76));
        assert_eq!(clock.delay_of_last_before(100), Some(Duration::from_millis(10)));
        assert_eq!(clock.0.lock().map(|f| f.entered.len()).ok(), Some(0));
    }

    #[test]
    fn bounded() {
        let clock = EncoderClock::default();
        let t0 = Instant::now();
        for i in 0..(KEPT as u64 * 3) {
            clock.entered(i, t0);
            clock.left(i, t0);
        }
        let frames = clock.0.lock().ok();
        assert_eq!(frames.map(|f| f.delays.len()), Some(KEPT));
    }

    #[test]
    fn measures_a_real_x264enc() {
        crate::media::init().expect("gstreamer");
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=20 ! video/x-raw,width=160,height=96,framerate=30/1 ! \
             x264enc name=enc tune=zerolatency speed-preset=ultrafast ! fakesink",
        )
        .expect("pipeline");
        let pipeline = pipeline.downcast::<gst::Pipeline>().expect("a pipeline");
        let encoder = pipeline.by_name("enc").expect("encoder");
        let clock = EncoderClock::default();
        clock.install(&encoder);
        pipeline.set_state(gst::State::Playing).expect("playing");
        let bus = pipeline.bus().expect("bus");
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        pipeline.set_state(gst::State::Null).expect("null");
        assert!(matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)));
        let frames = clock.0.lock().expect("lock");
        assert_eq!(frames.delays.len(), 20, "every frame matched in and out");
        assert!(frames.delays.iter().all(|(_, d)| *d < Duration::from_secs(2)));
    }
}
