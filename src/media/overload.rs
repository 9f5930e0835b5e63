//! Overload: noticing that a ladder encodes slower than real time, and
//! shedding work on purpose instead of drifting behind live.
//!
//! **Detection.** Once a second the ladder compares how much media its
//! slowest encoded rendition put out over the last `window` with the wall
//! time that passed (its speed). Below `min_speed` the ladder is behind,
//! but only if the pipeline, not the publisher, is the bottleneck: media is
//! piling up inside it (`min_backlog` between what was fed in and what came
//! out), or its input was refused for a good part of the window (the feeder
//! stops reading while the pipeline is full, so the backlog then builds up
//! before the ladder, in the ingest queue and the publisher's socket, where
//! the in-pipeline measure cannot see it). A publisher that sends slowly
//! starves the pipeline and trips neither, which is not overload.
//!
//! **Shedding.** Each judgement that finds the ladder behind halves the
//! rate of fresh frames fed to the most expensive encoded rung (by pixels
//! per second still encoded fresh), up to `max_divisor`; the lowest encoded
//! rung and the passthrough copy are never touched. The other frames are
//! repeats of the last fresh one, which x264 encodes much more cheaply
//! (measured at 720p, veryfast, one thread: a repeat costs about a quarter
//! of a fresh frame, so a divisor of 2 saves ~35 % of the rung's encode and
//! 4 ~45 %). Repeating instead of dropping keeps every
//! frame timestamp, so a shed rung keeps its playlist, its chunk and
//! segment grid and its keyframe alignment (forced keyframes are always
//! fresh): players and rendition reports need no discontinuity, and the
//! rung only shows fewer distinct pictures per second.
//!
//! **Skipping ahead** (`skip`) bounds how far behind the encoded rungs can
//! get meanwhile, and keeps the copy from waiting for them. Media skipped is
//! not progress: a ladder that keeps up only by skipping is behind.
//!
//! **Recovery.** Caught up (backlog below `min_backlog`, no skip) for `restore_after`,
//! the last shedding step is undone, one step at a time; when nothing is
//! shed any more and the ladder is still caught up, it has recovered. A rung
//! that had to be shed again right after a restore waits twice as long
//! before the next restore (up to 8×), so a machine that stays busy does
//! not flap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_video as gst_video;

use super::skip::{GapFill, SkipMeter};

#[derive(Debug, Clone, PartialEq)]
pub struct OverloadSettings {
    pub enabled: bool,
    /// Speed is judged over this much wall time.
    pub window: Duration,
    /// Output media time per wall time below which the ladder is behind.
    pub min_speed: f64,
    /// Media in flight inside the pipeline from which the pipeline, not the
    /// publisher, is the bottleneck.
    pub min_backlog: Duration,
    /// Caught up this long before one shedding step is undone.
    pub restore_after: Duration,
    /// The most a rung's frame rate is divided by.
    pub max_divisor: u32,
    /// Source video waiting for the decoder from which the encode branch
    /// skips ahead (see `skip`); `None`: it never does, and a full decoder
    /// queue holds up the copy and the input instead.
    pub max_encode_backlog: Option<Duration>,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(5),
            min_speed: 0.95,
            min_backlog: Duration::from_millis(1000),
            restore_after: Duration::from_secs(5),
            max_divisor: 8,
            max_encode_backlog: Some(Duration::from_secs(1)),
        }
    }
}

/// What the control plane sees of a ladder's overload state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverloadState {
    pub degraded: bool,
    /// The speed measured when the state last changed (1.0 = real time).
    pub speed: f64,
    /// Renditions encoded at a reduced frame rate, with the divisor.
    pub shed: Vec<(String, u32)>,
}

/// Sheds one rung's encoding work (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct RungGate {
    divisor: Arc<AtomicU32>,
    /// Fills the gaps a skip ahead leaves (see `skip`), with the nominal
    /// frame duration (ns); `None` when the encode branch never skips.
    fill: Option<(SkipMeter, u64)>,
}

/// What the gate's probe remembers between frames.
#[derive(Debug, Default)]
struct GateState {
    /// Frames since the last one encoded as it came.
    since: u32,
    /// The last frame encoded as it came, repeated in place of the others.
    held: Option<gst::Buffer>,
    gaps: GapFill,
    /// A key-unit request waiting for the frame after it.
    key_request: Option<gst::Event>,
}

impl GateState {
    /// Whether the frame goes to the encoder as it came (`false`: the held
    /// frame is repeated instead); `keyed` when a forced keyframe request
    /// came right before it, which restarts the count.
    fn fresh(&mut self, keyed: bool, divisor: u32) -> bool {
        if keyed {
            self.since = 0;
        }
        let n = self.since;
        self.since = self.since.wrapping_add(1);
        divisor <= 1 || n % divisor == 0 || self.held.is_none()
    }
}

impl GateState {
    /// Sends the repeats that fill a skip's gap before `next` straight to the
    /// encoder (past this probe), then the key-unit request held for `next`.
    fn fill_gap_before(&mut self, pad: &gst::Pad, next: &gst::Buffer, meter: &SkipMeter, frame_ns: u64) {
        use gstreamer::prelude::*;
        let repeats = self.gaps.before(next, meter, frame_ns);
        let Some(peer) = pad.peer() else {
            return;
        };
        for (repeat, keyframe) in repeats {
            if keyframe {
                // As the key planner asks: no running time, "the next frame".
                let pts = repeat.pts();
                peer.send_event(
                    gst_video::DownstreamForceKeyUnitEvent::builder()
                        .timestamp(pts)
                        .stream_time(pts)
                        .running_time(gst::ClockTime::NONE)
                        .all_headers(true)
                        .build(),
                );
            }
            if peer.chain(repeat).is_err() {
                break;
            }
        }
        if let Some(request) = self.key_request.take() {
            peer.send_event(request);
        }
    }
}

impl RungGate {
    pub fn new() -> Self {
        Self {
            divisor: Arc::new(AtomicU32::new(1)),
            fill: None,
        }
    }

    /// A gate that also fills the gaps `meter`'s skips leave, one repeat
    /// per `frame_ns`.
    pub fn filling(meter: SkipMeter, frame_ns: u64) -> Self {
        Self {
            fill: Some((meter, frame_ns)),
            ..Self::new()
        }
    }

    pub fn set_divisor(&self, divisor: u32) {
        self.divisor.store(divisor.max(1), Ordering::Relaxed);
    }

    pub fn divisor(&self) -> u32 {
        self.divisor.load(Ordering::Relaxed)
    }

    /// On the src pad of the rung's encoder queue (the scaler before it
    /// still feeds the smaller rungs). A shed frame is not dropped: the
    /// previous fresh frame is repeated with its timestamps. Every frame
    /// still reaches the encoder and the muxer, so chunks, segments and
    /// keyframes stay exactly on the other rungs' grid (cmafmux cuts chunks
    /// on the frames it sees, and a dropped frame shifts them), while x264
    /// spends much less on a frame identical to its reference (its
    /// macroblocks skip). Forced keyframes are always fresh frames.
    pub fn install(&self, pad: &gst::Pad) {
        use gstreamer::prelude::*;
        let gate = self.clone();
        let keyed = std::sync::atomic::AtomicBool::new(false);
        let state = std::sync::Mutex::new(GateState::default());
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| {
                // Other events pass without the lock: a flush from another
                // thread must not wait while this one encodes repeats.
                if let Some(event) = info.event() {
                    if gst_video::DownstreamForceKeyUnitEvent::parse(event).is_ok() {
                        keyed.store(true, Ordering::Relaxed);
                        if gate.fill.is_some() {
                            // Held until the frame it is for: it means "the
                            // next frame", and repeats filling a gap may
                            // have to go first.
                            if let Ok(mut state) = state.lock() {
                                state.key_request = Some(event.clone());
                                return gst::PadProbeReturn::Handled;
                            }
                        }
                    }
                    return gst::PadProbeReturn::Ok;
                }
                let Ok(mut state) = state.lock() else {
                    return gst::PadProbeReturn::Ok;
                };
                let keyed = keyed.swap(false, Ordering::Relaxed);
                let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                    return gst::PadProbeReturn::Ok;
                };
                if let Some((meter, frame_ns)) = &gate.fill {
                    state.fill_gap_before(pad, buffer, meter, *frame_ns);
                }
                let divisor = gate.divisor();
                if state.fresh(keyed, divisor) {
                    // Held only while shedding: at full rate nothing is kept.
                    state.held = (divisor > 1).then(|| buffer.clone());
                    return gst::PadProbeReturn::Ok;
                }
                if let Some(held) = &state.held {
                    let mut repeat = held.copy();
                    let target = repeat.make_mut();
                    target.set_pts(buffer.pts());
                    target.set_dts(buffer.dts());
                    target.set_duration(buffer.duration());
                    target.unset_flags(gst::BufferFlags::DISCONT);
                    *buffer = repeat;
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
}

/// Wall time the feeder spent refusing input because the pipeline was
/// full: the ladder's share of a backlog that builds up before it.
#[derive(Debug, Default)]
pub(crate) struct StallClock {
    since: Option<Instant>,
    total: Duration,
}

impl StallClock {
    /// Called on every turn of the feed loop with whether input is refused now.
    pub fn note(&mut self, now: Instant, refusing: bool) {
        match (refusing, self.since) {
            (true, None) => self.since = Some(now),
            (false, Some(since)) => {
                self.total += now.saturating_duration_since(since);
                self.since = None;
            }
            _ => {}
        }
    }

    /// Refused so far, the current stretch included.
    pub fn total(&self, now: Instant) -> Duration {
        self.total
            + self
                .since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// The share of the window during which input was refused from which the
/// ladder counts as the bottleneck.
const STALLED_SHARE: f64 = 0.25;

/// What one judgement looks at.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    /// End of the media the slowest encoded rung has put out (ns).
    pub out_ns: u64,
    /// End of the media fed in (ns).
    pub in_ns: u64,
    /// `StallClock::total` now.
    pub stalled: Duration,
    /// `SkipMeter::skipped` now: media the encodes dropped to stay live.
    pub skipped: Duration,
}

/// One encoded video rung, as the detector sees it.
#[derive(Debug, Clone)]
pub(crate) struct Rung {
    pub name: String,
    /// Width × height × frame rate: what it costs to encode at full rate.
    pub pixel_rate: f64,
    pub gate: RungGate,
}

/// A change the ladder reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Degraded,
    Recovered,
}

/// The decision of one judgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Decision {
    pub change: Option<Change>,
    /// Rung index and its new divisor.
    pub set: Option<(usize, u32)>,
    pub speed: f64,
    /// Share of the window the pipeline refused input (NaN without a full window).
    pub stalled_share: f64,
}

/// One judgement's reading, kept for a window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// Output media end (ns).
    out_ns: u64,
    stalled: Duration,
    skipped: Duration,
}

pub(crate) struct Detector {
    settings: OverloadSettings,
    rungs: Vec<Rung>,
    /// Oldest first, about one window.
    samples: VecDeque<Sample>,
    /// Stalled and skipped so far at the previous judgement.
    last_stalled: Duration,
    last_skipped: Duration,
    degraded: bool,
    caught_up_since: Option<Instant>,
    /// Shedding steps taken: rung index and its divisor before the step.
    steps: Vec<(usize, u32)>,
    /// Multiplies `restore_after` (1, 2, 4, 8).
    backoff: u32,
    last_was_restore: bool,
}

impl Detector {
    /// `rungs` are the encoded video rungs, any order.
    pub fn new(settings: OverloadSettings, rungs: Vec<Rung>) -> Self {
        Self {
            settings,
            rungs,
            samples: VecDeque::new(),
            last_stalled: Duration::ZERO,
            last_skipped: Duration::ZERO,
            degraded: false,
            caught_up_since: None,
            steps: Vec::new(),
            backoff: 1,
            last_was_restore: false,
        }
    }

    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// The rung to shed next: the most expensive still encoded, never the
    /// cheapest rung of all.
    fn next_to_shed(&self) -> Option<usize> {
        let cheapest =
            (0..self.rungs.len()).min_by(|&a, &b| self.rungs[a].pixel_rate.total_cmp(&self.rungs[b].pixel_rate))?;
        (0..self.rungs.len())
            .filter(|&i| i != cheapest && self.rungs[i].gate.divisor() < self.settings.max_divisor)
            .max_by(|&a, &b| self.cost(a).total_cmp(&self.cost(b)))
    }

    fn cost(&self, rung: usize) -> f64 {
        self.rungs[rung].pixel_rate / f64::from(self.rungs[rung].gate.divisor())
    }

    /// One judgement, once a second or so.
    pub fn observe(&mut self, now: Instant, progress: Progress) -> Decision {
        let Progress {
            out_ns,
            in_ns,
            stalled,
            skipped,
        } = progress;
        self.samples.push_back(Sample {
            at: now,
            out_ns,
            stalled,
            skipped,
        });
        while self
            .samples
            .get(1)
            .is_some_and(|s| now.saturating_duration_since(s.at) >= self.settings.window)
        {
            self.samples.pop_front();
        }
        // Judged only over a full window (none yet after a change). Media the
        // encodes skipped came out as repeats: it is not progress.
        let window = self.samples.front().and_then(|then| {
            let elapsed = now.saturating_duration_since(then.at);
            (elapsed >= self.settings.window && !elapsed.is_zero()).then(|| {
                let seconds = elapsed.as_secs_f64();
                let skipped = skipped.saturating_sub(then.skipped);
                let encoded = out_ns
                    .saturating_sub(then.out_ns)
                    .saturating_sub(skipped.as_nanos() as u64);
                let speed = encoded as f64 / 1e9 / seconds;
                let share = stalled.saturating_sub(then.stalled).as_secs_f64() / seconds;
                (speed, share, !skipped.is_zero())
            })
        });
        let stalled_since_last = stalled > self.last_stalled;
        let skipped_since_last = skipped > self.last_skipped;
        self.last_stalled = stalled;
        self.last_skipped = skipped;
        let piled_up = Duration::from_nanos(in_ns.saturating_sub(out_ns)) >= self.settings.min_backlog;
        let mut decision = Decision {
            speed: window.map_or(f64::NAN, |(speed, _, _)| speed),
            stalled_share: window.map_or(f64::NAN, |(_, share, _)| share),
            ..Decision::default()
        };
        // Slow, and the ladder is why: media piles up inside it, or it
        // refused input, or its encodes had to skip ahead.
        let behind = window.is_some_and(|(speed, stalled_share, skipped)| {
            speed < self.settings.min_speed && (piled_up || stalled_share >= STALLED_SHARE || skipped)
        });
        if behind {
            self.shed_one_step(&mut decision);
            return decision;
        }
        if !self.degraded || piled_up || stalled_since_last || skipped_since_last {
            self.caught_up_since = None;
            return decision;
        }
        let since = *self.caught_up_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.settings.restore_after * self.backoff {
            return decision;
        }
        self.caught_up_since = Some(now);
        match self.steps.pop() {
            Some((rung, old)) => {
                self.rungs[rung].gate.set_divisor(old);
                decision.set = Some((rung, old));
                self.last_was_restore = true;
                self.samples.clear();
            }
            None => {
                self.degraded = false;
                self.caught_up_since = None;
                decision.change = Some(Change::Recovered);
            }
        }
        decision
    }

    fn shed_one_step(&mut self, decision: &mut Decision) {
        self.caught_up_since = None;
        if !self.degraded {
            self.degraded = true;
            decision.change = Some(Change::Degraded);
        }
        if let Some(rung) = self.next_to_shed() {
            let old = self.rungs[rung].gate.divisor();
            let new = old.saturating_mul(2).min(self.settings.max_divisor);
            self.rungs[rung].gate.set_divisor(new);
            self.steps.push((rung, old));
            decision.set = Some((rung, new));
            if self.last_was_restore {
                self.backoff = self.backoff.saturating_mul(2).min(8);
            }
            self.last_was_restore = false;
            // The next judgement needs a full window of the new setting.
            self.samples.clear();
        }
    }

    pub fn state(&self, speed: f64) -> OverloadState {
        OverloadState {
            degraded: self.degraded,
            speed,
            shed: self
                .rungs
                .iter()
                .filter(|r| r.gate.divisor() > 1)
                .map(|r| (r.name.clone(), r.gate.divisor()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rungs() -> Vec<Rung> {
        [
            ("720p", 1280.0 * 720.0),
            ("480p", 854.0 * 480.0),
            ("360p", 640.0 * 360.0),
        ]
        .into_iter()
        .map(|(name, pixels)| Rung {
            name: name.into(),
            pixel_rate: pixels * 30.0,
            gate: RungGate::new(),
        })
        .collect()
    }

    fn settings() -> OverloadSettings {
        OverloadSettings {
            restore_after: Duration::from_secs(10),
            ..OverloadSettings::default()
        }
    }

    /// Drives the detector one second at a time with a given speed and
    /// input always `backlog_ns` ahead; returns every decision.
    struct Run {
        detector: Detector,
        now: Instant,
        out_ns: u64,
        /// The feeder's stall clock.
        stall: StallClock,
        /// Share of each second the pipeline refuses input.
        refusing: f64,
        /// Media the encodes skip each second (it still comes out, as repeats).
        skipping: Duration,
        skipped: Duration,
    }

    impl Run {
        fn new() -> Self {
            Self {
                detector: Detector::new(settings(), rungs()),
                now: Instant::now(),
                out_ns: 0,
                stall: StallClock::default(),
                refusing: 0.0,
                skipping: Duration::ZERO,
                skipped: Duration::ZERO,
            }
        }

        fn seconds(&mut self, n: u64, speed: f64, backlog_ns: u64) -> Vec<Decision> {
            (0..n)
                .map(|_| {
                    // Refusing for the first `refusing` of the second, then reading.
                    let start = self.now;
                    self.stall.note(start, self.refusing > 0.0);
                    self.now += Duration::from_secs_f64(self.refusing);
                    self.stall.note(self.now, false);
                    self.now = start + Duration::from_secs(1);
                    self.out_ns += (speed * S as f64) as u64;
                    self.skipped += self.skipping;
                    let progress = Progress {
                        out_ns: self.out_ns,
                        in_ns: self.out_ns + backlog_ns,
                        stalled: self.stall.total(self.now),
                        skipped: self.skipped,
                    };
                    self.detector.observe(self.now, progress)
                })
                .filter(|d| d.change.is_some() || d.set.is_some())
                .collect()
        }

        fn divisors(&self) -> Vec<u32> {
            self.detector.rungs().iter().map(|r| r.gate.divisor()).collect()
        }
    }

    #[test]
    fn real_time_is_not_overload() {
        let mut run = Run::new();
        assert!(run.seconds(60, 1.0, S / 2).is_empty());
        assert_eq!(run.divisors(), vec![1, 1, 1]);
    }

    #[test]
    fn keeping_up_only_by_skipping_ahead_is_overload_and_nothing_is_restored_while_skipping() {
        let mut run = Run::new();
        run.seconds(3, 1.0, S / 2);
        // Output keeps pace (the gaps are filled) with little in flight, but
        // a third of it was skipped.
        run.skipping = Duration::from_millis(333);
        let decisions = run.seconds(6, 1.0, S / 4);
        let first = decisions.first().expect("a decision");
        assert_eq!(first.change, Some(Change::Degraded));
        assert!(first.speed < 0.95, "{first:?}");
        let shed = run.divisors();
        assert_eq!(shed[0], 2, "720p shed first");
        // Still skipping now and then, at an otherwise fine speed: no restore.
        run.skipping = Duration::from_millis(20);
        let held = run.seconds(60, 1.0, S / 4);
        assert!(held.iter().all(|d| d.change.is_none()), "{held:?}");
        let restored = run.divisors().iter().zip(&shed).any(|(now, then)| now < then);
        assert!(!restored, "{:?} after {shed:?}", run.divisors());
        // No more skips: restored step by step, then recovered.
        run.skipping = Duration::ZERO;
        let decisions = run.seconds(120, 1.0, S / 4);
        assert_eq!(decisions.last().and_then(|d| d.change.clone()), Some(Change::Recovered));
        assert_eq!(run.divisors(), vec![1, 1, 1]);
    }

    #[test]
    fn a_slow_publisher_starving_the_pipeline_is_not_overload() {
        let mut run = Run::new();
        assert!(run.seconds(60, 0.5, S / 10).is_empty());
    }

    #[test]
    fn sustained_slowness_degrades_within_the_window_and_sheds_the_most_expensive_rung_first() {
        let mut run = Run::new();
        run.seconds(3, 1.0, S / 2);
        let decisions = run.seconds(6, 0.85, 2 * S);
        let first = decisions.first().expect("a decision");
        assert_eq!(first.change, Some(Change::Degraded));
        assert_eq!(first.set, Some((0, 2)), "720p goes to half rate first");
        assert!(first.speed < 0.95);
        // Still behind: 720p again (it still costs more than 480p), then 480p.
        run.seconds(6, 0.9, 2 * S);
        run.seconds(6, 0.9, 2 * S);
        assert_eq!(run.divisors(), vec![4, 2, 1]);
        // Never past the cap, never the cheapest rung.
        run.seconds(120, 0.5, 5 * S);
        assert_eq!(run.divisors(), vec![8, 8, 1]);
    }

    #[test]
    fn caught_up_restores_step_by_step_then_recovers_and_backs_off_after_a_relapse() {
        let mut run = Run::new();
        run.seconds(6, 0.8, 2 * S);
        run.seconds(6, 0.8, 2 * S);
        assert_eq!(run.divisors(), vec![4, 1, 1]);
        // Caught up: one step back after 10 s, the next 10 s later.
        let restored = run.seconds(11, 1.0, S / 2);
        assert_eq!(restored.len(), 1, "{restored:?}");
        assert_eq!(run.divisors(), vec![2, 1, 1]);
        // Relapse: shed again, and the next restore waits twice as long.
        run.seconds(6, 0.8, 2 * S);
        assert_eq!(run.divisors(), vec![4, 1, 1]);
        assert!(run.seconds(15, 1.0, S / 2).is_empty(), "backed off");
        let decisions = run.seconds(60, 1.0, S / 2);
        assert_eq!(run.divisors(), vec![1, 1, 1]);
        assert_eq!(decisions.last().and_then(|d| d.change.clone()), Some(Change::Recovered));
        assert_eq!(
            decisions.iter().filter(|d| d.change.is_some()).count(),
            1,
            "one recovery, no second degrade: {decisions:?}"
        );
    }

    #[test]
    fn a_backlog_held_before_the_ladder_counts_when_the_pipeline_refuses_input() {
        // The pipeline holds little, but keeps refusing input: the backlog is
        // in the ingest queue and the publisher's socket.
        let mut run = Run::new();
        run.refusing = 0.6;
        let decisions = run.seconds(6, 0.8, S / 5);
        assert_eq!(decisions.first().and_then(|d| d.change.clone()), Some(Change::Degraded));
        assert!(decisions[0].stalled_share > 0.5, "{decisions:?}");
        // Refusing now and then, as any full queue does, is not overload.
        let mut run = Run::new();
        run.refusing = 0.1;
        assert!(run.seconds(30, 0.9, S / 5).is_empty());
    }

    #[test]
    fn nothing_is_restored_while_the_pipeline_still_refuses_input() {
        let mut run = Run::new();
        run.refusing = 0.6;
        run.seconds(6, 0.8, S / 5);
        assert_eq!(run.divisors(), vec![2, 1, 1]);
        // Catching up on what waited before the ladder: fast, little inside,
        // but still refusing input. Not caught up yet.
        run.refusing = 0.2;
        assert!(run.seconds(30, 1.3, S / 5).is_empty());
        run.refusing = 0.0;
        let restored = run.seconds(11, 1.0, S / 5);
        assert_eq!(restored.len(), 1, "{restored:?}");
        assert_eq!(run.divisors(), vec![1, 1, 1]);
    }

    #[test]
    fn the_stall_clock_sums_stretches_and_counts_the_open_one() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut clock = StallClock::default();
        clock.note(at(0), true);
        clock.note(at(100), true);
        clock.note(at(300), false);
        clock.note(at(400), false);
        assert_eq!(clock.total(at(500)), Duration::from_millis(300));
        clock.note(at(1000), true);
        assert_eq!(clock.total(at(1250)), Duration::from_millis(550));
    }

    #[test]
    fn the_gate_keeps_one_fresh_frame_in_divisor_and_always_the_forced_keyframe() {
        crate::media::init().expect("gstreamer ready");
        let mut state = GateState::default();
        assert!((0..5).all(|_| state.fresh(false, 1)));
        state.held = Some(gst::Buffer::new());
        let fresh: Vec<bool> = (0..7).map(|i| state.fresh(i == 4, 3)).collect();
        // Frame 1 is the 6th since the count started; the count restarts at
        // the keyframe request (frame 4).
        assert_eq!(fresh, vec![false, true, false, false, true, false, false]);
        let mut empty = GateState::default();
        assert!((0..3).all(|_| empty.fresh(false, 4)), "nothing to repeat yet: fresh");
    }
}
