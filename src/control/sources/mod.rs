//! RTSP pull sources: what operators register (admin API and CLI write the
//! store), and the runner that keeps one ingest puller per enabled source.
//! The runner reconciles with the store every few seconds, so a source
//! added or stopped by the CLI (another process) is picked up, and every
//! enabled source starts again after a server restart.

pub mod model;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::model::{NewSource, Source, SourceView};
use super::model::NewStream;
use super::store::{ControlStore, SourceStore, StoreError};
use crate::ingest::rtsp::{self, PullHandle, PullSettings, PullState, PullStatus};
use crate::ingest::PublishGate;

const RECONCILE_EVERY: Duration = Duration::from_secs(2);
const MAX_NAME: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid source: {0}")]
    Invalid(String),
    #[error("no app {0}")]
    NoApp(String),
}

/// Store-level operations, shared by the admin API and the CLI.
#[derive(Clone)]
pub struct Sources {
    store: Arc<dyn SourceStore>,
    control: Arc<dyn ControlStore>,
}

impl Sources {
    pub fn new(store: Arc<dyn SourceStore>, control: Arc<dyn ControlStore>) -> Self {
        Self { store, control }
    }

    /// Creates the source and the stream it publishes into.
    pub async fn create(&self, app_id: &str, new: NewSource) -> Result<Source, SourceError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(SourceError::Invalid(format!("name must be 1-{MAX_NAME} characters")));
        }
        rtsp::split_credentials(new.url.expose()).map_err(SourceError::Invalid)?;
        if self.control.app(app_id).await?.is_none() {
            return Err(SourceError::NoApp(app_id.to_owned()));
        }
        let (stream, key) = self
            .control
            .create_stream(
                app_id,
                NewStream {
                    name: name.to_owned(),
                    profile: new.profile.clone(),
                },
            )
            .await?;
        let source = Source {
            id: format!("src_{}", uuid::Uuid::new_v4().simple()),
            app_id: app_id.to_owned(),
            stream_id: stream.id,
            stream_key: key.into(),
            name: name.to_owned(),
            url: new.url.expose().trim().into(),
            transport: new.transport,
            enabled: true,
            created_at: super::clock::unix_ms(),
            state: "connecting".into(),
            last_error: None,
            state_at: super::clock::unix_ms(),
        };
        if let Err(e) = self.store.create_source(&source).await {
            let _ = self.control.delete_stream(&source.stream_id).await;
            return Err(e.into());
        }
        Ok(source)
    }

    pub async fn get(&self, app_id: &str, id: &str) -> Result<Option<Source>, SourceError> {
        Ok(self.find(id).await?.filter(|s| s.app_id == app_id))
    }

    /// By id alone (the CLI, which works across apps).
    pub async fn find(&self, id: &str) -> Result<Option<Source>, SourceError> {
        Ok(self.store.source(id).await?)
    }

    pub async fn list(&self, app_id: Option<&str>) -> Result<Vec<Source>, SourceError> {
        Ok(self.store.sources(app_id).await?)
    }

    /// Start (`true`) or stop; `false` when there is no such source.
    pub async fn set_enabled(&self, app_id: &str, id: &str, enabled: bool) -> Result<Option<Source>, SourceError> {
        if self.get(app_id, id).await?.is_none() {
            return Ok(None);
        }
        self.store.set_source_enabled(id, enabled).await?;
        Ok(self.store.source(id).await?)
    }

    /// Deletes the source and the stream made for it.
    pub async fn delete(&self, app_id: &str, id: &str) -> Result<bool, SourceError> {
        let Some(source) = self.get(app_id, id).await? else {
            return Ok(false);
        };
        self.store.delete_source(id).await?;
        self.control.delete_stream(&source.stream_id).await?;
        Ok(true)
    }
}

struct Running {
    handle: PullHandle,
    /// What was last written to the store, to write only changes.
    persisted: Option<(PullState, Option<String>)>,
}

/// Keeps a puller per enabled source (server only).
#[derive(Clone)]
pub struct SourceRunner {
    sources: Sources,
    gate: Arc<dyn PublishGate>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    wake: Arc<Notify>,
}

impl SourceRunner {
    pub fn new(sources: Sources, gate: Arc<dyn PublishGate>) -> Self {
        Self {
            sources,
            gate,
            running: Arc::default(),
            wake: Arc::default(),
        }
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Reconcile now (after an API change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The live status of a running source.
    pub fn status(&self, id: &str) -> Option<PullStatus> {
        self.running.lock().get(id).map(|r| r.handle.status())
    }

    /// The stored source with the running status on top.
    pub fn view(&self, source: &Source) -> SourceView {
        let mut view = source.view();
        if let Some(status) = self.status(&source.id) {
            view.state = state_name(status.state).into();
            view.last_error = status.last_error.clone();
            view.attempts = Some(status.attempts);
            view.connections = Some(status.connections);
            let age = status.since.elapsed().as_millis() as i64;
            view.state_at = super::clock::unix_ms() - age;
        } else if !source.enabled {
            view.state = state_name(PullState::Stopped).into();
        }
        view
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "pull sources: reconciling with the store failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
        }
        let stopping: Vec<Running> = self.running.lock().drain().map(|(_, r)| r).collect();
        for running in stopping {
            running.handle.stop().await;
        }
    }

    async fn reconcile(&self) -> Result<(), SourceError> {
        let wanted: HashMap<String, Source> = self
            .sources
            .list(None)
            .await?
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| (s.id.clone(), s))
            .collect();
        let stopped: Vec<(String, Running)> = {
            let mut running = self.running.lock();
            let gone: Vec<String> = running.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect();
            gone.into_iter()
                .filter_map(|id| running.remove(&id).map(|r| (id, r)))
                .collect()
        };
        for (id, running) in stopped {
            tracing::info!(source = %id, "pull source stopped");
            running.handle.stop().await;
            let _ = self.persist(&id, PullState::Stopped, None).await;
        }
        for (id, source) in &wanted {
            if self.running.lock().contains_key(id) {
                continue;
            }
            tracing::info!(source = %id, stream_id = %source.stream_id, url = %rtsp::redact(source.url.expose()), "pull source starting");
            let settings = PullSettings::new(
                source.url.expose().to_owned(),
                source.transport,
                source.stream_key.expose().to_owned(),
            );
            let handle = rtsp::spawn_pull(id, settings, self.gate.clone());
            self.running.lock().insert(
                id.clone(),
                Running {
                    handle,
                    persisted: None,
                },
            );
        }
        // The CLI reads states from the store.
        let changed: Vec<(String, PullState, Option<String>)> = {
            let mut running = self.running.lock();
            running
                .iter_mut()
                .filter_map(|(id, r)| {
                    let status = r.handle.status();
                    let now = (status.state, status.last_error.clone());
                    (r.persisted.as_ref() != Some(&now)).then(|| {
                        r.persisted = Some(now);
                        (id.clone(), status.state, status.last_error)
                    })
                })
                .collect()
        };
        for (id, state, error) in changed {
            self.persist(&id, state, error.as_deref()).await?;
        }
        Ok(())
    }

    async fn persist(&self, id: &str, state: PullState, error: Option<&str>) -> Result<(), SourceError> {
        self.sources
            .store
            .set_source_state(id, state_name(state), error, super::clock::unix_ms())
            .await?;
        Ok(())
    }
}

pub fn state_name(state: PullState) -> &'static str {
    match state {
        PullState::Connecting => "connecting",
        PullState::Live => "live",
        PullState::Retrying => "retrying",
        PullState::Stopped => "stopped",
    }
}
