//! The spine end to end: ffmpeg publishes over RTMP, the real server
//! transcodes and packages, ffmpeg and hls.js play the signed, encrypted
//! LL-HLS output.

mod common;

use std::time::{Duration, Instant};

use common::checks::{check_media_playlist, decrypt, iv_of, top_level_boxes};
use common::playlist::{attrs, media_uris, path_of, tag_lines, MediaPlaylist};
use common::{ffmpeg_decode, get_text, wait_until_live, Server, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1080p_publish_becomes_an_encrypted_ll_hls_ladder_every_rendition_decodes() {
    let server = Server::start();
    let stream = server.create_stream("ladder", None);
    let started = Instant::now();
    let mut publisher = Source::hd1080().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    eprintln!(
        "first segment of every rendition listed {:?} after publish start",
        started.elapsed()
    );

    // Master: ≥ 3 video renditions with everything an ABR player needs, highest first.
    let variants = tag_lines(&master, "#EXT-X-STREAM-INF");
    assert!(
        variants.len() >= 3,
        "master lists {} renditions:\n{master}",
        variants.len()
    );
    let mut heights = Vec::new();
    for v in &variants {
        let a = attrs(v);
        for key in ["BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "RESOLUTION", "FRAME-RATE"] {
            assert!(a.contains_key(key), "variant without {key}: {v}");
        }
        assert!(
            a["CODECS"].contains("avc1.") && a["CODECS"].contains("mp4a.40.2"),
            "{v}"
        );
        heights.push(
            a["RESOLUTION"]
                .split('x')
                .nth(1)
                .and_then(|h| h.parse::<u32>().ok())
                .expect("height"),
        );
    }
    assert_eq!(
        heights.first(),
        Some(&1080),
        "the passthrough source rung leads: {master}"
    );
    assert!(
        heights.windows(2).all(|w| w[0] > w[1]),
        "variants ordered by height: {heights:?}"
    );
    let uris = media_uris(&master);
    assert!(
        uris.iter().all(|u| u.contains("token=")),
        "child playlist URIs carry the token:\n{master}"
    );
    assert_eq!(
        tag_lines(&master, "#EXT-X-MEDIA").len(),
        1,
        "one audio rendition group:\n{master}"
    );

    // Every media playlist carries the full LL-HLS tag set, consistently.
    let mut server_controls = Vec::new();
    for uri in &uris {
        let (status, text) = get_text(&stream.url(&server.base(), uri)).await;
        assert_eq!(status, 200, "{uri}");
        server_controls.push(check_media_playlist(uri, &text, uris.len(), true));
    }
    assert!(
        server_controls.windows(2).all(|w| w[0] == w[1]),
        "SERVER-CONTROL differs: {server_controls:?}"
    );

    // Decrypt one segment and one part of the top rendition with the key the playlist names.
    let top = &uris[0];
    let top_dir = path_of(top).trim_end_matches("index.m3u8").to_owned();
    let (_, text) = get_text(&stream.url(&server.base(), top)).await;
    let pl = MediaPlaylist::parse(&text);
    let seg = pl.segments.last().expect("segment");
    let key_line = seg.key_line.as_deref().expect("key");
    let key_uri = attrs(key_line)["URI"].clone();
    let key_url = stream.url(&server.base(), &format!("{top_dir}{key_uri}"));
    let key = common::get_bytes(&key_url).await;
    assert_eq!(key.len(), 16, "{key_url}");
    let seg_bytes = common::get_bytes(&stream.url(&server.base(), &format!("{top_dir}{}", seg.uri))).await;
    let clear = decrypt(&key, &iv_of(key_line), &seg_bytes);
    let boxes = top_level_boxes(&clear);
    assert!(
        boxes.contains(&"moof".to_string()) && boxes.contains(&"mdat".to_string()),
        "segment boxes {boxes:?}"
    );
    let part = seg
        .parts
        .first()
        .expect("listed segment keeps its parts near the live edge");
    let part_bytes = common::get_bytes(&stream.url(&server.base(), &format!("{top_dir}{}", part.uri))).await;
    assert_eq!(part_bytes.len() % 16, 0, "parts are padded AES-128-CBC on their own");
    let clear_part = decrypt(&key, &iv_of(key_line), &part_bytes);
    assert!(
        top_level_boxes(&clear_part).contains(&"moof".to_string()),
        "part decrypts to CMAF"
    );
    assert!(
        clear.starts_with(&clear_part),
        "a segment holds exactly its parts' samples, in order"
    );

    // ffmpeg decodes 10 s of every rendition through the encrypted playlists, all at once.
    let decoders: Vec<_> = uris
        .iter()
        .map(|uri| {
            let url = stream.url(&server.base(), uri);
            std::thread::spawn(move || (url.clone(), ffmpeg_decode(&url, 10, &[])))
        })
        .collect();
    for d in decoders {
        let (url, (ok, stderr)) = d.join().expect("decoder thread");
        assert!(
            ok && stderr.trim().is_empty(),
            "ffmpeg decoding {url} failed:\n{stderr}"
        );
    }
    assert!(publisher.is_running(), "publisher died: {}", publisher.log());
}
