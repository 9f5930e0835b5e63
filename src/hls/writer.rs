//! Copies media objects to the [`ObjectStore`] from a bounded background
//! queue. Packaging never waits for the store: when the queue is full the
//! operation is dropped, logged and counted. A put may carry a callback that
//! runs once the copy is durable, so the packager can release its memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::storage::{ObjectMeta, ObjectStore};

/// Runs on the writer task once a put landed (never when it failed).
pub(crate) type OnStored = Box<dyn FnOnce() + Send>;

enum StoreOp {
    Put {
        key: String,
        data: Bytes,
        meta: ObjectMeta,
        on_stored: Option<OnStored>,
    },
    Delete {
        keys: Vec<String>,
    },
}

/// Store copy counters (shared by all streams of a [`super::Packagers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    pub puts: u64,
    pub deletes: u64,
    /// Operations dropped because the queue was full (or no runtime ran the writer).
    pub dropped: u64,
    /// Operations the store rejected.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    /// Operations accepted into the queue, and those finished (either way);
    /// equal when the writer is idle.
    submitted: AtomicU64,
    finished: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct StoreWriter {
    tx: mpsc::Sender<StoreOp>,
    counters: Arc<Counters>,
    /// Read side: objects whose memory was released are served from here.
    store: Arc<dyn ObjectStore>,
}

const MEDIA_META_VIDEO: ObjectMeta = ObjectMeta {
    content_type: "video/mp4",
    cache_control: "public, max-age=86400, immutable",
};
const MEDIA_META_AUDIO: ObjectMeta = ObjectMeta {
    content_type: "audio/mp4",
    cache_control: "public, max-age=86400, immutable",
};

pub(crate) fn media_meta(audio: bool) -> ObjectMeta {
    if audio {
        MEDIA_META_AUDIO
    } else {
        MEDIA_META_VIDEO
    }
}

impl StoreWriter {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn spawn(store: Arc<dyn ObjectStore>, queue: usize, concurrency: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run(store.clone(), rx, counters.clone(), concurrency.max(1)));
            }
            // The receiver is dropped: every operation counts as dropped.
            Err(_) => tracing::error!("hls store writer created outside a tokio runtime; objects will not be stored"),
        }
        Self { tx, counters, store }
    }

    pub(crate) fn put(&self, key: String, data: Bytes, meta: ObjectMeta) {
        self.send(StoreOp::Put {
            key,
            data,
            meta,
            on_stored: None,
        });
    }

    /// Like `put`, then `on_stored` once the object is durable. A dropped or
    /// failed put never calls it, so the caller keeps serving from memory.
    pub(crate) fn put_then(&self, key: String, data: Bytes, meta: ObjectMeta, on_stored: OnStored) {
        self.send(StoreOp::Put {
            key,
            data,
            meta,
            on_stored: Some(on_stored),
        });
    }

    /// Reads an object back from the store.
    pub(crate) async fn get(&self, key: String) -> Result<Option<Bytes>, crate::storage::StorageError> {
        self.store.get(key).await
    }

    pub(crate) fn delete(&self, keys: Vec<String>) {
        if !keys.is_empty() {
            self.send(StoreOp::Delete { keys });
        }
    }

    fn send(&self, op: StoreOp) {
        // Counted before sending so `finished` can never overtake it.
        self.counters.submitted.fetch_add(1, Ordering::SeqCst);
        if let Err(err) = self.tx.try_send(op) {
            self.counters.submitted.fetch_sub(1, Ordering::SeqCst);
            self.dropped(err.into_inner());
        }
    }

    fn dropped(&self, op: StoreOp) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let (kind, key) = match op {
            StoreOp::Put { key, .. } => ("put", key),
            StoreOp::Delete { keys } => ("delete", keys.into_iter().next().unwrap_or_default()),
        };
        // Log the first and then every 100th, so a stuck store cannot flood the log.
        if dropped == 1 || dropped % 100 == 0 {
            tracing::warn!(kind, key, dropped, "hls store queue full; object copy dropped");
        }
    }

    /// Waits until every accepted operation finished (tests only).
    #[cfg(test)]
    pub(crate) async fn idle(&self) {
        for _ in 0..400 {
            if self.counters.submitted.load(Ordering::SeqCst) == self.counters.finished.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            puts: self.counters.puts.load(Ordering::Relaxed),
            deletes: self.counters.deletes.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }
}

async fn run(store: Arc<dyn ObjectStore>, rx: mpsc::Receiver<StoreOp>, counters: Arc<Counters>, concurrency: usize) {
    let ops = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|op| (op, rx)) });
    ops.for_each_concurrent(concurrency, |op| {
        let store = store.clone();
        let counters = counters.clone();
        async move {
            match op {
                StoreOp::Put {
                    key,
                    data,
                    meta,
                    on_stored,
                } => match store.put(key.clone(), data, meta).await {
                    Ok(()) => {
                        counters.puts.fetch_add(1, Ordering::Relaxed);
                        if let Some(on_stored) = on_stored {
                            on_stored();
                        }
                    }
                    Err(error) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(key, %error, "hls store put failed");
                    }
                },
                StoreOp::Delete { keys } => {
                    let count = keys.len() as u64;
                    let first = keys.first().cloned().unwrap_or_default();
                    match store.delete(keys).await {
                        Ok(()) => {
                            counters.deletes.fetch_add(count, Ordering::Relaxed);
                        }
                        Err(error) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(first, count, %error, "hls store delete failed");
                        }
                    }
                }
            }
            counters.finished.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
}
