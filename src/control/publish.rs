//! The publish gate: authorises publishers against the store, enforces one
//! publisher per stream (a new one takes over), and wires each accepted
//! session ingest → media ladder → HLS packager.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::events::LifecycleEvent;
use super::gate::{Admission, AuthDenial, Authorization, DenyReason, LadderChoice};
use super::keys::redact_stream_key;
use super::lifecycle::Lifecycle;
use super::live::{LiveStreamStats, LiveStreams};
use super::metrics::Metrics;
use super::sessions::{LiveSession, SAMPLE_EVERY};
use super::usage::UsageMeter;
use crate::hls::{Packagers, StreamOptions};
use crate::ingest::{PublishGate, PublishRejection, PublishRequest, PublishSession};
use crate::media::{self, LadderProfile, LadderSettings};

/// Media packets queued between ingest and the ladder; beyond this the
/// publisher's TCP window fills (backpressure) rather than our memory.
const MEDIA_QUEUE: usize = 512;
const LADDER_EVENT_QUEUE: usize = 256;
/// How long a takeover waits for the old session to let go of the packager.
const TAKEOVER_GRACE: Duration = Duration::from_secs(5);
/// How long an ended stream's last window stays servable.
const ENDED_STREAM_KEPT: Duration = Duration::from_secs(60);

pub struct PublishSettings {
    pub default_profile: String,
    pub ladder: LadderSettings,
    /// After a publisher leaves, how long the stream waits for it to come back
    /// before its playlists end (ENDLIST).
    pub reconnect_window: Duration,
    /// Where media goes (an app may name its own bucket).
    pub stores: crate::storage::Stores,
    /// Transcoding ladders live at once (`overload.transcode_budget`).
    pub transcode_budget: usize,
    /// Over the budget: refuse the publish instead of admitting it
    /// passthrough-only (`overload.over_budget = "refuse"`).
    pub refuse_over_budget: bool,
}

/// How a publish fits the transcode budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscodeAdmission {
    /// Within the budget (or nothing to encode): the profile as it is.
    AsProfiled,
    /// Over the budget: the source is only repackaged.
    PassthroughOnly,
    Refused,
}

/// Whether a profile costs decode/encode CPU: any encoded rung, or the
/// long-GOP fallback (which decodes all the time to be ready).
pub fn profile_transcodes(profile: &LadderProfile) -> bool {
    !profile.rungs.is_empty() || profile.long_gop_fallback || !profile.passthrough
}

/// The admission decision, given how many other transcoding ladders are live.
pub fn admit_transcode(transcodes: bool, others_transcoding: usize, budget: usize, refuse: bool) -> TranscodeAdmission {
    if !transcodes || others_transcoding < budget {
        TranscodeAdmission::AsProfiled
    } else if refuse {
        TranscodeAdmission::Refused
    } else {
        TranscodeAdmission::PassthroughOnly
    }
}

/// The profile stripped to a copy of the source. A source that cannot be
/// copied (VP8, H.265) is still encoded once, at its own size: the least a
/// player can take.
fn passthrough_only(profile: LadderProfile) -> LadderProfile {
    LadderProfile {
        passthrough: true,
        long_gop_fallback: false,
        rungs: Vec::new(),
        ..profile
    }
}

/// Why a publish was not admitted under the active-streams lock.
enum Crowded {
    AppLimit(u32),
    TranscodeBudget(usize),
}

struct ActivePublish {
    session: u64,
    live: Arc<LiveSession>,
    kicked: CancellationToken,
    /// Set right after the session task is spawned.
    task: Option<JoinHandle<()>>,
    /// Counts against the transcode budget.
    transcoding: bool,
}

pub struct PublishController {
    admission: Admission,
    packagers: Packagers,
    profiles: Arc<BTreeMap<String, LadderProfile>>,
    settings: PublishSettings,
    /// Every lifecycle change goes through here: bus, outbox, webhooks.
    lifecycle: Arc<Lifecycle>,
    /// Told which app each accepted stream belongs to, so that tokens signed
    /// by an app's own keys open only that app's streams.
    playback: super::PlaybackTokens,
    metrics: Arc<Metrics>,
    usage: Arc<UsageMeter>,
    active: Mutex<HashMap<String, ActivePublish>>,
    idle_timers: Mutex<HashMap<String, JoinHandle<()>>>,
    next_session: AtomicU64,
    /// Set by [`PublishController::kick_all`]: sessions that end now end
    /// because the server stops.
    shutting_down: AtomicBool,
    /// Every session task, until it has recorded its end.
    sessions: TaskTracker,
}

/// Where a publish session reports to.
pub struct PublishReporting {
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    pub usage: Arc<UsageMeter>,
}

impl PublishController {
    pub fn new(
        admission: Admission,
        packagers: Packagers,
        profiles: Arc<BTreeMap<String, LadderProfile>>,
        settings: PublishSettings,
        playback: super::PlaybackTokens,
        reporting: PublishReporting,
    ) -> Arc<Self> {
        let PublishReporting {
            lifecycle,
            metrics,
            usage,
        } = reporting;
        Arc::new(Self {
            admission,
            packagers,
            profiles,
            settings,
            lifecycle,
            playback,
            metrics,
            usage,
            active: Mutex::new(HashMap::new()),
            idle_timers: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            sessions: TaskTracker::new(),
        })
    }

    /// Streams with a publisher right now.
    pub fn live_streams(&self) -> Vec<String> {
        self.active.lock().keys().cloned().collect()
    }

    /// Disconnects the current publisher of `stream_id`, if any.
    pub fn kick(&self, stream_id: &str) -> bool {
        self.active.lock().get(stream_id).map(|a| a.kicked.cancel()).is_some()
    }

    /// The authorizer's answer, behind the failed-attempt throttle, with
    /// the ladder resolved.
    async fn authorise(&self, request: &PublishRequest) -> Result<(Authorization, LadderProfile), AuthDenial> {
        let ip = request.client_addr.ip();
        if !self.admission.limiter.admits(ip, &request.stream_key) {
            return Err(AuthDenial::new(
                DenyReason::RateLimited,
                "too many failed publish attempts from this address, try again later",
            ));
        }
        let granted = match self.admission.authorizer.authorize(request).await {
            Ok(granted) => granted,
            Err(denial) => {
                if denial.reason.is_failed_attempt() {
                    self.admission.limiter.record_failure(ip);
                }
                return Err(denial);
            }
        };
        self.admission.limiter.record_success(ip, &request.stream_key);
        let profile = match &granted.ladder {
            LadderChoice::Custom(toml) => LadderProfile::from_toml(toml).map_err(|e| {
                tracing::error!(stream_id = granted.stream_id, app_id = granted.app_id, error = %e, "the app's custom ladder does not load");
                AuthDenial::new(DenyReason::BadProfile, "the app's ladder is not valid on this server")
            })?,
            choice => {
                let name = match choice {
                    LadderChoice::Profile(name) => name.as_str(),
                    _ => self.settings.default_profile.as_str(),
                };
                self.profiles.get(name).cloned().ok_or_else(|| {
                    tracing::error!(stream_id = granted.stream_id, profile = name, "stream names a profile that is not loaded");
                    AuthDenial::new(DenyReason::BadProfile, format!("profile {name:?} is not configured on this server"))
                })?
            }
        };
        Ok((granted, profile))
    }

    async fn reject(&self, request: &PublishRequest, denial: AuthDenial) -> PublishRejection {
        self.lifecycle
            .record(LifecycleEvent::Rejected {
                stream: denial.target.clone(),
                stream_key_prefix: redact_stream_key(&request.stream_key),
                protocol: request.protocol,
                client: request.client_addr,
                code: denial.reason.as_str(),
                reason: denial.message.clone(),
            })
            .await;
        PublishRejection {
            code: denial.reason.reject_code(),
            description: denial.message,
        }
    }

    /// A publish refused because the live transcoding ladders fill the
    /// budget: the app hears of it (`stream.rejected`, code
    /// `transcode_budget`), the publisher gets `Rejected`.
    async fn refuse_over_budget(
        &self,
        request: &PublishRequest,
        stream_id: &str,
        app_id: &str,
        budget: usize,
    ) -> PublishRejection {
        let description = format!("the server is at its transcoding budget ({budget} ladders); try again later");
        self.lifecycle
            .record(LifecycleEvent::Rejected {
                stream: Some(super::gate::DeniedStream {
                    stream_id: stream_id.to_string(),
                    app_id: app_id.to_string(),
                }),
                stream_key_prefix: redact_stream_key(&request.stream_key),
                protocol: request.protocol,
                client: request.client_addr,
                code: "transcode_budget",
                reason: description.clone(),
            })
            .await;
        PublishRejection {
            code: crate::ingest::RejectCode::Overloaded,
            description,
        }
    }

    async fn begin_session(self: Arc<Self>, request: PublishRequest) -> Result<PublishSession, PublishRejection> {
        if self.shutting_down.load(Ordering::SeqCst) {
            // Not an auth decision: no event, and the encoder retries elsewhere.
            return Err(PublishRejection {
                code: crate::ingest::RejectCode::Overloaded,
                description: "the server is shutting down".to_string(),
            });
        }
        let (granted, mut profile) = match self.authorise(&request).await {
            Ok(ok) => ok,
            Err(denial) => return Err(self.reject(&request, denial).await),
        };
        let stream_id = granted.stream_id.clone();
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let kicked = CancellationToken::new();
        let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let live = Arc::new(LiveSession::new(
            stream_id.clone(),
            granted.app_id.clone(),
            session,
            request.protocol,
            request.client_addr,
            granted.max_ingest_kbps,
        ));

        let transcodes = profile_transcodes(&profile);
        let (admitted, budget_decision) = {
            let mut active = self.active.lock();
            let others = active
                .iter()
                .filter(|(id, a)| a.live.app_id == granted.app_id && **id != stream_id)
                .count();
            let transcoding = active
                .iter()
                .filter(|(id, a)| a.transcoding && **id != stream_id)
                .count();
            let budget_decision = admit_transcode(
                transcodes,
                transcoding,
                self.settings.transcode_budget,
                self.settings.refuse_over_budget,
            );
            let admitted = match granted.max_streams {
                // Checked under the lock so two publishes cannot both take the
                // last slot; a takeover replaces its own stream and is not counted.
                Some(max) if others >= max as usize => Err(Crowded::AppLimit(max)),
                _ if budget_decision == TranscodeAdmission::Refused => {
                    Err(Crowded::TranscodeBudget(self.settings.transcode_budget))
                }
                _ => {
                    let previous = active.remove(&stream_id);
                    if let Some(old) = &previous {
                        old.kicked.cancel();
                    }
                    active.insert(
                        stream_id.clone(),
                        ActivePublish {
                            session,
                            live: live.clone(),
                            kicked: kicked.clone(),
                            task: None,
                            transcoding: transcodes && budget_decision == TranscodeAdmission::AsProfiled,
                        },
                    );
                    self.metrics.streams_live.set(active.len() as i64);
                    Ok(previous)
                }
            };
            (admitted, budget_decision)
        };
        let previous = match admitted {
            Ok(previous) => previous,
            Err(Crowded::AppLimit(max)) => {
                let denial = AuthDenial::new(
                    DenyReason::AppStreamLimit,
                    format!("the app already has its maximum of {max} live streams"),
                )
                .of_stream(&stream_id, &granted.app_id);
                return Err(self.reject(&request, denial).await);
            }
            Err(Crowded::TranscodeBudget(budget)) => {
                return Err(self
                    .refuse_over_budget(&request, &stream_id, &granted.app_id, budget)
                    .await);
            }
        };
        if budget_decision == TranscodeAdmission::PassthroughOnly {
            profile = passthrough_only(profile);
            let message = format!(
                "The server is at its transcoding budget ({} ladders): this stream is admitted passthrough-only \
                 (the source is repackaged, no lower renditions).",
                self.settings.transcode_budget
            );
            tracing::warn!(stream_id, "{message}");
            self.lifecycle.bus().publish(LifecycleEvent::Warning {
                stream_id: stream_id.clone(),
                session,
                message,
            });
        }
        if let Some(timer) = self.idle_timers.lock().remove(&stream_id) {
            timer.abort();
        }
        self.playback.bind_stream(&stream_id, &granted.app_id);
        if let Some(old) = &previous {
            self.lifecycle
                .record(LifecycleEvent::Takeover {
                    stream_id: stream_id.clone(),
                    app_id: granted.app_id.clone(),
                    old_session: old.session,
                    new_session: session,
                    protocol: request.protocol,
                    client: request.client_addr,
                })
                .await;
        }
        self.lifecycle
            .record(LifecycleEvent::Connected {
                stream_id: stream_id.clone(),
                app_id: granted.app_id.clone(),
                protocol: request.protocol,
                client: request.client_addr,
                session,
            })
            .await;

        let span = tracing::info_span!("stream", stream_id = %stream_id, app_id = %granted.app_id, session, protocol = request.protocol, app = %request.app);
        let options = StreamOptions {
            encrypt: granted.encrypt,
            key_rotation_segments: granted.key_rotation_segments,
            record: granted.record,
            cdn_base_url: granted.storage.cdn_base_url.clone(),
            store: self
                .settings
                .stores
                .for_app(granted.storage.bucket.as_deref(), granted.storage.prefix.as_deref()),
        };
        let this = self.clone();
        let task_kicked = kicked.clone();
        let task_live = live.clone();
        let task = self.sessions.spawn(
            async move {
                if let Some(old_task) = previous.and_then(|old| old.task) {
                    // The packager serves one session at a time: wait for the old one to let go.
                    if tokio::time::timeout(TAKEOVER_GRACE, old_task).await.is_err() {
                        tracing::warn!("previous session did not stop within the takeover grace period");
                    }
                }
                this.run_session(stream_id, session, (profile, options), task_live, media_rx, task_kicked)
                    .await;
            }
            .instrument(span),
        );
        if let Some(entry) = self.active.lock().get_mut(&granted.stream_id) {
            if entry.session == session {
                entry.task = Some(task);
            }
        }
        Ok(PublishSession {
            stream_id: granted.stream_id,
            media: media_tx,
            kicked,
            counters: live.counters.clone(),
            keyframe_wanted: live.keyframe_wanted.clone(),
        })
    }

    async fn run_session(
        self: Arc<Self>,
        stream_id: String,
        session: u64,
        (profile, options): (LadderProfile, StreamOptions),
        live: Arc<LiveSession>,
        media_rx: mpsc::Receiver<crate::ingest::MediaPacket>,
        kicked: CancellationToken,
    ) {
        let packager = self.packagers.stream_with(&stream_id, options);
        live.attach_packager(packager.clone());
        let sampler = tokio::spawn(self.clone().sample_session(live.clone(), kicked.clone()));
        // Continue the stream's timeline (plus a margin for the gap) so that
        // timestamps never run backwards across a reconnect or takeover.
        let timeline_offset = match packager.timeline_end() {
            Duration::ZERO => Duration::ZERO,
            end => end + self.settings.ladder.segment_target,
        };
        let ladder_settings = LadderSettings {
            timeline_offset,
            ..self.settings.ladder.clone()
        };
        let wallclock_origin = SystemTime::now()
            .checked_sub(timeline_offset)
            .unwrap_or_else(SystemTime::now);
        let (ladder_tx, ladder_rx) = mpsc::channel(LADDER_EVENT_QUEUE);
        let ladder = media::spawn_ladder(&stream_id, &profile, &ladder_settings, media_rx, ladder_tx);
        // The ladder's keyframe needs reach the publish session (and its protocol).
        let keyframes = {
            let (from, to) = (ladder.keyframe_wanted(), live.keyframe_wanted.clone());
            tokio::spawn(async move {
                loop {
                    from.notified().await;
                    to.notify_one();
                }
            })
        };
        live.attach_ladder(ladder.stats()); // telemetry: ladder drops in frames_dropped
                                            // Ends by itself when the ladder does (its sender goes).
        tokio::spawn(
            self.clone()
                .report_overload(stream_id.clone(), live.app_id.clone(), session, ladder.overload()),
        );
        let (hls_tx, hls_rx) = mpsc::channel(LADDER_EVENT_QUEUE);

        // Warnings and failures go to the event bus on their way to the packager.
        let events = self.lifecycle.bus().clone();
        let tap_stream = stream_id.clone();
        let tap_live = live.clone();
        let tap = forward_ladder_events(ladder_rx, hls_tx, move |event| match event {
            media::LadderEvent::Renditions(specs) => {
                let transcoded = specs.iter().filter(|s| !s.passthrough).count();
                tap_live
                    .transcoded_renditions
                    .store(u32::try_from(transcoded).unwrap_or(u32::MAX), Ordering::Relaxed);
            }
            media::LadderEvent::Warning(message) => events.publish(LifecycleEvent::Warning {
                stream_id: tap_stream.clone(),
                session,
                message: message.clone(),
            }),
            _ => {}
        });
        let watcher = {
            let packager = packager.clone();
            let lifecycle = self.lifecycle.clone();
            let stream_id = stream_id.clone();
            let app_id = live.app_id.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    if packager.is_active() {
                        lifecycle
                            .record(LifecycleEvent::Active {
                                stream_id,
                                app_id,
                                session,
                            })
                            .await;
                        return;
                    }
                }
            })
        };
        let packaging = packager.clone().run_session(hls_rx, wallclock_origin);
        let outcome = tokio::select! {
            (failure, packaged) = async { tokio::join!(tap, packaging) } => match (failure, packaged) {
                (Some(reason), _) => Err(reason),
                (None, Err(e)) => Err(e.to_string()),
                (None, Ok(())) => Ok(()),
            },
            // Takeover or kick: stop packaging now; the next session continues with a discontinuity.
            _ = kicked.cancelled() => Ok(()),
        };
        watcher.abort();
        sampler.abort();
        keyframes.abort();
        // telemetry: the bytes since the sampler's last tick still count.
        self.metrics
            .ingest_bytes
            .with_label_values(&[live.protocol])
            .inc_by(live.sample());
        drop(ladder);

        let was_kicked = kicked.is_cancelled();
        if outcome.is_err() {
            // The publisher is told by closing its connection; the ingest side sees `kicked`.
            kicked.cancel();
        }
        let still_current = {
            let mut active = self.active.lock();
            let current = active.get(&stream_id).map(|a| a.session) == Some(session);
            if current {
                active.remove(&stream_id);
                self.metrics.streams_live.set(active.len() as i64);
            }
            current
        };
        // A session that was taken over says nothing more: the takeover
        // event has told its story, and the stream is the new session's.
        if !still_current {
            return;
        }
        let app_id = live.app_id.clone();
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let event = match outcome {
            Ok(()) => LifecycleEvent::Disconnected {
                stream_id: stream_id.clone(),
                app_id: app_id.clone(),
                session,
                reason: if shutting_down {
                    "server_shutdown"
                } else if was_kicked {
                    "kicked"
                } else {
                    "publisher_left"
                },
            },
            Err(reason) => LifecycleEvent::Failed {
                stream_id: stream_id.clone(),
                app_id: app_id.clone(),
                session,
                reason,
            },
        };
        self.lifecycle.record(event).await;
        if shutting_down {
            // The next start closes the stream (`stream.idle`, `server_restart`)
            // and finalises its recording: this process will not see the window out.
            return;
        }
        self.start_idle_timer(stream_id, app_id);
    }

    /// `stream.degraded` / `stream.recovered` as the ladder's overload state
    /// flips, and the degraded-streams gauge (left as it was found).
    async fn report_overload(
        self: Arc<Self>,
        stream_id: String,
        app_id: String,
        session: u64,
        mut overload: tokio::sync::watch::Receiver<media::OverloadState>,
    ) {
        let mut degraded = false;
        while overload.changed().await.is_ok() {
            let state = overload.borrow_and_update().clone();
            if state.degraded == degraded {
                continue;
            }
            degraded = state.degraded;
            let event = if degraded {
                self.metrics.streams_degraded.inc();
                LifecycleEvent::Degraded {
                    stream_id: stream_id.clone(),
                    app_id: app_id.clone(),
                    session,
                    speed: state.speed,
                    shed: state.shed,
                }
            } else {
                self.metrics.streams_degraded.dec();
                LifecycleEvent::Recovered {
                    stream_id: stream_id.clone(),
                    app_id: app_id.clone(),
                    session,
                }
            };
            self.lifecycle.record(event).await;
        }
        if degraded {
            self.metrics.streams_degraded.dec();
        }
    }

    /// Once a second: ingest bytes into the metrics, and the app's ingest
    /// bitrate limit, judged over a full rate window so that a keyframe
    /// burst passes.
    async fn sample_session(self: Arc<Self>, live: Arc<LiveSession>, kicked: CancellationToken) {
        let bytes = self.metrics.ingest_bytes.with_label_values(&[live.protocol]);
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            let now = tick.tick().await;
            bytes.inc_by(live.sample());
            // usage: ingest time, and time of each transcoded rendition.
            self.usage.ingest(
                &live.app_id,
                &live.stream_id,
                now.saturating_duration_since(last),
                live.transcoded_renditions.load(Ordering::Relaxed),
            );
            last = now;
            if let Some(over) = live.over_ingest_limit() {
                tracing::warn!(
                    measured_kbps = over.measured_kbps,
                    limit_kbps = over.limit_kbps,
                    "ingest bitrate over the app's limit; kicking the publisher"
                );
                self.lifecycle.bus().publish(LifecycleEvent::Warning {
                    stream_id: live.stream_id.clone(),
                    session: live.session,
                    message: over.message(),
                });
                kicked.cancel();
                return;
            }
        }
    }

    fn start_idle_timer(self: &Arc<Self>, stream_id: String, app_id: String) {
        let this = self.clone();
        let window = self.settings.reconnect_window;
        let id = stream_id.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(window).await;
            if let Some(packager) = this.packagers.get(&id) {
                packager.end_stream();
            }
            this.lifecycle
                .record(LifecycleEvent::Idle {
                    stream_id: id.clone(),
                    app_id,
                    reason: "reconnect_window_expired",
                })
                .await;
            // Players that were watching see ENDLIST; then the live window goes,
            // so memory does not grow with every stream that ever published.
            tokio::time::sleep(ENDED_STREAM_KEPT).await;
            this.packagers.remove(&id);
            this.idle_timers.lock().remove(&id);
        });
        if let Some(old) = self.idle_timers.lock().insert(stream_id, timer) {
            old.abort();
        }
    }

    /// Stops every publisher and refuses new ones (server shutdown).
    pub fn kick_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for active in self.active.lock().values() {
            active.kicked.cancel();
        }
    }

    /// After [`PublishController::kick_all`]: waits until every session has
    /// flushed its ladder into the packager and recorded its end, or
    /// `timeout` passed; how many were still running.
    pub async fn sessions_ended(&self, timeout: Duration) -> usize {
        self.sessions.close();
        let _ = tokio::time::timeout(timeout, self.sessions.wait()).await;
        self.sessions.len()
    }
}

/// Forwards the ladder's events to the packager, showing each to `observe`
/// first; returns why the ladder failed, if it did. A ladder whose channel
/// closes without its `Ended` died (a panic that escaped, an aborted task):
/// that is a failure too, never "the publisher left".
async fn forward_ladder_events(
    mut ladder_rx: mpsc::Receiver<media::LadderEvent>,
    hls_tx: mpsc::Sender<media::LadderEvent>,
    mut observe: impl FnMut(&media::LadderEvent),
) -> Option<String> {
    let mut failure = None;
    let mut ended = false;
    while let Some(event) = ladder_rx.recv().await {
        observe(&event);
        if let media::LadderEvent::Ended(result) = &event {
            ended = true;
            failure = result.as_ref().err().cloned();
        }
        if hls_tx.send(event).await.is_err() {
            // The packager stopped first; its own result tells why.
            return failure;
        }
    }
    if ended {
        failure
    } else {
        Some("the media ladder stopped without reporting an end".to_string())
    }
}

impl LiveStreams for PublishController {
    fn live(&self, app_id: Option<&str>) -> Vec<LiveStreamStats> {
        let sessions: Vec<Arc<LiveSession>> = self
            .active
            .lock()
            .values()
            .filter(|a| app_id.is_none_or(|app| a.live.app_id == app))
            .map(|a| a.live.clone())
            .collect();
        let mut stats: Vec<LiveStreamStats> = sessions.iter().map(|s| s.stats()).collect();
        stats.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        stats
    }

    fn live_stream(&self, stream_id: &str) -> Option<LiveStreamStats> {
        let live = self.active.lock().get(stream_id).map(|a| a.live.clone());
        live.map(|s| s.stats())
    }

    fn kick(&self, stream_id: &str, reason: &str) -> bool {
        let kicked = PublishController::kick(self, stream_id);
        if kicked {
            tracing::info!(stream_id, reason, "publisher kicked");
        }
        kicked
    }
}

impl PublishGate for Arc<PublishController> {
    fn begin(&self, request: PublishRequest) -> BoxFuture<'static, Result<PublishSession, PublishRejection>> {
        Box::pin(self.clone().begin_session(request))
    }

    fn check(&self, request: PublishRequest) -> BoxFuture<'static, Result<(), PublishRejection>> {
        let controller = self.clone();
        Box::pin(async move {
            match controller.authorise(&request).await {
                Ok(_) => Ok(()),
                Err(denial) => Err(controller.reject(&request, denial).await),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn forwarded(events: Vec<media::LadderEvent>) -> (Option<String>, usize) {
        let (ladder_tx, ladder_rx) = mpsc::channel(16);
        let (hls_tx, mut hls_rx) = mpsc::channel(16);
        for event in events {
            ladder_tx.send(event).await.expect("send");
        }
        drop(ladder_tx);
        let mut seen = 0;
        let failure = forward_ladder_events(ladder_rx, hls_tx, |_| seen += 1).await;
        let mut delivered = 0;
        while hls_rx.recv().await.is_some() {
            delivered += 1;
        }
        assert_eq!(seen, delivered, "every event is observed and forwarded");
        (failure, delivered)
    }

    /// Issue 14, defect 4: a ladder that panicked closed its channel without
    /// `Ended`, and the session was recorded as `publisher_left`.
    #[tokio::test]
    async fn a_ladder_that_vanishes_without_ended_is_a_failure() {
        let (failure, _) = forwarded(vec![media::LadderEvent::Warning("w".into())]).await;
        assert!(failure.is_some_and(|r| r.contains("without reporting an end")));
    }

    #[test]
    fn a_transcoding_publish_over_the_budget_is_copied_or_refused_as_configured() {
        use TranscodeAdmission::*;
        assert_eq!(admit_transcode(true, 1, 2, false), AsProfiled);
        assert_eq!(admit_transcode(true, 2, 2, false), PassthroughOnly);
        assert_eq!(admit_transcode(true, 2, 2, true), Refused);
        // Passthrough streams cost no encode and are never counted or refused.
        assert_eq!(admit_transcode(false, 9, 2, true), AsProfiled);
        assert_eq!(
            admit_transcode(true, 0, 0, true),
            Refused,
            "a budget of 0 admits no transcode"
        );
    }

    #[test]
    fn which_profiles_transcode_and_what_passthrough_only_keeps() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let default = media::load_profile(&dir.join("default.toml")).expect("default.toml");
        let copy = media::load_profile(&dir.join("passthrough.toml")).expect("passthrough.toml");
        assert!(profile_transcodes(&default));
        assert!(!profile_transcodes(&copy));
        let stripped = passthrough_only(default.clone());
        assert!(!profile_transcodes(&stripped));
        assert_eq!((stripped.audio, stripped.encoder), (default.audio, default.encoder));
    }

    #[tokio::test]
    async fn ended_decides_between_success_and_failure() {
        let ok = forwarded(vec![media::LadderEvent::Ended(Ok(()))]).await;
        assert_eq!(ok, (None, 1));
        let failed = forwarded(vec![media::LadderEvent::Ended(Err(
            "the media ladder crashed: x".into()
        ))])
        .await;
        assert_eq!(failed, (Some("the media ladder crashed: x".into()), 1));
    }
}
