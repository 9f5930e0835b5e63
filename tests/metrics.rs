//! Prometheus `/metrics` of the real binary while real ffmpeg publishes:
//! the text passes `promtool check metrics`, and the values move with what
//! happens. Also the app ingest bitrate limit, which the same sampler enforces.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get_text, wait_until_live, Server, Source};

fn tiny() -> Source {
    Source {
        video: Some((320, 180)),
        video_kbps: 300,
        ..Source::small()
    }
}

async fn scrape(server: &Server) -> String {
    let (status, text) = get_text(&format!("{}/metrics", server.base())).await;
    assert_eq!(status, 200);
    text
}

/// Every sample line: series (name plus labels) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    *samples(text)
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): `make test-deps` installs it (Debian package `prometheus`)")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_follow_what_happens() {
    let server = Server::start();
    let idle = scrape(&server).await;
    promtool_check(&idle);
    assert_eq!(value(&idle, "pulse_streams_live"), 0.0);
    assert_eq!(value(&idle, "pulse_ingest_bytes_total{protocol=\"rtmp\"}"), 0.0);
    assert_eq!(value(&idle, "pulse_auth_failures_total{reason=\"unknown_key\"}"), 0.0);

    // A wrong key is counted under its reason.
    let mut refused = tiny().publish(&format!("rtmp://{}/live/live_not_a_key", server.rtmp));
    assert!(
        refused.wait_timeout(Duration::from_secs(10)).is_some(),
        "a bad key was accepted"
    );

    let stream = server.create_stream("metered", Some("small"));
    let mut publisher = tiny().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = scrape(&server).await;
    promtool_check(&live);
    assert_eq!(value(&live, "pulse_streams_live"), 1.0);
    assert_eq!(value(&live, "pulse_auth_failures_total{reason=\"unknown_key\"}"), 1.0);
    let bytes = value(&live, "pulse_ingest_bytes_total{protocol=\"rtmp\"}");
    assert!(bytes > 10_000.0, "ingest bytes {bytes}");
    let parts = value(&live, "pulse_hls_parts_published_total");
    assert!(parts > 5.0, "parts {parts}");
    let lag_count = value(&live, "pulse_hls_part_publish_lag_seconds_count");
    assert!(lag_count > 0.0, "no lag observations");
    let lag_sum = value(&live, "pulse_hls_part_publish_lag_seconds_sum");
    assert!(lag_sum / lag_count < 2.0, "mean part lag {} s", lag_sum / lag_count);
    // Requests are counted by route template, never by raw path.
    let master_route = "pulse_http_requests_total{route=\"/live/{stream}/master.m3u8\",status=\"200\"}";
    assert!(value(&live, master_route) >= 1.0, "{live}");
    assert!(!live.contains(&stream.id), "a stream id became a label value");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = scrape(&server).await;
    assert!(value(&later, "pulse_ingest_bytes_total{protocol=\"rtmp\"}") > bytes);
    assert!(value(&later, "pulse_hls_parts_published_total") > parts);
    assert!(value(&later, "pulse_http_requests_total{route=\"/metrics\",status=\"200\"}") >= 2.0);
    let _ = get_text(&format!("{}/definitely/not/here", server.base())).await;
    let unmatched = scrape(&server).await;
    assert!(
        value(
            &unmatched,
            "pulse_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ) >= 1.0
    );

    // The live stats read ingest's counters directly; the metric, fed once a
    // second, must still catch up with them once the session ends.
    let ops = server.global_admin_token();
    let (status, stats) = server.api(&ops, "GET", &format!("/live/{}", stream.id), None).await;
    assert_eq!(status, 200, "{stats}");
    let received = stats["ingest_bytes"].as_f64().expect("ingest_bytes");
    assert!(stats["frames_received"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert_eq!(stats["frames_dropped"], 0, "a clean publish lost frames: {stats}");
    let listed_parts: u64 = stats["renditions"]
        .as_array()
        .expect("renditions")
        .iter()
        .map(|r| r["parts_published"].as_u64().unwrap_or(0))
        .sum();
    assert!(listed_parts > 0, "{stats}");
    let (status, kicked) = server
        .api(&ops, "POST", &format!("/live/{}/kick", stream.id), None)
        .await;
    assert_eq!((status, &kicked["kicked"]), (200, &serde_json::json!(true)), "{kicked}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let text = scrape(&server).await;
        if value(&text, "pulse_streams_live") == 0.0 {
            promtool_check(&text);
            break text;
        }
        assert!(Instant::now() < deadline, "streams_live never went back to 0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let counted = value(&ended, "pulse_ingest_bytes_total{protocol=\"rtmp\"}");
    assert!(
        counted >= received,
        "ingest bytes metric {counted} behind the {received} bytes the session had received"
    );
    let parts_counted = value(&ended, "pulse_hls_parts_published_total");
    assert!(
        parts_counted >= listed_parts as f64,
        "parts metric {parts_counted} behind the {listed_parts} parts the live stats listed"
    );
    let admin_route = "pulse_http_requests_total{route=\"/api/v1/live/{stream_id}\",status=\"200\"}";
    assert!(value(&ended, admin_route) >= 1.0, "{ended}");
    assert!(
        publisher.wait_timeout(Duration::from_secs(5)).is_some(),
        "the kicked publisher kept streaming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_over_the_apps_ingest_limit_is_kicked() {
    let server = Server::start();
    let out = server.cli(&[
        "app",
        "create",
        "--name",
        "capped",
        "--max-ingest-kbps",
        "100",
        "--profile",
        "passthrough",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stream = server.create_stream_in(app["id"].as_str().expect("id"), "big", None);
    // 300 kbit/s video + 96 kbit/s audio against a 100 kbit/s limit.
    let mut publisher = tiny().publish(&stream.publish_url());
    let started = Instant::now();
    assert!(
        publisher.wait_timeout(Duration::from_secs(15)).is_some(),
        "a publisher at ~400 kbit/s kept streaming under a 100 kbit/s limit"
    );
    // Judged over a full 5 s window, not on the first burst.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "kicked after {:?}",
        started.elapsed()
    );
    let log = server.log();
    assert!(log.contains("ingest bitrate over the app's limit"), "{log}");
    assert!(log.contains("limit_kbps=100"), "{log}");
}
