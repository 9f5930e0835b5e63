//! RTSP pull end to end against a real RTSP server (GStreamer's, in
//! tests/support/rtsp_camera.py): a source registered through the admin
//! API is pulled and packaged like a published stream (ffmpeg and hls.js
//! play it), survives a camera restart with a discontinuity, reports wrong
//! credentials without a tight reconnect loop, pulls H.265 into an H.264
//! ladder, and comes back after a server restart.

mod common;

use std::time::{Duration, Instant};

use common::playlist::MediaPlaylist;
use common::{ffmpeg_decode, get_text, wait_until_live, Proc, Server, StreamInfo};
use serde_json::{json, Value};

const CAMERA: &str = "tests/support/rtsp_camera.py";

/// A camera on `port`; waits until it listens.
fn camera(port: u16, extra: &[&str]) -> Proc {
    let script = common::manifest_dir().join(CAMERA);
    let mut args = vec![script.display().to_string(), "--port".into(), port.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut proc = Proc::spawn("/usr/bin/python3", &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc.log().contains("ready ") {
        assert!(proc.is_running(), "RTSP camera exited: {}", proc.log());
        assert!(Instant::now() < deadline, "RTSP camera not ready: {}", proc.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

async fn create_source(server: &Server, admin: &str, body: Value) -> Value {
    let (status, source) = server.api(admin, "POST", "/apps/app_default/sources", Some(body)).await;
    assert_eq!(status, 201, "{source}");
    source
}

async fn source(server: &Server, admin: &str, id: &str) -> Value {
    let (status, source) = server
        .api(admin, "GET", &format!("/apps/app_default/sources/{id}"), None)
        .await;
    assert_eq!(status, 200, "{source}");
    source
}

async fn wait_state(server: &Server, admin: &str, id: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let current = source(server, admin, id).await;
        if current["state"] == state {
            return current;
        }
        assert!(Instant::now() < deadline, "source never {state}: {current}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stream's signed master playlist URL.
async fn playback_url(server: &Server, admin: &str, stream_id: &str) -> String {
    let (status, minted) = server
        .api(
            admin,
            "POST",
            &format!("/apps/app_default/streams/{stream_id}/playback-tokens"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    minted["playback_url"].as_str().expect("playback_url").to_owned()
}

/// Waits until every rendition lists segments; the first media playlist's URL.
async fn first_media_playlist(server: &Server, stream_id: &str, master_url: &str) -> String {
    let stream = StreamInfo {
        id: stream_id.to_owned(),
        stream_key: String::new(),
        rtmp_url: String::new(),
        playback_url: master_url.to_owned(),
    };
    let master = wait_until_live(server, &stream, Duration::from_secs(30)).await;
    let uri = common::playlist::first_variant_uri(&master);
    let base = master_url.split("master.m3u8").next().unwrap_or_default();
    format!("{base}{uri}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_is_pulled_played_restarted_and_comes_back_after_a_server_restart() {
    let port = common::free_port();
    let mut cam = camera(port, &["--user", "viewer", "--password", "s3cret"]);
    let mut server = Server::start();
    let admin = server.global_admin_token();
    let url = format!("rtsp://viewer:s3cret@127.0.0.1:{port}/cam");
    let created = create_source(
        &server,
        &admin,
        json!({"name": "lobby", "url": url, "transport": "tcp", "profile": "small"}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let stream_id = created["stream_id"].as_str().expect("stream_id").to_owned();
    // The credentials are never echoed back.
    assert_eq!(created["url"], format!("rtsp://***@127.0.0.1:{port}/cam"), "{created}");
    assert!(!created.to_string().contains("s3cret"), "{created}");
    let (_, listed) = server.api(&admin, "GET", "/apps/app_default/sources", None).await;
    assert!(!listed.to_string().contains("s3cret"), "{listed}");

    let live = wait_state(&server, &admin, &id, "live", Duration::from_secs(20)).await;
    assert_eq!(live["connections"], 1, "{live}");
    let master_url = playback_url(&server, &admin, &stream_id).await;
    let media_url = first_media_playlist(&server, &stream_id, &master_url).await;
    let (ok, stderr) = ffmpeg_decode(&master_url, 5, &[]);
    assert!(ok, "ffmpeg plays the pulled camera: {stderr}");
    let report = common::hlsjs_report(&master_url, 6, true);
    assert_eq!(report["summary"]["played"], true, "{report}");
    let (_, live_list) = server.api(&admin, "GET", "/live", None).await;
    let entry = live_list
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream_id"] == stream_id.as_str()).cloned())
        .expect("listed live");
    assert_eq!(entry["protocol"], "rtsp", "{entry}");
    assert_eq!(entry["video"]["codec"], "h264", "{entry}");
    assert_eq!(entry["audio"]["codec"], "aac", "{entry}");

    // The camera restarts: the source retries, reconnects, and the playlist
    // carries on with a discontinuity.
    let before = MediaPlaylist::parse(&get_text(&media_url).await.1)
        .last_msn()
        .expect("segments");
    drop(cam);
    let retrying = wait_state(&server, &admin, &id, "retrying", Duration::from_secs(20)).await;
    assert!(retrying["last_error"].as_str().is_some(), "{retrying}");
    std::thread::sleep(Duration::from_secs(2));
    cam = camera(port, &["--user", "viewer", "--password", "s3cret"]);
    let back = wait_state(&server, &admin, &id, "live", Duration::from_secs(40)).await;
    assert_eq!(back["connections"], 2, "{back}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let playlist = MediaPlaylist::parse(&get_text(&media_url).await.1);
        let last = playlist.last_msn().unwrap_or(0);
        if playlist.segments.iter().any(|s| s.discontinuity) && last >= before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no discontinuity after the camera restart (last {last}, before {before})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let types = server.event_types(&admin, &stream_id).await;
    assert!(
        types.iter().filter(|t| *t == "stream.connected").count() >= 2
            && types.iter().any(|t| t == "stream.disconnected"),
        "{types:?}"
    );
    let (ok, stderr) = ffmpeg_decode(&master_url, 4, &[]);
    assert!(ok, "plays after the camera restart: {stderr}");

    // Stop and start through the API.
    let (status, stopped) = server
        .api(&admin, "POST", &format!("/apps/app_default/sources/{id}/stop"), None)
        .await;
    assert_eq!(status, 200, "{stopped}");
    wait_state(&server, &admin, &id, "stopped", Duration::from_secs(10)).await;
    let (status, _) = server
        .api(&admin, "POST", &format!("/apps/app_default/sources/{id}/start"), None)
        .await;
    assert_eq!(status, 200);
    wait_state(&server, &admin, &id, "live", Duration::from_secs(20)).await;

    // A server restart starts the source again on its own.
    server.stop();
    server.restart();
    let again = wait_state(&server, &admin, &id, "live", Duration::from_secs(30)).await;
    assert_eq!(again["connections"], 1, "a fresh puller after the restart: {again}");
    let master_url = playback_url(&server, &admin, &stream_id).await;
    first_media_playlist(&server, &stream_id, &master_url).await;
    let (ok, stderr) = ffmpeg_decode(&master_url, 3, &[]);
    assert!(ok, "plays after the server restart: {stderr}");

    // Delete: the source and its stream go.
    let (status, _) = server
        .api(&admin, "DELETE", &format!("/apps/app_default/sources/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = server
        .api(&admin, "GET", &format!("/apps/app_default/sources/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .api(&admin, "GET", &format!("/apps/app_default/streams/{stream_id}"), None)
        .await;
    assert_eq!(status, 404);
    drop(cam);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_without_a_tight_reconnect_loop() {
    let port = common::free_port();
    let _cam = camera(port, &["--user", "viewer", "--password", "s3cret"]);
    let server = Server::start();
    let admin = server.global_admin_token();
    let created = create_source(
        &server,
        &admin,
        json!({"name": "wrong", "url": format!("rtsp://viewer:nope@127.0.0.1:{port}/cam")}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let failing = wait_state(&server, &admin, &id, "retrying", Duration::from_secs(15)).await;
    let error = failing["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("credentials") && error.contains("401"),
        "a clear reason: {failing}"
    );
    // Over 12 s: the first attempt and at most one more (10 s between tries).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later = source(&server, &admin, &id).await;
    let attempts = later["attempts"].as_u64().unwrap_or(0);
    assert!(
        (1..=2).contains(&attempts),
        "no tight loop: {attempts} attempts in 12 s: {later}"
    );
    assert_eq!(later["connections"], 0, "{later}");

    // Bad input gets a clear error and creates nothing.
    for bad in [
        json!({"name": "x", "url": "http://camera/stream"}),
        json!({"name": "", "url": "rtsp://camera/stream"}),
        json!({"name": "x", "url": "rtsp://camera/stream", "transport": "sctp"}),
        json!({"name": "x", "url": "rtsp://camera/stream", "profile": "nope"}),
    ] {
        let (status, body) = server
            .api(&admin, "POST", "/apps/app_default/sources", Some(bad.clone()))
            .await;
        assert!(status == 400 || status == 422, "{bad} → {status} {body}");
    }
    let (_, listed) = server.api(&admin, "GET", "/apps/app_default/sources", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_added_with_the_cli_is_transcoded_into_an_h264_ladder_over_udp() {
    let port = common::free_port();
    let _cam = camera(port, &["--codec", "h265"]);
    let server = Server::start();
    let admin = server.global_admin_token();
    // Added with the CLI (another process): the running server picks it up.
    let out = server.cli(&[
        "source",
        "add",
        "--name",
        "hevc",
        "--url",
        &format!("rtsp://127.0.0.1:{port}/cam"),
        "--transport",
        "udp",
        "--profile",
        "small",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    let stream_id = created["stream_id"].as_str().expect("stream_id").to_owned();
    assert_eq!(created["transport"], "udp");
    wait_state(&server, &admin, &id, "live", Duration::from_secs(20)).await;
    let master_url = playback_url(&server, &admin, &stream_id).await;
    first_media_playlist(&server, &stream_id, &master_url).await;
    let master = get_text(&master_url).await.1;
    // Every rung is H.264 (the top one encoded at the source size), none HEVC.
    assert!(master.contains("RESOLUTION=320x180"), "{master}");
    assert!(!master.contains("hvc1") && !master.contains("hev1"), "{master}");
    let (ok, stderr) = ffmpeg_decode(&master_url, 5, &[]);
    assert!(ok, "ffmpeg plays the H.265 camera's ladder: {stderr}");
}
