use std::collections::BTreeSet;

use super::*;
use crate::hls::HlsError;

fn stored(h: &Harness, prefix: &str) -> BTreeSet<String> {
    h.store
        .objects
        .lock()
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

fn held(h: &Harness, rendition: &str) -> BTreeSet<String> {
    let state = h.packager.state.lock();
    let r = state.rendition(rendition).expect("rendition");
    r.all_files()
        .into_iter()
        .map(|f| format!("s1/{rendition}/{f}"))
        .collect()
}

#[tokio::test]
async fn memory_and_store_stay_bounded_over_a_long_stream() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(600, 5);
    let stats = h.packager.stats();
    for r in &stats.renditions {
        assert_eq!(r.segments_published, 599);
        assert_eq!(r.parts_published, 3000);
        // 6 listed + 7 in their grace period + the open one.
        assert_eq!(r.retained_segments, 14, "{r:?}");
        assert!(r.retained_bytes < 14 * 2 * 5 * 220, "{r:?}");
    }
    assert!(stats.keys_retained <= 6, "{stats:?}");
    h.packagers.writer.flush(Duration::from_secs(10)).await;
    for name in ["720p", "audio"] {
        let in_store = stored(&h, &format!("s1/{name}/"));
        assert_eq!(in_store, held(&h, name), "the store mirrors exactly what is retained");
    }
    let w = h.packagers.writer_stats();
    assert_eq!(w.dropped, 0);
    // Deleted, or (queued faster than the store took them) never sent at all.
    assert!(w.deletes + w.cancelled > 2 * 580, "old segments were deleted: {w:?}");
}

#[tokio::test]
async fn store_gets_typed_objects_and_loses_them_on_remove() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(2, 5);
    h.packagers.writer.flush(Duration::from_secs(10)).await;
    let m = media_sequence(&h.playlist("720p", PlaylistRequest::default()).await);
    let served = h.packager.segment("720p", m).await.expect("served");
    {
        let objects = h.store.objects.lock();
        let (segment, meta) = objects.get(&format!("s1/720p/{m}.mp4")).expect("segment stored");
        assert_eq!(*segment, served);
        assert_eq!(meta.content_type, "video/mp4");
        let (_, meta) = objects.get(&format!("s1/audio/{m}.mp4")).expect("audio segment stored");
        assert_eq!(meta.content_type, "audio/mp4");
        assert!(
            !objects.keys().any(|k| k.ends_with(&format!("{m}.3.mp4"))),
            "parts are served from memory or cut from their segment, never stored"
        );
        assert!(objects
            .keys()
            .any(|k| k.starts_with("s1/720p/init") && k.ends_with(".mp4")));
        assert!(!objects.keys().any(|k| k.contains("key")), "keys never reach the store");
    }
    h.packagers.remove("s1");
    assert!(h.packagers.get("s1").is_none());
    h.packagers.writer.flush(Duration::from_secs(10)).await;
    assert!(stored(&h, "s1/").is_empty());
}

#[tokio::test]
async fn renditions_leaving_the_ladder_are_deleted() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), video("360p", 360, 600_000)], "v1");
    h.segments(2, 5);
    h.packager.finish_session();
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(1, 5);
    h.packagers.writer.flush(Duration::from_secs(10)).await;
    assert!(stored(&h, "s1/360p/").is_empty());
    assert!(h.packager.segment("360p", 0).await.is_err());
    let master = h.packager.master_playlist("").expect("master");
    assert!(!master.contains("360p"));
    assert_eq!(stored(&h, "s1/720p/"), held(&h, "720p"));
}

#[tokio::test]
async fn a_full_buffer_drops_and_counts_instead_of_blocking() {
    let mut h = Harness::new(HlsSettings {
        store_buffer_bytes: 1,
        store_concurrency: 1,
        ..settings()
    });
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    // No await in between: the writer task cannot drain, the queue holds one op.
    h.segments(3, 5);
    assert!(h.packagers.writer_stats().dropped > 0);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    assert_eq!(segment_uris(&text).len(), 2, "packaging went on regardless");
}

/// A store whose puts wait for `open` (or fail), and whose reads may fail.
struct SlowStore {
    inner: MemStore,
    gate: tokio::sync::Semaphore,
    fail_puts: std::sync::atomic::AtomicBool,
    /// Puts fail as a store that is down would (retryable).
    down: std::sync::atomic::AtomicBool,
    fail_gets: std::sync::atomic::AtomicBool,
    parts: std::sync::atomic::AtomicBool,
}

impl Default for SlowStore {
    fn default() -> Self {
        Self {
            inner: MemStore::default(),
            gate: tokio::sync::Semaphore::new(0),
            fail_puts: Default::default(),
            down: Default::default(),
            parts: Default::default(),
            fail_gets: Default::default(),
        }
    }
}

impl SlowStore {
    fn open(&self) {
        self.gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

fn io_failure(key: &str) -> StorageError {
    StorageError::Io {
        path: key.to_string(),
        source: std::io::Error::other("disk on fire"),
    }
}

impl ObjectStore for SlowStore {
    fn put(&self, key: String, data: Bytes, meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let _permit = self.gate.acquire().await.map_err(|_| io_failure(&key))?;
            if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io_failure(&key));
            }
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StorageError::Remote {
                    op: "PutObject",
                    key,
                    location: "slow://".into(),
                    retryable: true,
                    message: "connection refused".into(),
                });
            }
            self.inner.put(key, data, meta).await
        })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        self.inner.delete(keys)
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
        if self.fail_gets.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async move { Err(io_failure(&key)) });
        }
        self.inner.get(key)
    }

    fn describe(&self) -> String {
        "slow://".into()
    }

    fn stores_parts(&self) -> bool {
        self.parts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One 720p rendition over `store`: `segments` complete segments of 5 parts,
/// then 2 parts of an open one. Returns the first complete segment's msn.
fn publish_over(store: Arc<SlowStore>, segments: u64, encrypt: bool) -> (Packagers, Arc<StreamPackager>, u64) {
    publish_with(store, segments, HlsSettings { encrypt, ..settings() })
}

fn publish_with(store: Arc<SlowStore>, segments: u64, settings: HlsSettings) -> (Packagers, Arc<StreamPackager>, u64) {
    let packagers = Packagers::new(settings, store);
    let packager = packagers.stream("s1");
    assert!(packager.begin_session());
    packager
        .set_renditions(vec![video("720p", 720, 2_500_000)])
        .expect("renditions");
    packager
        .add_init("720p", Bytes::from_static(b"init:720p"))
        .expect("init");
    let origin = UNIX_EPOCH + Duration::from_secs(1_795_428_000);
    let mut first = None;
    for i in 0..segments * 5 + 2 {
        // Lengths off and on the AES block size: parts start mid-block in their segment.
        let len = 280 + (i as usize * 7) % 41;
        let data: Vec<u8> = format!("part {i};").bytes().cycle().take(len).collect();
        let chunk = CmafChunk {
            source_arrival: None,
            encoder_delay: None,
            data: Bytes::from(data),
            pts_ns: i * PART_NS,
            duration_ns: PART_NS,
            starts_segment: i % 5 == 0,
            independent: i % 5 == 0,
        };
        packager.add_chunk("720p", chunk, origin).expect("chunk");
        first = first.or_else(|| packager.state.lock().rendition("720p").map(|r| r.next_msn - 1));
    }
    (packagers, packager, first.expect("a segment"))
}

fn body_of(p: &StreamPackager, msn: u64, part: Option<usize>) -> Option<super::super::rendition::Body> {
    let state = p.state.lock();
    let segment = state.rendition("720p")?.segment(msn)?;
    match part {
        None => segment.data.clone(),
        Some(i) => segment.parts.get(i)?.data.clone(),
    }
}

fn in_memory(body: Option<super::super::rendition::Body>) -> bool {
    body.is_some_and(|b| b.bytes().is_some())
}

async fn all_parts(p: &StreamPackager, first: u64) -> Vec<Bytes> {
    let mut parts = Vec::new();
    for msn in first..first + 3 {
        for part in 0..5 {
            parts.push(p.part("720p", msn, part).await.expect("part"));
        }
    }
    parts
}

#[tokio::test]
async fn old_parts_are_cut_from_the_stored_segment_byte_for_byte() {
    for encrypt in [true, false] {
        let store = Arc::new(SlowStore::default());
        let (packagers, p, first) = publish_over(store.clone(), 3, encrypt);
        let from_memory = all_parts(&p, first).await;
        store.open();
        packagers.writer.flush(Duration::from_secs(10)).await;
        assert!(!in_memory(body_of(&p, first, Some(3))), "encrypt={encrypt}");
        assert_eq!(all_parts(&p, first).await, from_memory, "encrypt={encrypt}");
    }
}

#[tokio::test]
async fn media_is_served_from_memory_until_its_write_lands_then_from_the_store() {
    let store = Arc::new(SlowStore::default());
    let (packagers, p, first) = publish_over(store.clone(), 3, true);
    tokio::task::yield_now().await;
    // Nothing has landed: every listed object comes from memory.
    assert!(store.inner.objects.lock().is_empty());
    let segment = p.segment("720p", first).await.expect("segment from memory");
    let old_part = p.part("720p", first, 0).await.expect("part from memory");
    assert!(in_memory(body_of(&p, first, None)) && in_memory(body_of(&p, first, Some(0))));
    let held_before = p.stats().renditions[0].retained_bytes;

    store.open();
    packagers.writer.flush(Duration::from_secs(10)).await;
    // Durable now: segments and older parts left memory, the newest parts did not.
    for msn in first..first + 3 {
        assert!(!in_memory(body_of(&p, msn, None)), "segment {msn} still in memory");
    }
    assert!(!in_memory(body_of(&p, first, Some(0))));
    assert!(
        in_memory(body_of(&p, first + 3, Some(1))),
        "the newest part stays in memory"
    );
    assert!(
        in_memory(body_of(&p, first + 2, Some(4))),
        "parts within a target duration stay"
    );
    let held_after = p.stats().renditions[0].retained_bytes;
    assert!(
        held_after * 3 < held_before,
        "memory released: {held_before} -> {held_after}"
    );
    // The same bytes come back from the store (the part cut out of its segment).
    assert_eq!(p.segment("720p", first).await.expect("segment from the store"), segment);
    assert_eq!(p.part("720p", first, 0).await.expect("part from the store"), old_part);
    let key = format!("s1/720p/{first}.mp4");
    assert_eq!(
        store.inner.objects.lock().get(&key).map(|(d, _)| d.clone()),
        Some(segment)
    );

    // Gone from the store (left retention meanwhile): a clean NotFound.
    store.inner.delete(vec![key]).await.expect("delete");
    assert!(matches!(p.segment("720p", first).await, Err(HlsError::NotFound(_))));
    assert!(matches!(p.part("720p", first, 0).await, Err(HlsError::NotFound(_))));
    // A store that cannot be read: unavailable, not a panic and not a 404.
    store.fail_gets.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        p.part("720p", first + 1, 0).await,
        Err(HlsError::Unavailable(_))
    ));
    assert!(p.part("720p", first + 3, 1).await.is_ok(), "memory still serves");
}

#[tokio::test]
async fn failed_writes_keep_media_in_memory() {
    let store = Arc::new(SlowStore::default());
    store.fail_puts.store(true, std::sync::atomic::Ordering::SeqCst);
    store.open();
    let (packagers, p, first) = publish_over(store.clone(), 3, true);
    packagers.writer.flush(Duration::from_secs(10)).await;
    assert!(packagers.writer_stats().failed > 0);
    for msn in first..first + 3 {
        assert!(in_memory(body_of(&p, msn, None)), "segment {msn} must stay in memory");
        assert!(p.segment("720p", msn).await.is_ok());
    }
    assert!(p.part("720p", first, 0).await.is_ok());
}

#[tokio::test]
async fn a_removed_stream_ignores_late_write_completions() {
    let store = Arc::new(SlowStore::default());
    let (packagers, p, _) = publish_over(store.clone(), 2, true);
    let weak = Arc::downgrade(&p);
    drop(p);
    packagers.remove("s1");
    // Pending writes do not keep the packager alive, and landing later is harmless.
    assert!(weak.upgrade().is_none());
    store.open();
    packagers.writer.flush(Duration::from_secs(10)).await;
    assert!(packagers.get("s1").is_none());
    assert_eq!(packagers.writer_stats().failed, 0);
}

#[tokio::test]
async fn a_store_that_is_down_is_retried_until_every_object_lands() {
    let store = Arc::new(SlowStore::default());
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    store.open();
    let (packagers, p, first) = publish_with(
        store.clone(),
        3,
        HlsSettings {
            store_retry: (Duration::from_millis(5), Duration::from_millis(20)),
            ..settings()
        },
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(packagers.writer_stats().retries > 0, "failures are retried");
    assert!(in_memory(body_of(&p, first, None)), "memory serves meanwhile");
    assert!(!p.uploads_settled(), "the stream's uploads are pending");
    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    packagers.writer.flush(Duration::from_secs(10)).await;
    assert!(p.uploads_settled());
    let stats = packagers.writer_stats();
    assert_eq!(
        (stats.failed, stats.dropped, stats.buffered_bytes),
        (0, 0, 0),
        "{stats:?}"
    );
    for msn in first..first + 3 {
        assert!(
            store.inner.objects.lock().contains_key(&format!("s1/720p/{msn}.mp4")),
            "segment {msn} landed"
        );
    }
}

#[tokio::test]
async fn cdn_mode_lists_only_what_the_store_holds_at_absolute_urls() {
    let store = Arc::new(SlowStore::default());
    let (packagers, p, first) = publish_with(
        store.clone(),
        2,
        HlsSettings {
            cdn_base_url: Some("https://cdn.example/m/".into()),
            ..settings()
        },
    );
    // Nothing has reached the store: nothing is listed yet, so the request
    // waits for the first part and gives up.
    assert!(matches!(
        p.media_playlist("720p", PlaylistRequest::default(), "").await,
        Err(HlsError::Unavailable(_))
    ));
    store.open();
    packagers.writer.flush(Duration::from_secs(10)).await;
    let text = p
        .media_playlist("720p", PlaylistRequest::default(), "")
        .await
        .expect("playlist");
    let segments = segment_uris(&text);
    assert_eq!(segments.len(), 2, "{text}");
    // No preload hint: a bucket cannot hold a request until the part exists.
    assert!(!text.contains("PRELOAD-HINT"), "{text}");
    assert!(
        text.contains(&format!("\nhttps://cdn.example/m/s1/720p/{first}.mp4\n")),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-MAP:URI=\"https://cdn.example/m/s1/720p/init"),
        "{text}"
    );
    assert!(
        text.contains(&format!("URI=\"https://cdn.example/m/s1/720p/{}.1.mp4\"", first + 2)),
        "open segment parts listed: {text}"
    );
    // Every listed object is in the store, parts included.
    let objects = store.inner.objects.lock();
    for uri in text.lines().filter_map(|l| l.split("https://cdn.example/m/").nth(1)) {
        let key = uri.trim_end_matches('"').split('"').next().unwrap_or("");
        assert!(objects.contains_key(key), "listed {key} is not in the store");
    }
}
