//! Copies media objects to the [`ObjectStore`] in the background. Packaging
//! never waits for the store.
//!
//! - **Retries.** A put or delete that fails with a retryable error (5xx,
//!   throttling, timeout, connection refused) goes back in the queue and the
//!   whole writer backs off (200 ms doubling to 5 s): a store that is down is
//!   down for every object, and hammering it helps nobody. The first success
//!   ends the back-off, and the queue drains in order.
//! - **Bounded memory.** Queued bytes are capped (`buffer_bytes`). When a new
//!   object does not fit, the oldest queued *parts* are dropped first: a part's
//!   bytes are also in its parent segment, and a part that never reached the
//!   bucket is never listed there (see `Rendition::listed_edge`). Only if
//!   parts are not enough are the oldest segments dropped. Every drop is
//!   logged and counted (`pulse_storage_uploads_dropped_total{kind}`).
//! - **Ordering.** A delete of an object still queued cancels its put; a
//!   delete of an object being put waits for that put, so a late put never
//!   resurrects a deleted object.
//! - A put may carry a callback that runs once the copy is durable, so the
//!   packager can release memory, or list the object (CDN mode).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::storage::{ObjectMeta, ObjectStore, StorageError};

/// Runs on a writer task once a put landed (never when it was dropped or refused).
pub(crate) type OnStored = Box<dyn FnOnce() + Send>;

/// What an object is, for the drop order and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Part,
    Segment,
    Init,
}

impl ObjectKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Part => "part",
            ObjectKind::Segment => "segment",
            ObjectKind::Init => "init",
        }
    }
}

/// Store copy counters (shared by all streams of one writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    pub puts: u64,
    pub deletes: u64,
    /// Puts dropped because the buffer was full (or no runtime ran the writer).
    pub dropped: u64,
    /// Operations the store refused for good.
    pub failed: u64,
    /// Attempts that failed and were queued again.
    pub retries: u64,
    /// Queued puts cancelled because their object left retention first.
    pub cancelled: u64,
    /// Bytes queued and not yet durable.
    pub buffered_bytes: u64,
}

/// What a flush left behind when its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unflushed {
    /// Puts queued or in flight (and deletes being sent).
    pub objects: usize,
    /// Keys waiting for a DeleteObjects.
    pub deletes: usize,
    pub bytes: u64,
}

impl Unflushed {
    pub fn is_empty(&self) -> bool {
        self.objects == 0 && self.deletes == 0
    }
}

/// How a writer uses its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterSettings {
    pub concurrency: usize,
    pub buffer_bytes: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

struct Put {
    key: String,
    data: Bytes,
    meta: ObjectMeta,
    kind: ObjectKind,
    on_stored: Option<OnStored>,
    queued_at: Instant,
    /// The owner's count of its objects not yet finished (see `PendingUploads`).
    pending: Option<PendingUploads>,
}

/// Dropped exactly when the writer is done with it: stored, refused,
/// dropped or cancelled (a retry keeps it).
impl Drop for Put {
    fn drop(&mut self) {
        if let Some(pending) = &self.pending {
            pending.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How many of one owner's (a stream's) objects the writer has not finished
/// with, so the owner can tell when all its uploads settled.
#[derive(Clone, Default)]
pub(crate) struct PendingUploads(Arc<AtomicU64>);

impl PendingUploads {
    pub(crate) fn is_zero(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

enum Op {
    Put(Put),
    Delete(Vec<String>),
}

#[derive(Default)]
struct Queue {
    /// Oldest first; a retried put goes back to the front.
    puts: VecDeque<Put>,
    deletes: VecDeque<String>,
    buffered: usize,
    /// Keys being put right now, and how many deletes wait for each.
    in_flight: HashMap<String, bool>,
    /// No attempt before this (the store failed recently).
    paused_until: Option<Instant>,
    failures_in_a_row: u32,
    /// Operations taken by a worker and not finished.
    busy: usize,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    puts: AtomicU64,
    deletes: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    cancelled: AtomicU64,
}

struct Shared {
    store: Arc<dyn ObjectStore>,
    settings: WriterSettings,
    queue: Mutex<Queue>,
    wake: Notify,
    counters: Counters,
}

#[derive(Clone)]
pub(crate) struct StoreWriter {
    shared: Arc<Shared>,
    /// Workers run while any handle lives (they hold a `Weak` to it).
    /// Counting `Arc<Shared>` instead raced with the spawn loop: a worker
    /// that started before its siblings were spawned saw "only workers
    /// left" and quit, and when all did, nothing was ever uploaded.
    _owners: Arc<Owners>,
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

/// The writer handles' share: see `StoreWriter::_owners`.
struct Owners;

/// DeleteObjects takes up to 1000 keys: one request per retention pass of
/// many streams.
const DELETE_BATCH: usize = 1000;

impl StoreWriter {
    /// Starts the writer's workers on the current tokio runtime.
    #[cfg(test)]
    pub(crate) fn spawn(store: Arc<dyn ObjectStore>, settings: WriterSettings) -> Self {
        Self::spawn_on(store, settings, tokio::runtime::Handle::try_current().ok())
    }

    /// Starts the writer's workers on `runtime`: the server gives them one of
    /// their own, so that thousands of viewers' requests queued on the main
    /// runtime cannot slow each upload's round trips (measured: 100 streams
    /// and 5,000 blocking players on 2 cores held uploads 5-10 s behind, and
    /// the unstored segments, 2.4 GB, in memory).
    pub(crate) fn spawn_on(
        store: Arc<dyn ObjectStore>,
        settings: WriterSettings,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            settings,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            counters: Counters::default(),
        });
        let owners = Arc::new(Owners);
        match runtime {
            Some(handle) => {
                for _ in 0..settings.concurrency.max(1) {
                    handle.spawn(worker(shared.clone(), Arc::downgrade(&owners)));
                }
            }
            None => {
                tracing::error!("hls store writer created outside a tokio runtime; objects will not be stored");
                shared.queue.lock().closed = true;
            }
        }
        Self {
            shared,
            _owners: owners,
        }
    }

    pub(crate) fn stores_parts(&self) -> bool {
        self.shared.store.stores_parts()
    }

    pub(crate) fn describe(&self) -> String {
        self.shared.store.describe()
    }

    /// Queues a copy of the object, then calls `on_stored` once the object is durable. A dropped,
    /// cancelled or refused put never calls it, so the caller keeps serving
    /// from memory (or never lists the object).
    pub(crate) fn put_then(
        &self,
        key: String,
        data: Bytes,
        meta: ObjectMeta,
        kind: ObjectKind,
        pending: &PendingUploads,
        on_stored: OnStored,
    ) {
        pending.0.fetch_add(1, Ordering::SeqCst);
        self.enqueue(Put {
            key,
            data,
            meta,
            kind,
            on_stored: Some(on_stored),
            queued_at: Instant::now(),
            pending: Some(pending.clone()),
        });
    }

    /// Reads an object back from the store.
    pub(crate) async fn get(&self, key: String) -> Result<Option<Bytes>, StorageError> {
        self.shared.store.get(key).await
    }

    pub(crate) fn delete(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let mut queue = self.shared.queue.lock();
        for key in keys {
            // Still queued: never send it.
            if let Some(at) = queue.puts.iter().position(|p| p.key == key) {
                if let Some(put) = queue.puts.remove(at) {
                    queue.sub_buffered(put.data.len());
                    self.shared.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            // Being put: delete once that put finished.
            if let Some(wants_delete) = queue.in_flight.get_mut(&key) {
                *wants_delete = true;
                continue;
            }
            queue.deletes.push_back(key);
        }
        drop(queue);
        self.shared.wake.notify_one();
    }

    fn enqueue(&self, put: Put) {
        let limit = self.shared.settings.buffer_bytes.max(1);
        let mut dropped = Vec::new();
        {
            let mut queue = self.shared.queue.lock();
            if queue.closed {
                dropped.push((put.kind, put.key.clone()));
            } else {
                let len = put.data.len();
                // Parts first, oldest first; then anything, oldest first.
                while queue.buffered + len > limit {
                    let victim = queue
                        .puts
                        .iter()
                        .position(|p| p.kind == ObjectKind::Part)
                        .or(if queue.puts.is_empty() { None } else { Some(0) });
                    let Some(victim) = victim.and_then(|at| queue.puts.remove(at)) else {
                        break;
                    };
                    queue.sub_buffered(victim.data.len());
                    dropped.push((victim.kind, victim.key.clone()));
                }
                if queue.buffered + len > limit {
                    dropped.push((put.kind, put.key.clone()));
                } else {
                    queue.add_buffered(len);
                    queue.puts.push_back(put);
                }
            }
        }
        for (kind, key) in dropped {
            self.report_drop(kind, &key);
        }
        self.shared.wake.notify_one();
    }

    fn report_drop(&self, kind: ObjectKind, key: &str) {
        let dropped = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(metrics) = super::metrics::metrics() {
            metrics.uploads_dropped.with_label_values(&[kind.as_str()]).inc();
        }
        // The first and then every 100th, so a store that is down for long
        // cannot flood the log.
        if dropped == 1 || dropped % 100 == 0 {
            tracing::warn!(
                kind = kind.as_str(),
                key,
                dropped,
                store = %self.shared.store.describe(),
                "store upload buffer full; oldest queued object dropped"
            );
        }
    }

    /// Waits until nothing is queued or in flight, or `timeout` passed;
    /// what is still queued then (a shutdown logs it rather than losing it
    /// silently). Retries keep their back-off, so a store that is down
    /// holds the flush until the timeout.
    pub(crate) async fn flush(&self, timeout: Duration) -> Unflushed {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = {
                let queue = self.shared.queue.lock();
                Unflushed {
                    objects: queue.puts.len() + queue.busy,
                    deletes: queue.deletes.len(),
                    bytes: queue.buffered as u64,
                }
            };
            if left.is_empty() || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            puts: c.puts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            buffered_bytes: self.shared.queue.lock().buffered as u64,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let queue = self.queue.get_mut();
        let queued = queue.buffered;
        queue.sub_buffered(queued);
        if !queue.puts.is_empty() {
            tracing::warn!(
                queued = queue.puts.len(),
                store = %self.store.describe(),
                "store writer stopped with objects not yet stored"
            );
        }
    }
}

impl Queue {
    // The gauge is process-wide (every writer adds to it), so it moves by deltas.
    fn add_buffered(&mut self, len: usize) {
        self.buffered += len;
        if let Some(metrics) = super::metrics::metrics() {
            metrics.upload_buffer_bytes.add(i64::try_from(len).unwrap_or(i64::MAX));
        }
    }

    fn sub_buffered(&mut self, len: usize) {
        let len = len.min(self.buffered);
        self.buffered -= len;
        if let Some(metrics) = super::metrics::metrics() {
            metrics.upload_buffer_bytes.sub(i64::try_from(len).unwrap_or(i64::MAX));
        }
    }
}

/// Takes the next operation, waiting while there is none or the store is
/// in back-off. None when the writer is gone.
async fn next_op(shared: &Arc<Shared>, owners: &Weak<Owners>) -> Option<Op> {
    loop {
        let wait = {
            let mut queue = shared.queue.lock();
            let now = Instant::now();
            match queue.paused_until {
                Some(until) if until > now => Some(until - now),
                _ => {
                    if !queue.deletes.is_empty() {
                        let n = queue.deletes.len().min(DELETE_BATCH);
                        let keys: Vec<String> = queue.deletes.drain(..n).collect();
                        queue.busy += 1;
                        return Some(Op::Delete(keys));
                    }
                    if let Some(put) = queue.puts.pop_front() {
                        queue.sub_buffered(put.data.len());
                        queue.in_flight.insert(put.key.clone(), false);
                        queue.busy += 1;
                        return Some(Op::Put(put));
                    }
                    None
                }
            }
        };
        // Every writer handle gone and nothing queued: stop.
        if wait.is_none() && owners.strong_count() == 0 {
            return None;
        }
        match wait {
            Some(pause) => tokio::time::sleep(pause).await,
            None => {
                // Woken by new work; the timeout notices a writer that went away.
                let _ = tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await;
            }
        }
    }
}

async fn worker(shared: Arc<Shared>, owners: Weak<Owners>) {
    while let Some(op) = next_op(&shared, &owners).await {
        match op {
            Op::Put(put) => run_put(&shared, put).await,
            Op::Delete(keys) => run_delete(&shared, keys).await,
        }
        shared.queue.lock().busy -= 1;
        // Another worker may be waiting for what this one freed up.
        shared.wake.notify_one();
    }
}

fn backoff(shared: &Shared, queue: &mut Queue) -> Duration {
    queue.failures_in_a_row = queue.failures_in_a_row.saturating_add(1);
    let exponent = queue.failures_in_a_row.saturating_sub(1).min(16);
    let pause = shared
        .settings
        .retry_initial
        .saturating_mul(1u32 << exponent)
        .min(shared.settings.retry_max);
    queue.paused_until = Some(Instant::now() + pause);
    pause
}

fn succeeded(queue: &mut Queue) {
    queue.failures_in_a_row = 0;
    queue.paused_until = None;
}

async fn run_put(shared: &Arc<Shared>, mut put: Put) {
    let result = shared
        .store
        .put(put.key.clone(), put.data.clone(), put.meta.clone())
        .await;
    let mut queue = shared.queue.lock();
    let wants_delete = queue.in_flight.remove(&put.key).unwrap_or(false);
    match result {
        Ok(()) => {
            succeeded(&mut queue);
            if wants_delete {
                queue.deletes.push_back(put.key.clone());
            }
            drop(queue);
            shared.counters.puts.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = super::metrics::metrics() {
                metrics.upload_lag.observe(put.queued_at.elapsed().as_secs_f64());
            }
            if !wants_delete {
                if let Some(on_stored) = put.on_stored.take() {
                    on_stored();
                }
            }
        }
        Err(error) if error.is_retryable() && !wants_delete => {
            let pause = backoff(shared, &mut queue);
            let failures = queue.failures_in_a_row;
            queue.add_buffered(put.data.len());
            let key = put.key.clone();
            queue.puts.push_front(put);
            drop(queue);
            shared.counters.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = super::metrics::metrics() {
                metrics.upload_retries.inc();
            }
            // Once when the store goes away, then about once a minute.
            if failures == 1 || failures % 12 == 0 {
                tracing::warn!(key, %error, failures, retry_in_ms = pause.as_millis() as u64, "store put failed; will retry");
            }
        }
        Err(error) => {
            drop(queue);
            if wants_delete {
                // The object left retention while we tried: nothing to keep.
                shared.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = super::metrics::metrics() {
                metrics.uploads_failed.inc();
            }
            tracing::error!(key = put.key, kind = put.kind.as_str(), %error, "store refused an object");
        }
    }
}

async fn run_delete(shared: &Arc<Shared>, keys: Vec<String>) {
    let count = keys.len() as u64;
    let first = keys.first().cloned().unwrap_or_default();
    match shared.store.delete(keys.clone()).await {
        Ok(()) => {
            succeeded(&mut shared.queue.lock());
            shared.counters.deletes.fetch_add(count, Ordering::Relaxed);
        }
        Err(error) if error.is_retryable() => {
            let mut queue = shared.queue.lock();
            backoff(shared, &mut queue);
            for key in keys.into_iter().rev() {
                queue.deletes.push_front(key);
            }
            drop(queue);
            shared.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(first, count, %error, "store delete failed; will retry");
        }
        Err(error) => {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(first, count, %error, "store delete refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;

    /// A store that is down (every put fails, retryably) until told otherwise.
    #[derive(Default)]
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        stored: Mutex<Vec<String>>,
        deleted: Mutex<Vec<String>>,
    }

    impl ObjectStore for Flaky {
        fn put(&self, key: String, _data: Bytes, _meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(StorageError::Remote {
                        op: "PutObject",
                        key,
                        location: "flaky".into(),
                        retryable: true,
                        message: "connection refused".into(),
                    });
                }
                self.stored.lock().push(key);
                Ok(())
            })
        }

        fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
            self.deleted.lock().extend(keys);
            Box::pin(async { Ok(()) })
        }

        fn get(&self, _key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
            Box::pin(async { Ok(None) })
        }

        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn writer(store: Arc<Flaky>, buffer_bytes: usize) -> StoreWriter {
        StoreWriter::spawn(
            store,
            WriterSettings {
                concurrency: 1,
                buffer_bytes,
                retry_initial: Duration::from_millis(5),
                retry_max: Duration::from_millis(20),
            },
        )
    }

    fn put(w: &StoreWriter, key: &str, len: usize, kind: ObjectKind, landed: &Arc<Mutex<Vec<String>>>) {
        let landed = landed.clone();
        let name = key.to_string();
        w.put_then(
            key.to_string(),
            Bytes::from(vec![0u8; len]),
            media_meta(false),
            kind,
            &PendingUploads::default(),
            Box::new(move || landed.lock().push(name)),
        );
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_parts_first_and_keeps_segments() {
        let store = Arc::new(Flaky::default());
        store.down.store(true, Ordering::SeqCst);
        let w = writer(store.clone(), 1000);
        let landed = Arc::new(Mutex::new(Vec::new()));
        put(&w, "s/v/init1.mp4", 100, ObjectKind::Init, &landed);
        put(&w, "s/v/1.0.mp4", 200, ObjectKind::Part, &landed);
        put(&w, "s/v/1.1.mp4", 200, ObjectKind::Part, &landed);
        put(&w, "s/v/1.mp4", 400, ObjectKind::Segment, &landed);
        // 900 queued (one may be in flight); 300 more do not fit: parts go, oldest first.
        put(&w, "s/v/2.0.mp4", 300, ObjectKind::Part, &landed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = w.stats();
        assert!(stats.dropped >= 1, "{stats:?}");
        assert!(stats.buffered_bytes <= 1000, "{stats:?}");
        assert!(stats.retries > 0, "the store being down is retried: {stats:?}");
        store.down.store(false, Ordering::SeqCst);
        assert!(w.flush(Duration::from_secs(10)).await.is_empty());
        let stored = store.stored.lock().clone();
        assert!(
            stored.contains(&"s/v/1.mp4".to_string()),
            "the segment survived: {stored:?}"
        );
        assert!(stored.contains(&"s/v/init1.mp4".to_string()), "{stored:?}");
        assert!(
            !stored.contains(&"s/v/1.0.mp4".to_string()),
            "the oldest part was dropped: {stored:?}"
        );
        assert_eq!(
            *landed.lock(),
            stored,
            "callbacks run for exactly what landed, in order"
        );
        assert_eq!(w.stats().buffered_bytes, 0);
    }

    /// Workers that start while their siblings are still being spawned
    /// must not take themselves for orphans: every new writer uploads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_new_writer_keeps_its_workers() {
        for round in 0..200 {
            let store = Arc::new(Flaky::default());
            let w = StoreWriter::spawn(
                store.clone(),
                WriterSettings {
                    concurrency: 8,
                    buffer_bytes: 1 << 20,
                    retry_initial: Duration::from_millis(5),
                    retry_max: Duration::from_millis(20),
                },
            );
            // Let every worker reach its first wait before anything is queued.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let landed = Arc::new(Mutex::new(Vec::new()));
            put(&w, "s/v/1.mp4", 10, ObjectKind::Segment, &landed);
            let left = w.flush(Duration::from_secs(3)).await;
            assert!(left.is_empty(), "writer {round} never uploaded: {left:?}");
            assert_eq!(*store.stored.lock(), vec!["s/v/1.mp4".to_string()]);
        }
    }

    #[tokio::test]
    async fn deleting_a_queued_object_cancels_its_upload() {
        let store = Arc::new(Flaky::default());
        store.down.store(true, Ordering::SeqCst);
        let w = writer(store.clone(), 1 << 20);
        let landed = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            put(&w, &format!("s/v/{i}.mp4"), 10, ObjectKind::Segment, &landed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.delete((0..5).map(|i| format!("s/v/{i}.mp4")).collect());
        store.down.store(false, Ordering::SeqCst);
        assert!(w.flush(Duration::from_secs(10)).await.is_empty());
        // Whatever was in flight landed and was then deleted; the rest never went.
        let stored = store.stored.lock().clone();
        let deleted = store.deleted.lock().clone();
        assert!(stored.len() <= 1, "{stored:?}");
        for key in &stored {
            assert!(deleted.contains(key), "{key} was put and never deleted");
        }
        assert!(landed.lock().is_empty(), "a deleted object is never reported as stored");
        assert!(w.stats().cancelled >= 4, "{:?}", w.stats());
    }
}
