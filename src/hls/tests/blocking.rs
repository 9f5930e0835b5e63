use std::time::Duration;

use tokio::task::JoinHandle;

use super::*;
use crate::hls::HlsError;

fn spawn_playlist(h: &Harness, msn: Option<u64>, part: Option<u64>) -> JoinHandle<Result<String, HlsError>> {
    let packager = h.packager.clone();
    tokio::spawn(async move { packager.media_playlist("720p", req(msn, part), "").await })
}

/// True when the task is still held after a short while.
async fn still_held<T>(task: &JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(40)).await;
    !task.is_finished()
}

async fn finish<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("woken in time")
        .expect("task ran")
}

/// Two complete segments (m, m+1) and segment m+2 open with parts 0 and 1.
async fn live(h: &mut Harness) -> u64 {
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(2, 5);
    h.parts(2, true);
    media_sequence(&h.playlist("720p", PlaylistRequest::default()).await)
}

#[tokio::test]
async fn blocking_reload_wakes_on_the_next_part() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let task = spawn_playlist(&h, Some(m + 2), Some(2));
    assert!(still_held(&task).await);
    h.chunk("720p", false);
    let text = finish(task).await.expect("playlist");
    assert!(text.contains(&format!("URI=\"{}.2.mp4\"", m + 2)));
    assert!(text.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.3.mp4\"", m + 2)));
}

#[tokio::test]
async fn a_part_past_the_segment_end_waits_for_the_next_segment() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let task = spawn_playlist(&h, Some(m + 2), Some(7));
    for _ in 0..3 {
        h.chunk("720p", false);
    }
    assert!(still_held(&task).await, "parts 2..4 of m+2 do not satisfy part 7");
    h.chunk("720p", true);
    let text = finish(task).await.expect("playlist");
    assert!(text.contains(&format!("URI=\"{}.0.mp4\",INDEPENDENT=YES", m + 3)));
    assert!(text.contains(&format!("#EXTINF:1,\n{}.mp4\n", m + 2)));
}

#[tokio::test]
async fn msn_alone_waits_for_the_complete_segment() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let task = spawn_playlist(&h, Some(m + 2), None);
    h.chunk("720p", false);
    assert!(still_held(&task).await);
    h.chunk("720p", true);
    let text = finish(task).await.expect("playlist");
    assert!(text.contains(&format!("{}.mp4\n", m + 2)));
}

#[tokio::test]
async fn invalid_directives_are_rejected_at_once() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let bad = |r: Result<String, HlsError>| matches!(r, Err(HlsError::BadRequest(_)));
    assert!(bad(h.packager.media_playlist("720p", req(None, Some(1)), "").await));
    assert!(bad(h.packager.media_playlist("720p", req(Some(m + 5), None), "").await));
    // Last part is (m+2, 1). 200 ms parts at 30 fps advertise PART-TARGET 0.234
    // (one frame of slack), which allows ceil(3 / 0.234) = 13 parts of advance.
    assert!(bad(h
        .packager
        .media_playlist("720p", req(Some(m + 2), Some(15)), "")
        .await));
    let ok = spawn_playlist(&h, Some(m + 2), Some(14));
    assert!(still_held(&ok).await, "14 is within the advance limit");
    assert!(matches!(
        h.packager.media_playlist("nope", PlaylistRequest::default(), "").await,
        Err(HlsError::NotFound(_))
    ));
}

#[tokio::test]
async fn nothing_in_time_is_a_503() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let started = std::time::Instant::now();
    let result = h.packager.media_playlist("720p", req(Some(m + 3), Some(0)), "").await;
    assert!(matches!(result, Err(HlsError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn endlist_ignores_directives_and_wakes_held_requests() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let task = spawn_playlist(&h, Some(m + 2), Some(4));
    assert!(still_held(&task).await);
    h.packager.end_stream();
    let text = finish(task).await.expect("playlist");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("PRELOAD-HINT"));
    assert!(
        text.contains(&format!("#EXTINF:0.4,\n{}.mp4\n", m + 2)),
        "open segment finished: {text}"
    );
    let again = h
        .packager
        .media_playlist("720p", req(Some(m + 4), Some(3)), "")
        .await
        .expect("no wait");
    assert_eq!(again, text);
}

#[tokio::test]
async fn preload_hinted_part_is_held_until_complete() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let packager = h.packager.clone();
    let task = tokio::spawn(async move { packager.part("720p", m + 2, 2).await });
    assert!(still_held(&task).await);
    h.chunk("720p", false);
    let bytes = finish(task).await.expect("part");
    assert_eq!(bytes, h.packager.part("720p", m + 2, 2).await.expect("listed now"));
    // Neither listed nor hinted: 404 at once.
    assert!(matches!(
        h.packager.part("720p", m + 2, 5).await,
        Err(HlsError::NotFound(_))
    ));
}

#[tokio::test]
async fn hinted_part_that_never_comes_is_not_found() {
    let mut h = Harness::new(settings());
    let m = live(&mut h).await;
    let packager = h.packager.clone();
    let task = tokio::spawn(async move { packager.part("720p", m + 2, 2).await });
    assert!(still_held(&task).await);
    h.chunk("720p", true); // closes m+2 with two parts
    assert!(matches!(finish(task).await, Err(HlsError::NotFound(_))));
}

#[tokio::test]
async fn first_playlist_waits_for_the_first_part() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    let task = spawn_playlist(&h, None, None);
    assert!(still_held(&task).await);
    h.chunk("720p", true);
    let text = finish(task).await.expect("playlist");
    assert!(text.contains(".0.mp4\",INDEPENDENT=YES"));
}
