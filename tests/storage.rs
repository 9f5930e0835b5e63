//! Object storage against a real S3-compatible server (s3s-fs, SigV4
//! checked): what lands in the bucket and with which headers, the aged-out
//! window's deletion, CDN mode played by ffmpeg through a static server over
//! the bucket, recordings (finalised at stream end and after a crash,
//! played, deleted), an S3 outage mid-stream, and start-up with a bucket
//! that cannot be used.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::playlist::path_of;
use common::s3::{S3Server, BUCKET};
use common::{ffmpeg_decode, get_text, wait_until_live, Proc, Server, Source, StreamInfo, BIN};
use serde_json::Value;

fn tiny() -> Source {
    Source {
        video: Some((320, 180)),
        video_kbps: 300,
        ..Source::small()
    }
}

/// 1 s segments and a 3-segment window, so that objects age out quickly.
fn start(s3: &S3Server, extra: &[(&str, &str)]) -> Server {
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("PULSE_HLS_SEGMENT_TARGET_MS".into(), "1000".into()));
    env.push(("PULSE_HLS_WINDOW_SEGMENTS".into(), "3".into()));
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&pairs)
}

/// URIs of a media playlist's segments, parts and init segments.
fn media_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines() {
        if line.starts_with("#EXT-X-PART:") || line.starts_with("#EXT-X-MAP:") {
            if let Some(uri) = line.split("URI=\"").nth(1).and_then(|r| r.split('"').next()) {
                uris.push(uri.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            uris.push(line.to_string());
        }
    }
    uris
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    try_wait_for(timeout, &mut check)
        .await
        .unwrap_or_else(|()| panic!("timed out waiting for {what}"));
}

async fn try_wait_for(timeout: Duration, check: &mut impl AsyncFnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(())
}

/// What the bucket and the edge's upload counters say, for a failure message.
async fn storage_state(s3: &S3Server, server: &Server) -> String {
    let (_, metrics) = get_text(&format!("{}/metrics", server.base())).await;
    let uploads: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pulse_storage_") && !l.contains("_bucket{"))
        .collect();
    format!(
        "bucket keys: {:?}\nrequests seen: {}\nupload metrics:\n{}",
        s3.keys(""),
        s3.requests().len(),
        uploads.join("\n")
    )
}

/// `app create` with the CLI; the new app's id.
fn create_app(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["app", "create"];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app: Value = serde_json::from_slice(&out.stdout).expect("app json");
    app["id"].as_str().expect("id").to_string()
}

/// Waits until the stream is live; its first rendition and that media playlist's signed URL.
async fn live_media_playlist(server: &Server, stream: &StreamInfo) -> (String, String) {
    let master = wait_until_live(server, stream, Duration::from_secs(30)).await;
    let rendition = first_rendition(&master);
    let url = format!(
        "{}?token={}",
        stream.url(&server.base(), &format!("{rendition}/index.m3u8")),
        stream.token()
    );
    (rendition, url)
}

fn first_rendition(master: &str) -> String {
    common::playlist::first_variant_uri(master)
        .split('/')
        .next()
        .expect("rendition")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_objects_reach_the_bucket_with_their_headers_and_leave_it_when_they_age_out() {
    let s3 = S3Server::start();
    let server = start(&s3, &[]);
    let stream = server.create_stream("bucket", Some("passthrough"));
    let publisher = tiny().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let rendition = first_rendition(&master);
    let prefix = format!("{}/{rendition}/", stream.id);

    // Inits, parts and parent segments all go to the bucket.
    let landed = try_wait_for(Duration::from_secs(40), &mut async || {
        let keys = s3.keys(&prefix);
        keys.iter().any(|k| k.contains("/init"))
            && keys.iter().any(|k| k.matches('.').count() == 2)
            && keys
                .iter()
                .filter(|k| k.matches('.').count() == 1 && !k.contains("/init"))
                .count()
                >= 2
    })
    .await;
    if landed.is_err() {
        panic!(
            "timed out waiting for parts and segments under {prefix}\n{}",
            storage_state(&s3, &server).await
        );
    }
    let first_segments: Vec<String> = s3
        .keys(&prefix)
        .into_iter()
        .filter(|k| k.matches('.').count() == 1 && !k.contains("/init"))
        .collect();

    let client = s3.client().await;
    for key in s3.keys(&prefix).iter().take(6) {
        let head = client.head_object().bucket(BUCKET).key(key).send().await.expect("head");
        assert_eq!(head.content_type(), Some("video/mp4"), "{key}");
        assert_eq!(head.cache_control(), Some("public, max-age=86400, immutable"), "{key}");
    }
    // No key ever goes to the bucket.
    assert!(s3.keys("").iter().all(|k| !k.ends_with(".key")));

    // 1 s segments, 3 listed plus 4 in grace: the first ones age out and are deleted in batches.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let gone = first_segments.iter().filter(|k| !s3.has(k)).count();
    assert!(gone >= 1, "aged-out segments stay in the bucket: {first_segments:?}");
    let now: Vec<String> = s3.keys(&prefix);
    let segments_now = now
        .iter()
        .filter(|k| k.matches('.').count() == 1 && !k.contains("/init"))
        .count();
    assert!(segments_now <= 10, "the bucket keeps only the live window: {now:?}");
    let requests = s3.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.query.contains("delete")),
        "deletes are batched with DeleteObjects"
    );

    // Everything the edge lists exists in the bucket once uploads caught up.
    let (_, text) = get_text(&stream.url(&server.base(), &format!("{rendition}/index.m3u8"))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for uri in media_uris(&text).iter().filter(|u| u.ends_with(".mp4")) {
        assert!(
            s3.has(&format!("{prefix}{}", path_of(uri))),
            "listed {uri} is not in the bucket"
        );
    }

    // R2 rejects the SDK's default CRC32 headers: none on uploads.
    let puts: Vec<_> = requests.iter().filter(|r| r.method == "PUT").collect();
    assert!(puts.len() > 10);
    for put in puts {
        let checksums: Vec<_> = put
            .headers
            .iter()
            .filter(|h| h.contains("checksum") || *h == "content-md5")
            .collect();
        assert!(checksums.is_empty(), "PUT {} sent {checksums:?}", put.path);
    }
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_mode_points_playlists_at_the_bucket_and_ffmpeg_plays_through_a_static_server() {
    let s3 = S3Server::start();
    // A static HTTP server over the bucket directory stands in for the CDN.
    let cdn_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let cdn = Proc::spawn(
        "python3",
        &[
            "-m".into(),
            "http.server".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            cdn_port.to_string(),
            "--directory".into(),
            s3.bucket_dir().display().to_string(),
        ],
    );
    let cdn_base = format!("http://127.0.0.1:{cdn_port}");
    let server = start(&s3, &[]);
    create_app(&server, &["--name", "cdn", "--cdn-base-url", &cdn_base]);
    let stream: StreamInfo = server.create_stream_in("cdn", "cdn", Some("passthrough"));
    let publisher = tiny().publish(&stream.publish_url());
    let (rendition, media_url) = live_media_playlist(&server, &stream).await;
    let prefix = format!("{cdn_base}/{}/{rendition}/", stream.id);
    for _ in 0..5 {
        let (status, text) = get_text(&media_url).await;
        assert_eq!(status, 200);
        let uris = media_uris(&text);
        assert!(!uris.is_empty());
        for uri in &uris {
            assert!(uri.starts_with(&prefix), "{uri} is not on the CDN");
            // Listed means already in the bucket: the CDN has it now.
            let (status, _) = get_text(uri).await;
            assert_eq!(status, 200, "listed {uri} is not in the bucket");
        }
        assert!(!text.contains("PRELOAD-HINT"));
        assert!(text.contains("URI=\"../key/"), "keys stay on the edge: {text}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (ok, log) = ffmpeg_decode(&stream.playback_url, 4, &[]);
    assert!(ok, "ffmpeg could not play CDN-mode playlists: {log}");
    drop(publisher);
    drop(cdn);
}

async fn recordings_of(server: &Server, token: &str, app: &str) -> Vec<Value> {
    let (status, body) = server.api(token, "GET", &format!("/apps/{app}/recordings"), None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

async fn ready_recording(server: &Server, token: &str, app: &str, count: usize) -> Value {
    let mut found = Value::Null;
    wait_for("a ready recording", Duration::from_secs(60), async || {
        let list = recordings_of(server, token, app).await;
        let ready: Vec<_> = list.iter().filter(|r| r["status"] == "ready").collect();
        if ready.len() >= count {
            found = ready[0].clone();
            true
        } else {
            false
        }
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn recordings_are_finalised_at_stream_end_and_after_a_crash_play_and_delete() {
    let s3 = S3Server::start();
    let mut server = start(&s3, &[("PULSE_RECONNECT_WINDOW_SECS", "2")]);
    let app_id = create_app(&server, &["--name", "vod", "--record"]);
    let token = server.global_admin_token();
    let stream = server.create_stream_in("vod", "show", Some("passthrough"));

    // A stream of about 8 s, then the publisher leaves: stream.idle finalises.
    let mut publisher = Source {
        seconds: Some(8),
        ..tiny()
    }
    .publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    publisher.wait_timeout(Duration::from_secs(30));
    let recording = ready_recording(&server, &token, &app_id, 1).await;
    let id = recording["id"].as_str().expect("id").to_string();
    assert!(recording["duration_ms"].as_u64().unwrap_or(0) >= 5000, "{recording}");
    // Every segment survived the live window (3 segments) for the recording.
    assert!(recording["segments"].as_u64().unwrap_or(0) >= 5, "{recording}");
    let playback = recording["playback_url"].as_str().expect("playback url").to_string();

    // The VOD playlists: ENDLIST, no parts, keys from the edge with the token.
    let (status, master) = get_text(&playback).await;
    assert_eq!(status, 200, "{master}");
    let child = common::playlist::first_variant_uri(&master);
    let base = playback.split("master.m3u8").next().expect("base");
    let (status, media) = get_text(&format!("{base}{child}")).await;
    assert_eq!(status, 200);
    assert!(
        media.contains("#EXT-X-ENDLIST") && media.contains("#EXT-X-PLAYLIST-TYPE:VOD"),
        "{media}"
    );
    assert!(!media.contains("#EXT-X-PART"), "{media}");
    assert!(media.contains("URI=\"../key/") && media.contains("?token="), "{media}");
    let (status, _) = get_text(&format!("{base}key/0.key")).await;
    assert_ne!(status, 200, "keys need a token");
    let (ok, log) = ffmpeg_decode(&playback, 30, &[]);
    assert!(ok, "the recording does not play: {log}");
    hlsjs_plays(&playback, 4);
    // The bucket has its own copy of the playlists.
    assert!(s3.has(&format!("{}/recordings/{id}/master.m3u8", stream.id)));
    // And recording.ready is in the event log.
    let (_, events) = server.api(&token, "GET", &format!("/apps/{app_id}/events"), None).await;
    assert!(events.to_string().contains("recording.ready"), "{events}");

    // A crash mid-stream leaves a recording that the next start finalises.
    let publisher = tiny().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.kill_9();
    drop(publisher);
    server.restart();
    let list = {
        ready_recording(&server, &token, &app_id, 2).await;
        recordings_of(&server, &token, &app_id).await
    };
    let crashed = list
        .iter()
        .find(|r| r["id"] != id.as_str())
        .expect("second recording")
        .clone();
    assert_eq!(crashed["status"], "ready", "{crashed}");
    let crashed_url = crashed["playback_url"].as_str().expect("url").to_string();
    let (ok, log) = ffmpeg_decode(&crashed_url, 30, &[]);
    assert!(ok, "the recording of the crashed run does not play: {log}");

    // Deleting a recording deletes its objects.
    let segments_before: Vec<String> = s3.keys(&format!("{}/", stream.id));
    let (status, body) = server
        .api(&token, "DELETE", &format!("/apps/{app_id}/recordings/{id}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(!s3.has(&format!("{}/recordings/{id}/master.m3u8", stream.id)));
    let segments_after = s3.keys(&format!("{}/", stream.id));
    assert!(segments_after.len() < segments_before.len());
    let (status, _) = get_text(&playback).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .api(&token, "GET", &format!("/apps/{app_id}/recordings/{id}"), None)
        .await;
    assert_eq!(status, 404);
    // The other recording of the stream shares its init segments: it still plays.
    let (ok, log) = ffmpeg_decode(&crashed_url, 30, &[]);
    assert!(ok, "deleting one recording broke the other: {log}");

    // The CLI lists, shows and deletes them too (audited as `cli`).
    let out = server.cli(&["recording", "list", "--app", "vod"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let crashed_id = crashed["id"].as_str().expect("id");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], crashed_id);
    assert!(
        listed[0]["playback_url"].as_str().is_some_and(|u| u.contains("/vod/")),
        "{listed}"
    );
    let out = server.cli(&["recording", "delete", crashed_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!s3.has(&format!("{}/recordings/{crashed_id}/master.m3u8", stream.id)));
    let out = server.cli(&["recording", "show", crashed_id]);
    assert!(!out.status.success(), "a deleted recording is not found");
    let out = server.cli(&["audit", "--action", "recording.delete", "--actor", "cli"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(crashed_id));
}

/// `<rendition>/<file>` of every segment a playlist lists.
fn segment_names(rendition: &str, playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{rendition}/{}", path_of(l).rsplit('/').next().unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_lands_and_files_the_last_segments_and_tells_the_stream_ended() {
    let s3 = S3Server::start();
    let mut server = start(&s3, &[]);
    let app_id = create_app(&server, &["--name", "keep", "--record"]);
    let token = server.global_admin_token();
    let stream = server.create_stream_in("keep", "stop", Some("passthrough"));
    let publisher = tiny().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // SIGTERM while the publisher streams: the open segments are closed,
    // uploaded and filed before the process exits.
    let status = server.stop();
    drop(publisher);
    let log = server.log();
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(log.contains("uploads flushed"), "{log}");
    assert!(!log.contains(" ERROR "), "errors while stopping:\n{log}");
    let in_bucket: Vec<String> = s3
        .keys(&format!("{}/", stream.id))
        .into_iter()
        .filter(|k| k.matches('.').count() == 1 && !k.contains("/init") && !k.contains("/recordings/"))
        .map(|k| k.split_once('/').map(|(_, rest)| rest.to_string()).unwrap_or(k))
        .collect();
    assert!(in_bucket.len() >= 4, "segments in the bucket: {in_bucket:?}");

    // The next start closes the stream and finalises its recording with
    // every segment that reached the bucket, the last ones included.
    server.restart();
    let recording = ready_recording(&server, &token, &app_id, 1).await;
    let playback = recording["playback_url"].as_str().expect("playback url").to_string();
    let (status, master) = get_text(&playback).await;
    assert_eq!(status, 200, "{master}");
    let base = playback.split("master.m3u8").next().expect("base");
    let mut recorded = Vec::new();
    for child in common::playlist::media_uris(&master) {
        let rendition = path_of(&child).split('/').next().unwrap_or_default().to_string();
        let (status, media) = get_text(&format!("{base}{child}")).await;
        assert_eq!(status, 200, "{media}");
        assert!(!media.contains("#EXT-X-DISCONTINUITY\n"), "no gap: {media}");
        recorded.extend(segment_names(&rendition, &media));
    }
    let missing: Vec<&String> = in_bucket.iter().filter(|k| !recorded.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "segments uploaded at shutdown but not in the recording: {missing:?}\nrecorded: {recorded:?}"
    );

    let events = server.stream_events(&token, &app_id, &stream.id).await;
    let position = |kind: &str, reason: &str| events.iter().position(|(t, r)| t == kind && r == reason);
    let disconnected = position("stream.disconnected", "server_shutdown");
    let idle = position("stream.idle", "server_restart");
    assert!(
        disconnected.is_some() && idle.is_some() && disconnected < idle,
        "stopping tells the stream ended, the next start closes it: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_keeps_the_stream_live_from_the_edge_and_uploads_catch_up() {
    let mut s3 = S3Server::start();
    let server = start(&s3, &[]);
    let stream = server.create_stream("outage", Some("passthrough"));
    let publisher = tiny().publish(&stream.publish_url());
    let (rendition, media_url) = live_media_playlist(&server, &stream).await;

    s3.stop();
    let down_at = Instant::now();
    let (_, before) = get_text(&media_url).await;
    let msn_before = common::playlist::MediaPlaylist::parse(&before).last_msn();
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Live from the edge while the bucket is away.
    let (status, during) = get_text(&media_url).await;
    assert_eq!(status, 200);
    assert!(
        common::playlist::MediaPlaylist::parse(&during).last_msn() > msn_before,
        "the playlist stopped"
    );
    let (ok, log) = ffmpeg_decode(&stream.playback_url, 3, &[]);
    assert!(ok, "no playback during the outage: {log}");
    let remaining = Duration::from_secs(60).saturating_sub(down_at.elapsed());
    tokio::time::sleep(remaining).await;
    let (_, metrics) = get_text(&format!("{}/metrics", server.base())).await;
    let buffered = metric(&metrics, "pulse_storage_upload_buffer_bytes");
    assert!(buffered > 0.0, "nothing buffered during the outage");
    s3.resume();

    // Uploads catch up; nothing was dropped; everything listed is in the bucket.
    wait_for("uploads to catch up", Duration::from_secs(60), async || {
        let (_, metrics) = get_text(&format!("{}/metrics", server.base())).await;
        metric(&metrics, "pulse_storage_upload_buffer_bytes") < 200_000.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, metrics) = get_text(&format!("{}/metrics", server.base())).await;
    assert!(metric(&metrics, "pulse_storage_upload_retries_total") > 0.0);
    assert_eq!(
        metric(&metrics, "pulse_storage_uploads_dropped_total"),
        0.0,
        "{metrics}"
    );
    let (_, text) = get_text(&media_url).await;
    let prefix = format!("{}/{rendition}/", stream.id);
    let segments: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(".mp4"))
        .map(|l| path_of(l).to_string())
        .collect();
    assert!(segments.len() >= 2);
    for segment in &segments {
        assert!(
            s3.has(&format!("{prefix}{segment}")),
            "listed {segment} never reached the bucket"
        );
    }
    drop(publisher);
}

/// hls.js in headless Chromium plays `url` (a VOD) for `seconds`.
fn hlsjs_plays(url: &str, seconds: u32) {
    let report = common::hlsjs_report(url, seconds, false);
    let summary = &report["summary"];
    assert_eq!(
        summary["fatalErrors"].as_u64(),
        Some(0),
        "hls.js fatal errors: {report}"
    );
    assert_eq!(
        summary["played"].as_bool(),
        Some(true),
        "hls.js did not play the recording: {report}"
    );
    assert!(summary["decodedFrames"].as_u64().unwrap_or(0) > 30, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_with_its_own_bucket_and_prefix_gets_its_media_there() {
    let s3 = S3Server::start();
    std::fs::create_dir_all(s3.root.path().join("tenant-media")).expect("second bucket");
    let server = start(&s3, &[]);
    let out = server.cli(&[
        "app",
        "create",
        "--name",
        "tenant",
        "--storage-bucket",
        "tenant-media",
        "--storage-prefix",
        "customers/t1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stream = server.create_stream_in("tenant", "own", Some("passthrough"));
    let publisher = tiny().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let rendition = first_rendition(&master);
    let dir = s3
        .root
        .path()
        .join("tenant-media/customers/t1")
        .join(&stream.id)
        .join(&rendition);
    wait_for("segments in the app's bucket", Duration::from_secs(15), async || {
        common::read_dir_names(&dir)
            .iter()
            .any(|n| n.ends_with(".mp4") && !n.starts_with("init"))
    })
    .await;
    assert!(
        s3.keys(&format!("{}/", stream.id)).is_empty(),
        "nothing in the server's bucket"
    );
    // The edge still serves it (reading back from the app's bucket once memory let go).
    let (ok, log) = ffmpeg_decode(&stream.playback_url, 3, &[]);
    assert!(ok, "{log}");
    drop(publisher);
}

/// Sum of a metric's samples (all label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_bucket_that_cannot_be_used_fails_the_start_naming_bucket_and_endpoint() {
    let s3 = S3Server::start();
    for (name, overrides) in [
        (
            "wrong secret",
            vec![("PULSE_STORAGE_SECRET_ACCESS_KEY", "not-the-secret")],
        ),
        ("missing bucket", vec![("PULSE_STORAGE_BUCKET", "no-such-bucket")]),
    ] {
        let data = tempfile::tempdir().expect("dir");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("PULSE_DATA_DIR", data.path())
            .env("PULSE_HTTP_LISTEN", "127.0.0.1:0")
            .env("PULSE_RTMP_LISTEN", "127.0.0.1:0")
            .env("PULSE_PIPELINES_DIR", common::manifest_dir().join("pipelines"))
            .env_remove("PULSE_PUBLIC_URL");
        for (k, v) in s3.env() {
            command.env(k, v);
        }
        for (k, v) in &overrides {
            command.env(k, v);
        }
        let out = command.output().expect("run");
        assert!(!out.status.success(), "{name}: started anyway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let bucket = overrides
            .iter()
            .find(|(k, _)| *k == "PULSE_STORAGE_BUCKET")
            .map_or(BUCKET, |(_, v)| v);
        assert!(
            stderr.contains(&format!("s3://{bucket}/")) && stderr.contains(&s3.endpoint()),
            "{name}: {stderr}"
        );
    }
}
