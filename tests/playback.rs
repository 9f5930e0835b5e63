//! Signed playback and LL-HLS delivery rules, against the real server and a
//! real (small) ffmpeg publish: tokens, blocking reload, delta updates, and
//! hls.js in headless Chromium.

mod common;

use std::time::{Duration, Instant};

use common::playlist::{attrs, media_uris, tag_lines, MediaPlaylist};
use common::{get_text, wait_until_live, Server, Source, StreamInfo};

fn media_url(server: &Server, stream: &StreamInfo, rendition_uri: &str) -> String {
    stream.url(&server.base(), rendition_uri)
}

async fn json_error(url: &str) -> (u16, serde_json::Value, String) {
    let resp = common::http().get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_playlists_and_keys_but_not_media() {
    let server = Server::start();
    let stream = server.create_stream("tokens", Some("small"));
    let other = server.create_stream("other", Some("small"));
    let _publisher = Source::small().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let rendition = media_uris(&master).into_iter().next().expect("a rendition");
    let rendition_path = rendition.split('?').next().expect("path").to_owned();
    let dir = rendition_path.trim_end_matches("index.m3u8").to_owned();
    let (_, media) = get_text(&media_url(&server, &stream, &rendition)).await;
    let pl = MediaPlaylist::parse(&media);
    let key_uri = attrs(pl.segments[0].key_line.as_deref().expect("key"))
        .get("URI")
        .cloned()
        .expect("uri");
    let key_path = key_uri.split('?').next().expect("key path").to_owned();

    let good = stream.token();
    let wrong_stream = other.token();
    let expired = {
        // Mint a 1-second token through the CLI and let it lapse (leeway is 0 in tests).
        let out = server.cli(&["token", "--stream", &stream.id, "--ttl", "1"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).expect("utf8");
        assert!(
            url.trim()
                .starts_with(&format!("{}/live/{}/master.m3u8?token=", server.base(), stream.id)),
            "{url}"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        url.trim()
            .split_once("token=")
            .map(|(_, t)| t.to_owned())
            .expect("token")
    };
    let tampered = {
        let (head, sig) = good.rsplit_once('.').expect("jwt");
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        format!("{head}.{flipped}{}", &sig[1..])
    };

    let targets = [
        format!("{}/live/{}/master.m3u8", server.base(), stream.id),
        format!("{}/live/{}/{}", server.base(), stream.id, rendition_path),
        format!("{}/live/{}/{}{}", server.base(), stream.id, dir, key_path),
    ];
    let cases: [(&str, Option<&str>, u16, &str); 6] = [
        ("missing", None, 401, "token_missing"),
        ("malformed", Some("not-a-jwt"), 401, "token_malformed"),
        ("tampered", Some(&tampered), 401, "token_bad_signature"),
        ("expired", Some(&expired), 401, "token_expired"),
        ("wrong stream", Some(&wrong_stream), 403, "token_wrong_stream"),
        ("valid", Some(&good), 200, ""),
    ];
    for target in &targets {
        for (name, token, status, code) in &cases {
            let url = match token {
                Some(t) => format!("{target}?token={t}"),
                None => target.clone(),
            };
            if *status == 200 {
                let resp = common::http().get(&url).send().await.expect("request");
                assert_eq!(resp.status().as_u16(), 200, "{name} token on {target}");
                continue;
            }
            let (got, body, content_type) = json_error(&url).await;
            assert_eq!(got, *status, "{name} token on {target}: {body}");
            assert!(
                content_type.starts_with("application/json"),
                "{name} on {target}: {content_type}"
            );
            assert_eq!(body["error"], *code, "{name} token on {target}: {body}");
        }
    }

    // Playlists: the right type, gzip on request, CORS for players on other origins.
    let raw = reqwest::Client::builder().no_gzip().build().expect("client");
    let resp = raw
        .get(&stream.playback_url)
        .header("accept-encoding", "gzip")
        .header("origin", "https://player.example")
        .send()
        .await
        .expect("master");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(
        header("content-encoding"),
        "gzip",
        "playlists are compressed on request"
    );
    assert_eq!(header("access-control-allow-origin"), "*");
    assert!(
        header("cache-control").contains("max-age=1"),
        "short cache for live playlists"
    );

    // Parts, segments and init segments are not per-viewer: no token, cacheable, and the key is the gate.
    let seg = &pl.segments[0];
    for file in [seg.uri.clone(), seg.map_uri.clone().expect("map")] {
        let url = format!("{}/live/{}/{}{}", server.base(), stream.id, dir, file);
        let resp = common::http().get(&url).send().await.expect("media");
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        let cc = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(cc.contains("immutable"), "{url}: cache-control {cc}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let expected = if dir.starts_with("audio/") {
            "audio/mp4"
        } else {
            "video/mp4"
        };
        assert_eq!(ct, expected, "{url}: content-type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_delta_updates_and_their_error_cases() {
    let server = Server::start();
    let stream = server.create_stream("blocking", Some("small"));
    let mut publisher = Source::small().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let rendition = media_uris(&master).into_iter().next().expect("rendition");
    let url = media_url(&server, &stream, &rendition);
    let (_, text) = get_text(&url).await;
    let part_target: f64 = tag_lines(&text, "#EXT-X-PART-INF")
        .first()
        .and_then(|l| attrs(l).get("PART-TARGET").and_then(|v| v.parse().ok()))
        .expect("part target");

    // The next part: the hinted one. The response arrives when it exists, within about one part target.
    for _ in 0..5 {
        let (_, text) = get_text(&url).await;
        let hint = tag_lines(&text, "#EXT-X-PRELOAD-HINT")[0].to_owned();
        let hinted = attrs(&hint)["URI"].clone();
        let (msn, part) = hinted.trim_end_matches(".mp4").split_once('.').expect("msn.part");
        let started = Instant::now();
        let (status, body) = get_text(&format!("{url}&_HLS_msn={msn}&_HLS_part={part}")).await;
        let waited = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("URI=\"{hinted}\"")) && body.contains("#EXT-X-PART:"),
            "blocking response must list the awaited part {hinted}:\n{body}"
        );
        assert!(
            waited.as_secs_f64() <= part_target * 2.0 + 0.3,
            "waited {waited:?} for the next part (part target {part_target})"
        );
        // The hinted part itself is requestable and is held until complete.
    }

    // A preload-hinted part: request it before it exists; it arrives complete.
    let (_, text) = get_text(&url).await;
    let hint = attrs(tag_lines(&text, "#EXT-X-PRELOAD-HINT")[0])["URI"].clone();
    let dir = rendition
        .split('?')
        .next()
        .expect("path")
        .trim_end_matches("index.m3u8")
        .to_owned();
    let part_url = format!("{}/live/{}/{}{}", server.base(), stream.id, dir, hint);
    let resp = common::http().get(&part_url).send().await.expect("hinted part");
    assert_eq!(resp.status().as_u16(), 200, "{part_url}");
    let body = resp.bytes().await.expect("body");
    assert!(!body.is_empty() && body.len() % 16 == 0, "a complete encrypted part");

    // 400s, at once.
    let pl = MediaPlaylist::parse(&text);
    let last = pl.last_msn().expect("segments");
    for bad in [
        "_HLS_part=1".to_owned(),
        // `last` is the last complete segment; the open one (its parts listed) is last + 1,
        // so last + 4 is past "the last segment plus two" however one counts.
        format!("_HLS_msn={}", last + 4),
        format!("_HLS_msn={}&_HLS_part={}", last + 1, 1000),
        "_HLS_msn=abc".to_owned(),
    ] {
        let started = Instant::now();
        let (status, body) = get_text(&format!("{url}&{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(started.elapsed() < Duration::from_secs(1), "{bad} must fail at once");
    }

    // Delta update: EXT-X-SKIP, and still the MAP and KEY for what it lists.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let (status, delta) = get_text(&format!("{url}&_HLS_skip=YES")).await;
    assert_eq!(status, 200);
    let skipped = MediaPlaylist::parse(&delta);
    assert!(skipped.skipped > 0, "expected skipped segments after 14 s:\n{delta}");
    let first_segment_line = delta
        .lines()
        .position(|l| l.starts_with("#EXT-X-SKIP"))
        .expect("skip tag");
    let map_line = delta
        .lines()
        .position(|l| l.starts_with("#EXT-X-MAP"))
        .expect("delta keeps EXT-X-MAP");
    let key_line = delta
        .lines()
        .position(|l| l.starts_with("#EXT-X-KEY"))
        .expect("delta keeps EXT-X-KEY");
    assert!(map_line < key_line, "MAP before KEY in the delta:\n{delta}");
    assert!(
        first_segment_line < key_line,
        "KEY applies to the first listed segment:\n{delta}"
    );
    let full = MediaPlaylist::parse(&get_text(&url).await.1);
    assert_eq!(
        skipped.media_sequence + skipped.skipped + skipped.segments.len() as u64,
        full.media_sequence + full.segments.len() as u64,
        "delta and full playlists end at the same segment"
    );

    // Nothing to return in time (the publisher is gone): 503 after ~3 target durations.
    let _ = publisher.child.kill();
    let _ = publisher.child.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, text) = get_text(&url).await;
    let last = MediaPlaylist::parse(&text).last_msn().expect("segments");
    let started = Instant::now();
    let (status, _) = get_text(&format!("{url}&_HLS_msn={}", last + 2)).await;
    assert_eq!(status, 503, "a blocking request that cannot be satisfied");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "503 only after waiting, got it after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_in_headless_chromium_plays_the_signed_master_in_low_latency_mode() {
    let server = Server::start();
    let stream = server.create_stream("hlsjs", Some("small"));
    let _publisher = Source::small().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let report = common::hlsjs_report(&stream.playback_url, 15, true);
    eprintln!("hls.js report: {report}");
    let summary = &report["summary"];
    assert_eq!(
        summary["fatalErrors"].as_u64(),
        Some(0),
        "hls.js fatal errors: {report}"
    );
    assert_eq!(summary["played"].as_bool(), Some(true), "hls.js did not play: {report}");
    let levels = report["levels"].as_array().map(Vec::len).unwrap_or(0);
    assert!(levels >= 3, "hls.js sees {levels} levels: {report}");
    let advanced = summary["currentTimeAdvanced"].as_f64().unwrap_or(0.0);
    assert!(advanced >= 10.0, "played only {advanced} s of 15: {report}");
    assert!(
        summary["decodedFrames"].as_u64().unwrap_or(0) > 200,
        "frames actually decoded: {report}"
    );
    assert!(
        summary["partsLoaded"].as_u64().unwrap_or(0) > 0,
        "hls.js loaded LL-HLS parts: {report}"
    );
    assert_eq!(report["playlist"]["canBlockReload"].as_bool(), Some(true), "{report}");
    let latency = summary["latency"]["median"].as_f64().expect("hls.js reports latency");
    eprintln!("hls.js median latency {latency:.3} s");
    assert!(
        latency > 0.0 && latency < 3.0,
        "low-latency mode latency {latency} s: {report}"
    );
}
