use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::recording::RecordingSink;
use super::settings::HlsSettings;
use super::stream::StreamPackager;
use super::writer::{StoreWriter, Unflushed, WriterSettings, WriterStats};
use crate::storage::ObjectStore;

/// Every stream's packager, sharing one settings value, the default store's
/// writer and one writer per other store (an app's own bucket). Cheap to clone.
#[derive(Clone)]
pub struct Packagers {
    settings: Arc<HlsSettings>,
    pub(crate) writer: StoreWriter,
    /// Writers of other stores, by [`ObjectStore::describe`].
    writers: Arc<Mutex<HashMap<String, StoreWriter>>>,
    recorder: Option<Arc<dyn RecordingSink>>,
    streams: Arc<RwLock<HashMap<String, Arc<StreamPackager>>>>,
    /// Where store writers run (see [`Packagers::new_on`]).
    store_runtime: Option<tokio::runtime::Handle>,
}

/// Per-stream choices over the shared [`HlsSettings`] (an app's settings).
#[derive(Clone, Default)]
pub struct StreamOptions {
    pub encrypt: Option<bool>,
    pub key_rotation_segments: Option<u64>,
    /// Keep the stream's segments for a recording.
    pub record: bool,
    /// CDN mode (see [`HlsSettings::cdn_base_url`]).
    pub cdn_base_url: Option<String>,
    /// The app's own store; `None`: the server's.
    pub store: Option<Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for StreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOptions")
            .field("encrypt", &self.encrypt)
            .field("key_rotation_segments", &self.key_rotation_segments)
            .field("record", &self.record)
            .field("cdn_base_url", &self.cdn_base_url)
            .field("store", &self.store.as_ref().map(|s| s.describe()))
            .finish()
    }
}

impl StreamOptions {
    fn apply(&self, shared: &Arc<HlsSettings>) -> Arc<HlsSettings> {
        let encrypt = self.encrypt.unwrap_or(shared.encrypt);
        let key_rotation_segments = self.key_rotation_segments.unwrap_or(shared.key_rotation_segments);
        let record = self.record || shared.record;
        let cdn_base_url = self.cdn_base_url.clone().or_else(|| shared.cdn_base_url.clone());
        if encrypt == shared.encrypt
            && key_rotation_segments == shared.key_rotation_segments
            && record == shared.record
            && cdn_base_url == shared.cdn_base_url
        {
            return shared.clone();
        }
        Arc::new(HlsSettings {
            encrypt,
            key_rotation_segments,
            record,
            cdn_base_url,
            ..(**shared).clone()
        })
    }
}

fn writer_settings(settings: &HlsSettings) -> WriterSettings {
    WriterSettings {
        concurrency: settings.store_concurrency.max(1),
        buffer_bytes: settings.store_buffer_bytes,
        retry_initial: settings.store_retry.0,
        retry_max: settings.store_retry.1,
    }
}

impl Packagers {
    /// Must be called inside a tokio runtime (it starts the store writer tasks on it).
    pub fn new(settings: HlsSettings, store: Arc<dyn ObjectStore>) -> Self {
        Self::new_on(settings, store, tokio::runtime::Handle::try_current().ok())
    }

    /// Store writers run on `store_runtime`, apart from the requests that
    /// viewers queue on the main runtime.
    pub fn new_on(
        settings: HlsSettings,
        store: Arc<dyn ObjectStore>,
        store_runtime: Option<tokio::runtime::Handle>,
    ) -> Self {
        let writer = StoreWriter::spawn_on(store, writer_settings(&settings), store_runtime.clone());
        Self {
            settings: Arc::new(settings),
            writer,
            writers: Arc::default(),
            recorder: None,
            streams: Arc::default(),
            store_runtime,
        }
    }

    /// Streams that record report their durable segments to `sink`.
    pub fn with_recorder(mut self, sink: Arc<dyn RecordingSink>) -> Self {
        self.recorder = Some(sink);
        self
    }

    pub fn settings(&self) -> &HlsSettings {
        &self.settings
    }

    /// The stream's packager, created on first use.
    pub fn stream(&self, stream_id: &str) -> Arc<StreamPackager> {
        self.stream_with(stream_id, StreamOptions::default())
    }

    fn writer_for(&self, store: Option<&Arc<dyn ObjectStore>>) -> StoreWriter {
        let Some(store) = store else {
            return self.writer.clone();
        };
        let name = store.describe();
        if name == self.writer.describe() {
            return self.writer.clone();
        }
        self.writers
            .lock()
            .entry(name)
            .or_insert_with(|| {
                StoreWriter::spawn_on(
                    store.clone(),
                    writer_settings(&self.settings),
                    self.store_runtime.clone(),
                )
            })
            .clone()
    }

    /// The stream's packager, created on first use with `options` over the
    /// shared settings. An existing packager keeps the options it was made
    /// with: a reconnecting publisher continues the same encrypted timeline.
    pub fn stream_with(&self, stream_id: &str, options: StreamOptions) -> Arc<StreamPackager> {
        if let Some(existing) = self.get(stream_id) {
            return existing;
        }
        let settings = options.apply(&self.settings);
        let writer = self.writer_for(options.store.as_ref());
        let recorder = if settings.record { self.recorder.clone() } else { None };
        self.streams
            .write()
            .entry(stream_id.to_string())
            .or_insert_with(|| {
                // The packager hands store-write callbacks a weak handle to itself.
                Arc::new_cyclic(|this| {
                    StreamPackager::new(stream_id.to_string(), settings.clone(), writer, this.clone(), recorder)
                })
            })
            .clone()
    }

    pub fn get(&self, stream_id: &str) -> Option<Arc<StreamPackager>> {
        self.streams.read().get(stream_id).cloned()
    }

    /// Forgets the stream and deletes its objects from the store.
    pub fn remove(&self, stream_id: &str) {
        let removed = self.streams.write().remove(stream_id);
        if let Some(packager) = removed {
            packager.shutdown();
        }
    }

    pub fn stream_ids(&self) -> Vec<String> {
        self.streams.read().keys().cloned().collect()
    }

    /// Waits, up to `timeout` in all, for every store's queued uploads and
    /// deletes (the server's and apps' own); what was left when time ran out.
    pub async fn flush_uploads(&self, timeout: Duration) -> Unflushed {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut writers = vec![self.writer.clone()];
        writers.extend(self.writers.lock().values().cloned());
        let mut left = Unflushed::default();
        for writer in writers {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let this = writer.flush(remaining).await;
            left.objects += this.objects;
            left.deletes += this.deletes;
            left.bytes += this.bytes;
        }
        left
    }

    /// Counters of the server's store (apps' own stores are not included).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_override_only_what_they_name() {
        let shared = Arc::new(HlsSettings::default());
        assert!(
            Arc::ptr_eq(&StreamOptions::default().apply(&shared), &shared),
            "no copy when nothing changes"
        );
        let same = StreamOptions {
            encrypt: Some(shared.encrypt),
            key_rotation_segments: Some(shared.key_rotation_segments),
            ..StreamOptions::default()
        };
        assert!(Arc::ptr_eq(&same.apply(&shared), &shared));
        let app = StreamOptions {
            encrypt: Some(false),
            key_rotation_segments: Some(3),
            record: true,
            cdn_base_url: Some("https://cdn.example/m".into()),
            store: None,
        }
        .apply(&shared);
        assert!(!app.encrypt);
        assert_eq!(app.key_rotation_segments, 3);
        assert!(app.record);
        assert_eq!(app.cdn_base_url.as_deref(), Some("https://cdn.example/m"));
        assert_eq!(app.part_target, shared.part_target);
        assert_eq!(app.window_segments, shared.window_segments);
    }
}
