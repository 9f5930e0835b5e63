use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::hls::HlsError;
use crate::media::LadderEvent;

fn line_before<'a>(text: &'a str, needle: &str) -> &'a str {
    let all = lines(text);
    let at = all.iter().position(|l| l.contains(needle)).expect("needle present");
    all[at - 1]
}

fn discontinuities(text: &str) -> usize {
    lines(text).iter().filter(|l| **l == "#EXT-X-DISCONTINUITY").count()
}

#[tokio::test]
async fn sessions_continue_numbering_with_a_discontinuity() {
    let mut h = Harness::new(HlsSettings {
        window_segments: 4,
        ..settings()
    });
    let ladder = vec![video("720p", 720, 2_500_000), audio()];
    h.start_session(ladder.clone(), "v1");
    assert!(!h.packager.is_active());
    h.segments(3, 5);
    assert!(h.packager.is_active());
    h.parts(2, true);
    h.packager.finish_session();
    assert!(!h.packager.is_active());
    let first = h.playlist("720p", PlaylistRequest::default()).await;
    let m = media_sequence(&first);
    assert!(
        first.contains(&format!("#EXTINF:0.4,\n{}.mp4\n", m + 3)),
        "session end closes the open segment"
    );
    assert!(first.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.0.mp4\"", m + 4)));

    // Same init bytes: same MAP, but a discontinuity and the new wall clock.
    h.origin += Duration::from_secs(60);
    h.start_session(ladder.clone(), "v1");
    h.segments(2, 5);
    let second = h.playlist("720p", PlaylistRequest::default()).await;
    assert_eq!(media_sequence(&second), m + 1, "window 4: segment m slid out");
    assert_eq!(discontinuities(&second), 1);
    assert_eq!(tagged(&second, "#EXT-X-MAP:").len(), 1);
    let pdt_of_m4 = line_before(&second, &format!("URI=\"{}.0.mp4\"", m + 4));
    assert_eq!(pdt_of_m4, "#EXT-X-PROGRAM-DATE-TIME:2026-11-23T10:01:00.000Z");
    let all = lines(&second);
    let pdt_at = all.iter().position(|l| *l == pdt_of_m4).expect("pdt");
    assert!(all[pdt_at - 1].starts_with("#EXT-X-KEY:"));
    assert_eq!(all[pdt_at - 2], "#EXT-X-DISCONTINUITY");
    assert_eq!(
        segment_uris(&second).last().map(String::as_str),
        Some(format!("{}.mp4", m + 4).as_str())
    );

    // New init bytes: discontinuity plus a new MAP (before the KEY).
    h.packager.finish_session();
    h.start_session(ladder, "v2");
    h.segments(1, 5);
    let third = h.playlist("720p", PlaylistRequest::default()).await;
    let maps = tagged(&third, "#EXT-X-MAP:");
    assert_eq!(maps.len(), 2, "{third}");
    assert_ne!(maps[0], maps[1]);
    assert_eq!(discontinuities(&third), 2);
    let all = lines(&third);
    let map_at = all.iter().position(|l| *l == maps[1]).expect("map");
    assert_eq!(
        all[map_at - 2..map_at],
        ["#EXT-X-DISCONTINUITY", "#EXT-X-KEY:METHOD=NONE"]
    );
    assert!(all[map_at + 1].starts_with("#EXT-X-KEY:METHOD=AES-128"));

    // Both discontinuities slide out of the window: the sequence counts them.
    h.segments(8, 5);
    let later = h.playlist("720p", PlaylistRequest::default()).await;
    assert!(!later.contains("#EXT-X-DISCONTINUITY\n"));
    assert!(later.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"));
    assert!(media_sequence(&later) > m + 6);
}

#[tokio::test]
async fn init_change_mid_segment_starts_a_new_segment() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(1, 5);
    h.parts(2, true);
    h.packager
        .add_init("720p", Bytes::from_static(b"init:720p:other"))
        .expect("init");
    h.chunk("720p", false);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    let m = media_sequence(&text);
    assert!(text.contains(&format!("#EXTINF:0.4,\n{}.mp4\n", m + 1)));
    let maps = tagged(&text, "#EXT-X-MAP:");
    assert_eq!(maps.len(), 2);
    let all = lines(&text);
    let map_at = all.iter().position(|l| *l == maps[1]).expect("map");
    // The key above must not apply to the clear init (ffmpeg would decrypt it).
    assert_eq!(all[map_at - 1], "#EXT-X-KEY:METHOD=NONE");
    assert_eq!(all[map_at - 2], "#EXT-X-DISCONTINUITY");
    assert!(
        all[map_at + 1].starts_with("#EXT-X-KEY:METHOD=AES-128"),
        "a key again for the next segment"
    );
    assert!(text.contains(&format!("URI=\"{}.0.mp4\"", m + 2)));
}

#[tokio::test]
async fn a_new_session_clears_endlist() {
    let mut h = Harness::new(settings());
    let ladder = vec![video("720p", 720, 2_500_000)];
    h.start_session(ladder.clone(), "v1");
    h.segments(2, 5);
    h.packager.end_stream();
    assert!(h
        .playlist("720p", PlaylistRequest::default())
        .await
        .ends_with("#EXT-X-ENDLIST\n"));
    h.start_session(ladder, "v1");
    h.chunk("720p", true);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    assert!(!text.contains("ENDLIST"));
    assert!(text.contains("#EXT-X-PRELOAD-HINT"));
}

#[tokio::test]
async fn run_session_consumes_ladder_events() {
    let h = Harness::new(settings());
    let packager = h.packagers.stream("s2");
    let (tx, rx) = mpsc::channel(64);
    let session = tokio::spawn(packager.clone().run_session(rx, h.origin));
    let send = |event| {
        let tx = tx.clone();
        async move { tx.send(event).await.expect("session running") }
    };
    send(LadderEvent::Renditions(vec![video("720p", 720, 2_500_000)])).await;
    send(LadderEvent::Init {
        rendition: 0,
        data: Bytes::from_static(b"init"),
    })
    .await;
    for i in 0..12u64 {
        let chunk = CmafChunk {
            source_arrival: None,
            encoder_delay: None,
            data: Bytes::from(vec![i as u8; 100]),
            pts_ns: i * PART_NS,
            duration_ns: PART_NS,
            starts_segment: i % 5 == 0,
            independent: i % 5 == 0,
        };
        send(LadderEvent::Chunk { rendition: 0, chunk }).await;
    }
    send(LadderEvent::Warning("slow".into())).await;
    send(LadderEvent::Ended(Ok(()))).await;
    tokio::time::timeout(Duration::from_secs(2), session)
        .await
        .expect("session ends")
        .expect("joined")
        .expect("ok");
    assert!(!packager.is_active());
    let text = packager
        .media_playlist("720p", PlaylistRequest::default(), "")
        .await
        .expect("playlist");
    assert_eq!(segment_uris(&text).len(), 3, "{text}");
    assert!(text.contains("#EXTINF:0.4,"), "last segment closed at session end");
}

#[tokio::test]
async fn run_session_rejects_events_out_of_contract() {
    let h = Harness::new(settings());
    let packager = h.packagers.stream("s3");
    let (tx, rx) = mpsc::channel(8);
    let session = tokio::spawn(packager.clone().run_session(rx, h.origin));
    tx.send(LadderEvent::Renditions(vec![video("720p", 720, 2_500_000)]))
        .await
        .expect("send");
    let chunk = CmafChunk {
        source_arrival: None,
        encoder_delay: None,
        data: Bytes::from_static(b"x"),
        pts_ns: 0,
        duration_ns: PART_NS,
        starts_segment: true,
        independent: true,
    };
    tx.send(LadderEvent::Chunk { rendition: 0, chunk }).await.expect("send");
    let result = tokio::time::timeout(Duration::from_secs(2), session)
        .await
        .expect("ends")
        .expect("joined");
    assert!(matches!(result, Err(HlsError::Protocol { .. })), "{result:?}");
}

#[tokio::test]
async fn a_cancelled_session_closes_its_open_segment() {
    let h = Harness::new(settings());
    let packager = h.packagers.stream("s4");
    let (tx, rx) = mpsc::channel(64);
    let session = tokio::spawn(packager.clone().run_session(rx, h.origin));
    tx.send(LadderEvent::Renditions(vec![video("720p", 720, 2_500_000)]))
        .await
        .expect("send");
    tx.send(LadderEvent::Init {
        rendition: 0,
        data: Bytes::from_static(b"init"),
    })
    .await
    .expect("send");
    for i in 0..3u64 {
        let chunk = CmafChunk {
            source_arrival: None,
            encoder_delay: None,
            data: Bytes::from(vec![1; 50]),
            pts_ns: i * PART_NS,
            duration_ns: PART_NS,
            starts_segment: i == 0,
            independent: i == 0,
        };
        tx.send(LadderEvent::Chunk { rendition: 0, chunk }).await.expect("send");
    }
    // Let the session task take the events; then a blocking request waits for the third part.
    for _ in 0..100 {
        if packager.master_playlist("").is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let first = packager.media_playlist("720p", PlaylistRequest::default(), "").await;
    let m = media_sequence(&first.expect("playlist"));
    packager
        .media_playlist("720p", req(Some(m), Some(2)), "")
        .await
        .expect("third part");
    session.abort();
    assert!(session.await.expect_err("aborted").is_cancelled());
    let text = packager
        .media_playlist("720p", PlaylistRequest::default(), "")
        .await
        .expect("playlist");
    assert!(text.contains(&format!("#EXTINF:0.6,\n{m}.mp4\n")), "{text}");
    drop(tx);
}
