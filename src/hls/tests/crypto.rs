use super::*;
use crate::hls::crypto::decrypt;
use crate::hls::HlsError;

fn key_id_of(line: &str) -> u64 {
    let uri = attr(line, "URI").expect("key uri");
    uri.strip_prefix("../key/")
        .and_then(|rest| rest.split_once(".key?token=t"))
        .and_then(|(id, _)| id.parse().ok())
        .expect("key uri shape")
}

fn iv_bytes(line: &str) -> [u8; 16] {
    let iv = attr(line, "IV").expect("iv");
    let raw = hex::decode(iv.trim_start_matches("0x")).expect("hex iv");
    raw.try_into().expect("16 bytes")
}

#[tokio::test]
async fn parts_and_segments_decrypt_with_the_playlist_key_and_iv() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000)], "v1");
    h.segments(3, 5);
    h.parts(2, true);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    let sent = h.sent["720p"].clone();

    let mut current: Option<([u8; 16], [u8; 16])> = None;
    let mut part_index = 0;
    let mut segment_clear: Vec<u8> = Vec::new();
    let mut segments_checked = 0;
    for line in lines(&text) {
        if line.starts_with("#EXT-X-KEY:") {
            let key = h.packager.key(key_id_of(line)).expect("key retained");
            current = Some((key, iv_bytes(line)));
            segment_clear.clear();
        } else if line.starts_with("#EXT-X-PART:") {
            let (key, iv) = current.expect("KEY precedes parts");
            let uri = attr(line, "URI").expect("uri");
            let (msn, part) = uri.trim_end_matches(".mp4").split_once('.').expect("msn.part");
            let data = h
                .packager
                .part("720p", msn.parse().expect("msn"), part.parse().expect("part"))
                .await
                .expect("part");
            let clear = &sent[part_index];
            assert_eq!(
                data.len(),
                (clear.len() / 16 + 1) * 16,
                "each part is padded on its own"
            );
            assert_eq!(decrypt(&key, &iv, &data).expect("part decrypts"), clear.to_vec());
            segment_clear.extend_from_slice(clear);
            part_index += 1;
        } else if !line.starts_with('#') {
            let (key, iv) = current.expect("KEY precedes segment");
            let msn: u64 = line.trim_end_matches(".mp4").parse().expect("segment msn");
            let data = h.packager.segment("720p", msn).await.expect("segment");
            assert_eq!(decrypt(&key, &iv, &data).expect("segment decrypts"), segment_clear);
            segments_checked += 1;
        }
    }
    assert_eq!((part_index, segments_checked), (17, 3));
    let map = tagged(&text, "#EXT-X-MAP:")[0];
    let init_id: u64 = attr(map, "URI")
        .and_then(|u| u.trim_start_matches("init").trim_end_matches(".mp4").parse().ok())
        .expect("init id");
    assert_eq!(
        h.packager.init("720p", init_id).expect("init").as_ref(),
        b"init:720p:v1",
        "init stays clear"
    );
}

#[tokio::test]
async fn keys_rotate_at_segment_boundaries_and_live_while_used() {
    let mut h = Harness::new(settings());
    h.start_session(vec![video("720p", 720, 2_500_000), audio()], "v1");
    h.segments(1, 5);
    let first_msn = media_sequence(&h.playlist("720p", PlaylistRequest::default()).await);
    h.segments(29, 5);
    let text = h.playlist("720p", PlaylistRequest::default()).await;
    let m = media_sequence(&text);
    let key_ids: Vec<u64> = tagged(&text, "#EXT-X-KEY:").iter().map(|l| key_id_of(l)).collect();
    let expected: Vec<u64> = (m..m + key_ids.len() as u64).map(|msn| msn / 3).collect();
    assert_eq!(key_ids, expected, "a new key every 3 sequence numbers");
    let audio_keys: Vec<u64> = tagged(&h.playlist("audio", PlaylistRequest::default()).await, "#EXT-X-KEY:")
        .iter()
        .map(|l| key_id_of(l))
        .collect();
    assert_eq!(audio_keys, key_ids, "renditions share keys per sequence number");
    let distinct: std::collections::BTreeSet<[u8; 16]> = key_ids
        .iter()
        .map(|id| h.packager.key(*id).expect("listed key"))
        .collect();
    assert_eq!(
        distinct.len(),
        key_ids.iter().collect::<std::collections::BTreeSet<_>>().len()
    );

    // The oldest retained segment (past the listing, in its grace period) keeps its key.
    let mut oldest = None;
    for msn in first_msn..m {
        if h.packager.segment("720p", msn).await.is_ok() {
            oldest = Some(msn);
            break;
        }
    }
    let oldest = oldest.expect("retained");
    assert!(oldest < m && oldest > first_msn + 3);
    assert!(h.packager.key(oldest / 3).is_ok());
    assert!(matches!(h.packager.key(oldest / 3 - 1), Err(HlsError::NotFound(_))));
    assert!(h.packager.stats().keys_retained <= 7);
}
