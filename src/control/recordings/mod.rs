//! Recordings (VOD). A stream of an app with `record` keeps its segments
//! in the store; the packager reports each one once durable (through
//! [`RecordingSink`]) and the [`Recorder`] files it under the stream's open
//! recording. At `stream.idle` the recording is finalised: once the
//! stream's uploads have landed, its VOD playlists (ENDLIST, no parts, the
//! same keys) are written next to the media and `recording.ready` is sent.
//! Recordings a previous process left open are finalised at start-up.

pub mod model;
mod vod;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use self::model::{new_recording_id, NewRecording, Recording, STATUS_FAILED, STATUS_READY};
use super::events::LifecycleEvent;
use super::lifecycle::Lifecycle;
use super::store::{ControlStore, RecordingStore, StoreError};
use super::tokens::PlaybackTokens;
use super::webhooks::model::{EventType, NewEvent};
use crate::hls::{Packagers, RecordedSegment, RecordingSink};
use crate::storage::{ObjectStore, Stores};

/// How long the playback URL in `recording.ready` stays valid.
const READY_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct RecorderSettings {
    pub public_http_base: String,
    /// How long finalising waits for the stream's uploads to land.
    pub settle_timeout: Duration,
}

enum Msg {
    Ladder {
        stream_id: String,
        master: String,
    },
    Segment(RecordedSegment),
    /// The stream's uploads settled (or the wait ran out): finalise.
    Finalize {
        stream_id: String,
    },
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    recordings: Arc<dyn RecordingStore>,
    control: Arc<dyn ControlStore>,
    stores: Stores,
    tokens: PlaybackTokens,
    settings: RecorderSettings,
    tx: mpsc::UnboundedSender<Msg>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Msg>>>,
}

/// Sink messages are a few hundred bytes per segment; the channel is
/// unbounded so that a store write never waits on the database.
impl RecordingSink for Recorder {
    fn ladder(&self, stream_id: &str, master: String) {
        let _ = self.inner.tx.send(Msg::Ladder {
            stream_id: stream_id.to_string(),
            master,
        });
    }

    fn segment(&self, segment: RecordedSegment) {
        let _ = self.inner.tx.send(Msg::Segment(segment));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recording {0} is still recording")]
    StillRecording(String),
    #[error("writing the playlists of {recording}: {message}")]
    Storage { recording: String, message: String },
}

impl Recorder {
    pub fn new(
        recordings: Arc<dyn RecordingStore>,
        control: Arc<dyn ControlStore>,
        stores: Stores,
        tokens: PlaybackTokens,
        settings: RecorderSettings,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                recordings,
                control,
                stores,
                tokens,
                settings,
                tx,
                rx: parking_lot::Mutex::new(Some(rx)),
            }),
        }
    }

    fn store_of(&self, recording: &Recording) -> Arc<dyn ObjectStore> {
        self.inner
            .stores
            .for_app(recording.storage_bucket.as_deref(), recording.storage_prefix.as_deref())
            .unwrap_or_else(|| self.inner.stores.default_store())
    }

    /// The URL players open: the edge serves the playlists with the token
    /// carried into key URIs.
    pub fn playback_url(&self, recording: &Recording, ttl: Duration) -> Option<String> {
        let token = self
            .inner
            .tokens
            .mint_for_app(&recording.app_id, &recording.stream_id, ttl, None)
            .map_err(|e| tracing::error!(error = %e, recording = recording.id, "cannot sign a recording playback URL"))
            .ok()?;
        Some(format!(
            "{}/vod/{}/master.m3u8?token={token}",
            self.inner.settings.public_http_base, recording.id
        ))
    }

    /// Finalises what a previous process left open, then files segments and
    /// finalises recordings until `stop`, which a shutdown cancels only
    /// after the uploads were flushed.
    pub async fn run(
        self,
        lifecycle: Arc<Lifecycle>,
        packagers: Packagers,
        mut events: broadcast::Receiver<LifecycleEvent>,
        stop: CancellationToken,
    ) {
        let Some(mut rx) = self.inner.rx.lock().take() else {
            tracing::error!("recorder started twice");
            return;
        };
        match self.inner.recordings.unfinished_recordings().await {
            Ok(left_open) => {
                for recording in left_open {
                    tracing::info!(
                        recording = recording.id,
                        stream_id = recording.stream_id,
                        "finalising a recording the previous run left open"
                    );
                    self.finalize(&lifecycle, recording).await;
                }
            }
            Err(error) => tracing::error!(%error, "listing unfinished recordings failed"),
        }
        // Per stream: its app (from stream.connected) and its open recording.
        let mut apps: HashMap<String, String> = HashMap::new();
        let mut open: HashMap<String, Recording> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = events.recv() => match event {
                    Ok(LifecycleEvent::Connected { stream_id, app_id, .. }) => {
                        apps.insert(stream_id, app_id);
                    }
                    Ok(LifecycleEvent::Idle { stream_id, .. }) => {
                        if open.contains_key(&stream_id) {
                            self.finalize_when_settled(&packagers, stream_id);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "recorder missed lifecycle events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(&lifecycle, &mut open, &apps, msg).await,
                    None => break,
                },
            }
        }
        // Segments that landed while the server was stopping are filed too:
        // the uploads were flushed before `stop`, so their reports are queued.
        while let Ok(msg) = rx.try_recv() {
            self.handle(&lifecycle, &mut open, &apps, msg).await;
        }
    }

    async fn handle(
        &self,
        lifecycle: &Arc<Lifecycle>,
        open: &mut HashMap<String, Recording>,
        apps: &HashMap<String, String>,
        msg: Msg,
    ) {
        match msg {
            Msg::Ladder { stream_id, master } => {
                if let Some(recording) = self.open_for(open, apps, &stream_id).await {
                    if let Err(error) = self.inner.recordings.set_recording_master(&recording, &master).await {
                        tracing::error!(%error, recording, "recording ladder not saved");
                    }
                }
            }
            Msg::Segment(segment) => {
                if let Some(recording) = self.open_for(open, apps, &segment.stream_id).await {
                    if let Err(error) = self.inner.recordings.add_recording_segment(&recording, &segment).await {
                        tracing::error!(%error, recording, msn = segment.msn, "recording segment not saved");
                    }
                }
            }
            Msg::Finalize { stream_id } => {
                if let Some(recording) = open.remove(&stream_id) {
                    let current = self.inner.recordings.recording(&recording.id).await.ok().flatten();
                    self.finalize(lifecycle, current.unwrap_or(recording)).await;
                }
            }
        }
    }

    /// The stream's open recording, created on its first segment.
    async fn open_for(
        &self,
        open: &mut HashMap<String, Recording>,
        apps: &HashMap<String, String>,
        stream_id: &str,
    ) -> Option<String> {
        if let Some(recording) = open.get(stream_id) {
            return Some(recording.id.clone());
        }
        let app_id = apps.get(stream_id).cloned().unwrap_or_default();
        let app = match self.inner.control.app(&app_id).await {
            Ok(app) => app,
            Err(error) => {
                tracing::warn!(%error, app_id, "app lookup failed; recording with the server's storage");
                None
            }
        };
        let new = NewRecording {
            id: new_recording_id(),
            app_id,
            stream_id: stream_id.to_string(),
            storage_bucket: app.as_ref().and_then(|a| a.storage_bucket.clone()),
            storage_prefix: app.as_ref().and_then(|a| a.storage_prefix.clone()),
            cdn_base_url: app.as_ref().and_then(|a| a.cdn_base_url.clone()),
            started_at: super::clock::unix_ms(),
        };
        match self.inner.recordings.create_recording(new).await {
            Ok(recording) => {
                tracing::info!(recording = recording.id, stream_id, "recording started");
                let id = recording.id.clone();
                open.insert(stream_id.to_string(), recording);
                Some(id)
            }
            Err(error) => {
                tracing::error!(%error, stream_id, "recording not created; its segments are not filed");
                None
            }
        }
    }

    /// Waits (off the loop) for the stream's uploads to land, then queues
    /// the finalisation behind every segment report already sent.
    fn finalize_when_settled(&self, packagers: &Packagers, stream_id: String) {
        let packager = packagers.get(&stream_id);
        let tx = self.inner.tx.clone();
        let timeout = self.inner.settings.settle_timeout;
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while let Some(packager) = &packager {
                if packager.uploads_settled() || started.elapsed() >= timeout {
                    if !packager.uploads_settled() {
                        tracing::warn!(stream_id, "finalising a recording while uploads are still pending");
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tx.send(Msg::Finalize { stream_id });
        });
    }

    async fn finalize(&self, lifecycle: &Lifecycle, recording: Recording) {
        let ended_at = super::clock::unix_ms();
        match self.write_playlists(&recording).await {
            Ok(()) => {
                if let Err(error) = self
                    .inner
                    .recordings
                    .finish_recording(&recording.id, STATUS_READY, ended_at, None)
                    .await
                {
                    tracing::error!(%error, recording = recording.id, "recording not marked ready");
                    return;
                }
                let playback_url = self.playback_url(&recording, READY_URL_TTL);
                let done = self.inner.recordings.recording(&recording.id).await.ok().flatten();
                let (duration_ms, segments) = done.map_or((0, 0), |r| (r.duration_ms, r.segments));
                tracing::info!(recording = recording.id, duration_ms, segments, "recording ready");
                lifecycle
                    .commit(NewEvent {
                        event_type: EventType::RecordingReady,
                        app_id: Some(recording.app_id.clone()),
                        stream_id: Some(recording.stream_id.clone()),
                        state: None,
                        data: json!({
                            "recording_id": recording.id,
                            "playback_url": playback_url,
                            "duration_ms": duration_ms,
                            "segments": segments,
                        }),
                        only_endpoint: None,
                    })
                    .await;
            }
            Err(error) => {
                tracing::error!(%error, recording = recording.id, "recording not finalised");
                let message = error.to_string();
                let _ = self
                    .inner
                    .recordings
                    .finish_recording(&recording.id, STATUS_FAILED, ended_at, Some(&message))
                    .await;
            }
        }
    }

    pub async fn list(&self, app_id: &str, limit: u32) -> Result<Vec<Recording>, RecordingError> {
        Ok(self.inner.recordings.recordings_of(app_id, limit).await?)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Recording>, RecordingError> {
        Ok(self.inner.recordings.recording(id).await?)
    }

    /// Deletes the recording and its objects (segments, inits, playlists).
    /// A recording still being made cannot be deleted.
    pub async fn delete(&self, recording: &Recording) -> Result<bool, RecordingError> {
        if recording.status == model::STATUS_RECORDING {
            return Err(RecordingError::StillRecording(recording.id.clone()));
        }
        let keys = self.object_keys(recording).await?;
        let store = self.store_of(recording);
        store.delete(keys).await.map_err(|e| RecordingError::Storage {
            recording: recording.id.clone(),
            message: e.to_string(),
        })?;
        Ok(self.inner.recordings.delete_recording(&recording.id).await?)
    }
}
