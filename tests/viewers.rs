//! Viewer counts and usage against the real binary: simulated players
//! following the blocking-reload protocol (N = 1, 10, 200), one hls.js player
//! in headless Chromium, and the usage rows and CSV they leave behind.

mod common;

use std::time::{Duration, Instant};

use common::webhooks::{now_ms, read_sse};
use common::{wait_until_live, Server, Source, StreamInfo};
use serde_json::Value;
use tokio::task::JoinSet;

/// Short, so that leaving is seen quickly.
const SESSION_TIMEOUT_SECS: u64 = 5;

fn tiny() -> Source {
    Source {
        video: Some((320, 180)),
        video_kbps: 300,
        ..Source::small()
    }
}

/// The simulated players share one token and one address (as viewers
/// behind a CDN would), so the per-token and per-address caps are raised.
fn start_server() -> Server {
    Server::start_with(&[
        ("PULSE_VIEWERS_SESSION_TIMEOUT_SECS", "5"),
        ("PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN", "1000"),
        ("PULSE_HTTP_MAX_BLOCKING_PER_IP", "1000"),
        ("PULSE_HTTP_MAX_CONNECTIONS_PER_IP", "4000"),
    ])
}

/// A player as the protocol has it: the signed master once, then the first
/// variant's playlist, each reload blocking on the next segment.
async fn play(client: reqwest::Client, master_url: String) {
    let Ok(master) = client.get(&master_url).send().await else {
        return;
    };
    let Ok(master) = master.text().await else { return };
    let Some(child) = master.lines().find(|l| !l.starts_with('#') && !l.trim().is_empty()) else {
        return;
    };
    let base = master_url
        .split('?')
        .next()
        .unwrap_or("")
        .rsplit_once('/')
        .map_or("", |(b, _)| b);
    let child = format!("{base}/{child}");
    let mut url = child.clone();
    loop {
        let Ok(response) = client.get(&url).send().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let body = response.text().await.unwrap_or_default();
        let sequence = body
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|n| n.trim().parse::<u64>().ok());
        let segments = body.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64;
        url = match sequence {
            Some(first) => format!("{child}&_HLS_msn={}", first + segments),
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                child.clone()
            }
        };
    }
}

async fn viewers(server: &Server, admin: &str, stream: &StreamInfo) -> Value {
    let path = format!("/apps/app_default/streams/{}/viewers", stream.id);
    let (status, body) = server.api(admin, "GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls until the count is `n`; how long that took.
async fn wait_for_count(server: &Server, admin: &str, stream: &StreamInfo, n: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let body = viewers(server, admin, stream).await;
        if body["viewers"].as_u64() == Some(n) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "viewers never reached {n} within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the stream to be live, then for the viewer that checking it
/// was (it fetched the master) to time out.
async fn live_without_viewers(server: &Server, admin: &str, stream: &StreamInfo) {
    wait_until_live(server, stream, Duration::from_secs(30)).await;
    let timeout = Duration::from_secs(SESSION_TIMEOUT_SECS + 3);
    wait_for_count(server, admin, stream, 0, timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_players_count_exactly_and_leave_usage_behind() {
    let server = start_server();
    let admin = server.global_admin_token();
    let stream = server.create_stream("watched", Some("passthrough"));
    let _publisher = tiny().publish(&stream.publish_url());
    live_without_viewers(&server, &admin, &stream).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");

    // The dashboard feed: a count change reaches it within 2 s.
    let feed = server.event_feed(&admin).await;
    let stream_id = stream.id.clone();
    let mut first_count = Some(tokio::spawn(read_sse(feed, 1, move |event, body| {
        event == "viewers" && body["stream_id"] == stream_id.as_str() && body["viewers"] == 1
    })));

    for n in [1u64, 10, 200] {
        let joined_ms = now_ms();
        let mut players = JoinSet::new();
        for _ in 0..n {
            players.spawn(play(client.clone(), stream.playback_url.clone()));
        }
        if let Some(first_count) = first_count.take() {
            let fed = tokio::time::timeout(Duration::from_secs(10), first_count)
                .await
                .expect("the feed never showed 1 viewer")
                .expect("feed task");
            let (_, arrived_ms) = fed.first().expect("a viewers frame");
            assert!(
                arrived_ms - joined_ms < 2000,
                "feed {} ms after the viewer joined",
                arrived_ms - joined_ms
            );
        }
        let took = wait_for_count(&server, &admin, &stream, n, Duration::from_secs(5)).await;
        eprintln!("{n} players counted in {took:?}");
        // Still exactly n a few reloads later: reloads never count twice.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let body = viewers(&server, &admin, &stream).await;
        assert_eq!(body["viewers"].as_u64(), Some(n), "{body}");
        let by_rendition: u64 = body["renditions"]
            .as_object()
            .map(|r| r.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        assert_eq!(by_rendition, n, "each viewer in one rendition: {body}");
        assert!(body["peak_viewers"].as_u64() >= Some(n), "{body}");
        if n == 200 {
            let metrics = common::get_text(&format!("{}/metrics", server.base())).await.1;
            assert!(
                metrics.contains("pulse_viewers{app_id=\"app_default\"} 200"),
                "{}",
                metrics
                    .lines()
                    .filter(|l| l.contains("pulse_viewers"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let (_, live) = server.api(&admin, "GET", &format!("/live/{}", stream.id), None).await;
            assert_eq!(live["viewers"], 200, "{live}");
        }
        players.shutdown().await;
        // Gone within the session timeout (and a sweep).
        wait_for_count(
            &server,
            &admin,
            &stream,
            0,
            Duration::from_secs(SESSION_TIMEOUT_SECS + 3),
        )
        .await;
    }

    // Counts went out as throttled, durable `viewers.updated` events.
    let (_, events) = server
        .api(
            &admin,
            "GET",
            &format!("/apps/app_default/events?stream_id={}", stream.id),
            None,
        )
        .await;
    let updates: Vec<u64> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "viewers.updated")
        .filter_map(|e| e["body"]["data"]["viewers"].as_u64())
        .collect();
    assert!(updates.contains(&200) && updates.contains(&0), "{updates:?}");

    // Usage reaches the store (flushed every 10 s) and exports as CSV.
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let (status, rows) = server
            .api(
                &admin,
                "GET",
                &format!("/apps/app_default/usage?stream_id={}", stream.id),
                None,
            )
            .await;
        assert_eq!(status, 200, "{rows}");
        let total = |field: &str| -> f64 {
            rows.as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r[field].as_f64())
                .sum()
        };
        if total("viewer_seconds") > 200.0 && total("delivered_bytes") > 0.0 && total("ingest_minutes") > 0.0 {
            break rows[0].clone();
        }
        assert!(Instant::now() < deadline, "usage not recorded: {rows:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(row["rendition_minutes"], 0.0, "passthrough transcodes nothing: {row}");
    assert_eq!(row["peak_viewers"], 200, "{row}");
    let csv = common::http()
        .get(format!("{}/api/v1/apps/app_default/usage.csv?per=app", server.base()))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("app_id,stream_id,hour,ingest_minutes,rendition_minutes,delivered_bytes,viewer_seconds,peak_viewers")
    );
    let fields: Vec<&str> = lines.next().expect("a row").split(',').collect();
    assert_eq!((fields[0], fields[1]), ("app_default", ""), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hlsjs_player_counts_as_exactly_one() {
    let server = start_server();
    let admin = server.global_admin_token();
    // Three renditions, so that the player could switch between them.
    let stream = server.create_stream("browser", Some("small"));
    let _publisher = Source::small().publish(&stream.publish_url());
    live_without_viewers(&server, &admin, &stream).await;
    let script = common::manifest_dir().join("tests/player/play.mjs");
    let url = stream.playback_url.clone();
    let player = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .arg(&url)
            .args(["--seconds", "20"])
            .output()
            .expect("run node player")
    });
    wait_for_count(&server, &admin, &stream, 1, Duration::from_secs(20)).await;
    let mut samples = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(
            viewers(&server, &admin, &stream).await["viewers"]
                .as_u64()
                .unwrap_or(99),
        );
    }
    assert!(samples.iter().all(|&n| n == 1), "hls.js counted as {samples:?}");
    let out = player.await.expect("player task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    assert_eq!(
        report["summary"]["played"],
        true,
        "hls.js did not play: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
