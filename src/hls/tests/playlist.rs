use super::*;
use crate::hls::SkipRequest;

fn iv_of(line: &str) -> String {
    attr(line, "IV").expect("IV")
}

#[tokio::test]
async fn live_playlist_has_every_tag_in_order() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(3, 5);
    h.parts(2, true);
    let text = h.playlist("720p", PlaylistRequest::default()).await;

    let m = media_sequence(&text);
    let maps = tagged(&text, "#EXT-X-MAP:");
    assert_eq!(maps.len(), 1, "{text}");
    let init_uri = attr(maps[0], "URI").expect("map uri");
    assert!(init_uri.starts_with("init") && init_uri.ends_with(".mp4"));
    let keys = tagged(&text, "#EXT-X-KEY:");
    assert_eq!(keys.len(), 4, "one KEY per segment, the open one included");
    let ivs: Vec<String> = keys.iter().map(|k| iv_of(k)).collect();
    for (i, iv) in ivs.iter().enumerate() {
        assert!(iv.starts_with("0x") && iv.len() == 34, "{iv}");
        assert!(!ivs[..i].contains(iv), "IVs are random per segment");
    }

    let mut expected = String::from(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.702,HOLD-BACK=3,CAN-SKIP-UNTIL=6\n\
         #EXT-X-PART-INF:PART-TARGET=0.234\n",
    );
    expected += &format!("#EXT-X-MEDIA-SEQUENCE:{m}\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n");
    for s in 0..4u64 {
        let msn = m + s;
        if s == 0 {
            expected += &format!("#EXT-X-MAP:URI=\"{init_uri}\"\n");
        }
        expected += &format!(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"../key/{}.key?token=t\",IV={}\n",
            msn / 3,
            ivs[s as usize]
        );
        expected += &format!("#EXT-X-PROGRAM-DATE-TIME:2026-11-23T10:00:0{s}.000Z\n");
        let parts = if s < 3 { 5 } else { 2 };
        for p in 0..parts {
            let independent = if p == 0 { ",INDEPENDENT=YES" } else { "" };
            expected += &format!("#EXT-X-PART:DURATION=0.2,URI=\"{msn}.{p}.mp4\"{independent}\n");
        }
        if s < 3 {
            expected += &format!("#EXTINF:1,\n{msn}.mp4\n");
        }
    }
    expected += &format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.2.mp4\"\n", m + 3);
    expected += &format!(
        "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN={},LAST-PART=1\n",
        m + 3
    );
    assert_eq!(text, expected);

    // The audio playlist reports the video rendition, with the same SERVER-CONTROL.
    let audio_text = h.playlist("audio", PlaylistRequest::default()).await;
    assert!(audio_text.contains(&format!(
        "#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN={},LAST-PART=1\n",
        m + 3
    )));
    assert_eq!(
        tagged(&audio_text, "#EXT-X-SERVER-CONTROL:"),
        tagged(&text, "#EXT-X-SERVER-CONTROL:")
    );
}

#[tokio::test]
async fn parts_are_listed_for_three_target_durations_and_kept_for_six() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(8, 5);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    let m = media_sequence(&text);
    let first = m - 1; // the very first segment left the 6-segment window
    assert_eq!(
        segment_uris(&text),
        (m..m + 6).map(|s| format!("{s}.mp4")).collect::<Vec<_>>()
    );
    // Timeline end 8 s, TD 1: parts listed for segments ending at >= 5 s.
    let listed_part_segments: Vec<u64> = tagged(&text, "#EXT-X-PART:")
        .iter()
        .filter_map(|l| attr(l, "URI"))
        .filter_map(|u| u.split('.').next().and_then(|s| s.parse().ok()))
        .fold(Vec::new(), |mut acc, s| {
            if acc.last() != Some(&s) {
                acc.push(s);
            }
            acc
        });
    assert_eq!(listed_part_segments, vec![first + 4, first + 5, first + 6, first + 7]);
    // Part files older than 6 TD are gone, younger ones stay fetchable.
    assert!(h.packager.part("720p", first, 0).await.is_err());
    assert!(h.packager.part("720p", first + 1, 0).await.is_ok());
    // The segment that left the playlist is still served (RFC 8216 §6.2.2).
    assert!(h.packager.segment("720p", first).await.is_ok());
    assert!(
        h.packager.segment("720p", first + 7).await.is_err(),
        "open segment is not complete"
    );
}

#[tokio::test]
async fn delta_update_skips_old_segments_but_keeps_map_and_key() {
    let mut h = Harness::new(HlsSettings {
        window_segments: 12,
        ..settings()
    });
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(12, 5);
    let full = h.playlist("720p", PlaylistRequest::default()).await;
    let delta = h
        .playlist(
            "720p",
            PlaylistRequest {
                skip: Some(SkipRequest::Yes),
                ..PlaylistRequest::default()
            },
        )
        .await;
    assert_eq!(media_sequence(&delta), media_sequence(&full));
    // End at 12 s, CAN-SKIP-UNTIL 6: the six segments starting before 6 s go.
    assert_eq!(tagged(&delta, "#EXT-X-SKIP:"), vec!["#EXT-X-SKIP:SKIPPED-SEGMENTS=6"]);
    assert_eq!(segment_uris(&delta), segment_uris(&full)[6..].to_vec());

    let delta_lines = lines(&delta);
    let skip_at = delta_lines
        .iter()
        .position(|l| l.starts_with("#EXT-X-SKIP"))
        .expect("skip");
    assert!(delta_lines[skip_at + 1].starts_with("#EXT-X-MAP:URI=\"init"), "{delta}");
    assert!(
        delta_lines[skip_at + 2].starts_with("#EXT-X-KEY:METHOD=AES-128"),
        "{delta}"
    );
    // From the seventh segment's KEY on, the delta is the full playlist.
    let full_lines = lines(&full);
    let seventh_key = full_lines
        .iter()
        .filter(|l| l.starts_with("#EXT-X-KEY"))
        .nth(6)
        .expect("7th key");
    let from = full_lines.iter().position(|l| l == seventh_key).expect("position");
    assert_eq!(&delta_lines[skip_at + 2..], &full_lines[from..]);

    let v2 = h
        .playlist(
            "720p",
            PlaylistRequest {
                skip: Some(SkipRequest::V2),
                ..PlaylistRequest::default()
            },
        )
        .await;
    assert!(v2.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6,RECENTLY-REMOVED-DATERANGES=\"\"\n"));
}

#[tokio::test]
async fn short_playlists_skip_nothing() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(3, 5);
    let delta = h
        .playlist(
            "720p",
            PlaylistRequest {
                skip: Some(SkipRequest::Yes),
                ..PlaylistRequest::default()
            },
        )
        .await;
    assert!(!delta.contains("EXT-X-SKIP"));
    assert_eq!(delta, h.playlist("720p", PlaylistRequest::default()).await);
}

#[tokio::test]
async fn master_lists_the_ladder_with_the_child_query() {
    let mut h = Harness::new(settings());
    assert_eq!(h.packager.master_playlist(""), None);
    h.start_session(
        vec![video("360p", 360, 600_000), video("720p", 720, 2_500_000), audio()],
        "v1",
    );
    let master = h.packager.master_playlist("token=abc").expect("master");
    let uris: Vec<&str> = lines(&master).into_iter().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uris, vec!["720p/index.m3u8?token=abc", "360p/index.m3u8?token=abc"]);
    assert!(master.contains("URI=\"audio/index.m3u8?token=abc\""));
    assert!(master.contains("AUDIO=\"audio\""));
}

#[tokio::test]
async fn clear_output_has_no_key_tags() {
    let mut h = Harness::new(HlsSettings {
        encrypt: false,
        ..settings()
    });
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(2, 5);
    h.parts(1, true);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    assert!(!text.contains("EXT-X-KEY"));
    let m = media_sequence(&text);
    let sent = h.sent["720p"].clone();
    assert_eq!(h.packager.part("720p", m, 1).await.expect("part"), sent[1]);
    let whole: Vec<u8> = sent[..5].iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(h.packager.segment("720p", m).await.expect("segment").to_vec(), whole);
}
