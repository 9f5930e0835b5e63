//! Viewers and usage, wired together: the tracker counts sessions from what
//! delivery reports, a once-a-second sweep turns changes into the live feed,
//! throttled `viewers.updated` events, Prometheus series and billed viewer
//! time, and the usage meter turns that into hourly rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::events::LifecycleEvent;
use super::lifecycle::Lifecycle;
use super::metrics::Metrics;
use super::tokens::PlaybackTokens;
use super::usage::UsageMeter;
use super::viewers::{ViewerCount, ViewerSettings, ViewerTracker, Visit};
use crate::delivery::{SessionsExhausted, ViewerReporter};

const SWEEP_EVERY: Duration = Duration::from_secs(1);
const COUNTS_FEED: usize = 256;

pub struct Audience {
    tracker: ViewerTracker,
    meter: Arc<UsageMeter>,
    tokens: PlaybackTokens,
    metrics: Arc<Metrics>,
    counts: broadcast::Sender<ViewerCount>,
}

impl Audience {
    pub fn new(
        settings: ViewerSettings,
        meter: Arc<UsageMeter>,
        tokens: PlaybackTokens,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tracker: ViewerTracker::new(settings),
            meter,
            tokens,
            metrics,
            counts: broadcast::channel(COUNTS_FEED).0,
        })
    }

    pub fn count(&self, stream_id: &str) -> Option<ViewerCount> {
        self.tracker.count(stream_id)
    }

    /// Every change of a stream's count, within a second of it.
    pub fn counts(&self) -> broadcast::Receiver<ViewerCount> {
        self.counts.subscribe()
    }

    /// The sweep, once a second until `shutdown`.
    pub async fn run(self: Arc<Self>, lifecycle: Arc<Lifecycle>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let sweep = self.tracker.sweep(Instant::now());
            for count in &sweep.changed {
                let _ = self.counts.send(count.clone());
                self.meter.viewers(&count.app_id, &count.stream_id, 0, count.viewers);
            }
            for (app_id, stream_id, ms, concurrent) in &sweep.credited {
                self.meter.viewers(app_id, stream_id, *ms, *concurrent);
                self.metrics
                    .viewer_seconds
                    .with_label_values(&[app_id])
                    .inc_by(*ms as f64 / 1000.0);
            }
            if !sweep.changed.is_empty() {
                self.metrics.viewers.reset();
                for (app_id, viewers) in self.tracker.per_app() {
                    self.metrics
                        .viewers
                        .with_label_values(&[&app_id])
                        .set(i64::try_from(viewers).unwrap_or(i64::MAX));
                }
            }
            for count in sweep.events {
                lifecycle
                    .record(LifecycleEvent::ViewersUpdated {
                        stream_id: count.stream_id,
                        app_id: count.app_id,
                        viewers: count.viewers,
                        peak_viewers: count.peak_viewers,
                        renditions: count.renditions,
                    })
                    .await;
            }
        }
    }
}

impl ViewerReporter for Audience {
    fn session_started(&self, stream_id: &str, token: &str) -> Result<Option<String>, SessionsExhausted> {
        let Some(app_id) = self.tokens.app_of(stream_id) else {
            return Ok(None);
        };
        self.tracker.start(stream_id, &app_id, token, Instant::now())
    }

    fn playlist_requested(
        &self,
        session: &str,
        stream_id: &str,
        token: &str,
        rendition: &str,
        is_alternate: &dyn Fn() -> bool,
    ) {
        let visit = Visit {
            session,
            stream_id,
            token,
            rendition,
        };
        let app_of = || self.tokens.app_of(stream_id);
        self.tracker.touch(visit, app_of, is_alternate, Instant::now());
    }

    fn delivered(&self, stream_id: &str, bytes: u64) {
        self.metrics.delivered_bytes.inc_by(bytes);
        self.meter.delivered(stream_id, || self.tokens.app_of(stream_id), bytes);
    }
}
