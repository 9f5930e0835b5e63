use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::settings::HlsSettings;
use super::stream::StreamPackager;
use super::writer::{StoreWriter, WriterStats};
use crate::storage::ObjectStore;

/// Every stream's packager, sharing one settings value and one store writer.
/// Cheap to clone.
#[derive(Clone)]
pub struct Packagers {
    settings: Arc<HlsSettings>,
    pub(crate) writer: StoreWriter,
    streams: Arc<RwLock<HashMap<String, Arc<StreamPackager>>>>,
}

/// Per-stream choices over the shared [`HlsSettings`] (an app's settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub encrypt: Option<bool>,
    pub key_rotation_segments: Option<u64>,
}

impl StreamOptions {
    fn apply(self, shared: &Arc<HlsSettings>) -> Arc<HlsSettings> {
        let encrypt = self.encrypt.unwrap_or(shared.encrypt);
        let key_rotation_segments = self.key_rotation_segments.unwrap_or(shared.key_rotation_segments);
        if encrypt == shared.encrypt && key_rotation_segments == shared.key_rotation_segments {
            return shared.clone();
        }
        Arc::new(HlsSettings {
            encrypt,
            key_rotation_segments,
            ..(**shared).clone()
        })
    }
}

impl Packagers {
    /// Must be called inside a tokio runtime (it starts the store writer task).
    pub fn new(settings: HlsSettings, store: Arc<dyn ObjectStore>) -> Self {
        let writer = StoreWriter::spawn(store, settings.store_queue, settings.store_concurrency);
        Self {
            settings: Arc::new(settings),
            writer,
            streams: Arc::default(),
        }
    }

    pub fn settings(&self) -> &HlsSettings {
        &self.settings
    }

    /// The stream's packager, created on first use.
    pub fn stream(&self, stream_id: &str) -> Arc<StreamPackager> {
        self.stream_with(stream_id, StreamOptions::default())
    }

    /// The stream's packager, created on first use with `options` over the
    /// shared settings. An existing packager keeps the options it was made
    /// with: a reconnecting publisher continues the same encrypted timeline.
    pub fn stream_with(&self, stream_id: &str, options: StreamOptions) -> Arc<StreamPackager> {
        if let Some(existing) = self.get(stream_id) {
            return existing;
        }
        let settings = options.apply(&self.settings);
        self.streams
            .write()
            .entry(stream_id.to_string())
            .or_insert_with(|| {
                // The packager hands store-write callbacks a weak handle to itself.
                Arc::new_cyclic(|this| {
                    StreamPackager::new(
                        stream_id.to_string(),
                        settings.clone(),
                        self.writer.clone(),
                        this.clone(),
                    )
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
        };
        assert!(Arc::ptr_eq(&same.apply(&shared), &shared));
        let app = StreamOptions {
            encrypt: Some(false),
            key_rotation_segments: Some(3),
        }
        .apply(&shared);
        assert!(!app.encrypt);
        assert_eq!(app.key_rotation_segments, 3);
        assert_eq!(app.part_target, shared.part_target);
        assert_eq!(app.window_segments, shared.window_segments);
    }
}
