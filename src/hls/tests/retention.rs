use std::collections::BTreeSet;

use super::*;

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
    h.packagers.writer.idle().await;
    for name in ["720p", "audio"] {
        let in_store = stored(&h, &format!("s1/{name}/"));
        assert_eq!(in_store, held(&h, name), "the store mirrors exactly what is retained");
    }
    let w = h.packagers.writer_stats();
    assert_eq!(w.dropped, 0);
    assert!(w.deletes > 2 * 580 * 6, "old segments and parts were deleted: {w:?}");
}

#[tokio::test]
async fn store_gets_typed_objects_and_loses_them_on_remove() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(2, 5);
    h.packagers.writer.idle().await;
    let m = media_sequence(&h.playlist("720p", PlaylistRequest::default()).await);
    {
        let objects = h.store.objects.lock();
        let (segment, meta) = objects.get(&format!("s1/720p/{m}.mp4")).expect("segment stored");
        assert_eq!(*segment, h.packager.segment("720p", m).expect("served"));
        assert_eq!(meta.content_type, "video/mp4");
        let (_, meta) = objects.get(&format!("s1/audio/{m}.3.mp4")).expect("part stored");
        assert_eq!(meta.content_type, "audio/mp4");
        assert!(objects
            .keys()
            .any(|k| k.starts_with("s1/720p/init") && k.ends_with(".mp4")));
        assert!(!objects.keys().any(|k| k.contains("key")), "keys never reach the store");
    }
    h.packagers.remove("s1");
    assert!(h.packagers.get("s1").is_none());
    h.packagers.writer.idle().await;
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
    h.packagers.writer.idle().await;
    assert!(stored(&h, "s1/360p/").is_empty());
    assert!(h.packager.segment("360p", 0).is_err());
    let master = h.packager.master_playlist("").expect("master");
    assert!(!master.contains("360p"));
    assert_eq!(stored(&h, "s1/720p/"), held(&h, "720p"));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let mut h = Harness::new(HlsSettings {
        store_queue: 1,
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
