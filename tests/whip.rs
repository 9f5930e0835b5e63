//! WHIP ingest end to end, with real WebRTC publishers: headless Chromium on
//! fake capture devices (VP8, trickle ICE in PATCH) and GStreamer's
//! webrtcbin (H.264, key in the path); each must give a ladder that ffmpeg
//! decodes and hls.js plays. Then the protocol's HTTP cases with plain
//! requests, and the takeover rule shared with RTMP.

mod common;

use std::time::{Duration, Instant};

use common::whip::{chromium_available, chromium_report, ChromiumWhip, GstWhip};
use common::{ffmpeg_decode, get_text, http, wait_until_live, Server, Source};
use serde_json::Value;

fn endpoint(server: &Server) -> String {
    format!("{}/whip", server.base())
}

/// The live stream as the admin API reports it (protocol, input codecs).
async fn live_entry(server: &Server, admin: &str, stream_id: &str) -> Option<Value> {
    let (_, live) = server.api(admin, "GET", "/live", None).await;
    live.as_array()?.iter().find(|s| s["stream_id"] == stream_id).cloned()
}

fn assert_plays(url: &str) {
    let (ok, stderr) = ffmpeg_decode(url, 5, &[]);
    assert!(ok, "ffmpeg decodes the ladder: {stderr}");
    let report = common::hlsjs_report(url, 8, true);
    let summary = &report["summary"];
    assert_eq!(summary["played"], true, "hls.js plays: {report}");
    assert_eq!(summary["fatalErrors"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_vp8_with_trickled_candidates_and_the_ladder_plays() {
    assert!(
        chromium_available(),
        "node and /usr/bin/chromium are needed (make test-deps)"
    );
    let server = Server::start();
    let admin = server.global_admin_token();
    let stream = server.create_stream("browser", Some("small"));
    let publisher = ChromiumWhip {
        endpoint: endpoint(&server),
        key: &stream.stream_key,
        seconds: 30,
        codec: "vp8",
        auth: "bearer",
        trickle: true,
    }
    .spawn();

    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    // VP8 cannot be copied into HLS: every rung is H.264, and Opus became AAC once.
    assert!(master.contains("avc1.") && master.contains("mp4a.40.2"), "{master}");
    assert!(!master.contains("vp08") && !master.contains("opus"), "{master}");
    let live = live_entry(&server, &admin, &stream.id).await.expect("listed as live");
    assert_eq!(live["protocol"], "whip", "{live}");
    assert_eq!(live["video"]["codec"], "vp8", "{live}");
    assert_eq!(live["audio"]["codec"], "opus", "{live}");
    assert_plays(&stream.playback_url);

    let report = chromium_report(publisher, Duration::from_secs(90));
    let whip = &report["whip"];
    assert_eq!(whip["error"], Value::Null, "{report}");
    let post = &whip["post"];
    assert_eq!(post["status"], 201, "{report}");
    assert!(
        post["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/whip/sessions/")),
        "{report}"
    );
    assert!(post["etag"].as_str().is_some_and(|e| e.len() > 2), "{report}");
    assert_eq!(post["contentType"], "application/sdp", "{report}");
    assert!(
        post["answerCandidates"].as_u64() >= Some(1),
        "the answer carries our candidates: {report}"
    );
    assert_eq!(whip["patches"][0]["status"], 204, "trickle PATCH accepted: {report}");
    assert_eq!(whip["deleteStatus"], 200, "{report}");
    let video = &whip["stats"]["video"];
    assert!(video["framesEncoded"].as_u64() > Some(100), "{report}");
    // We ask for a keyframe as soon as the video track arrives (webrtcbin
    // sends it as FIR or PLI, whichever the browser offered).
    let requests = video["pliCount"].as_u64().unwrap_or(0) + video["firCount"].as_u64().unwrap_or(0);
    assert!(requests >= 1, "the edge requested a keyframe: {report}");

    // The DELETE ended the publish like an RTMP disconnect does.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let types = server.event_types(&admin, &stream.id).await;
        if types.iter().any(|t| t == "stream.disconnected") {
            assert!(types.iter().any(|t| t == "stream.connected"), "{types:?}");
            assert!(types.iter().any(|t| t == "stream.active"), "{types:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stream.disconnected after DELETE: {types:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        live_entry(&server, &admin, &stream.id).await.is_none(),
        "no longer live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_publishes_h264_with_the_key_in_the_path_and_rtmp_takes_over() {
    let server = Server::start();
    let admin = server.global_admin_token();
    let stream = server.create_stream("gst", Some("small"));
    let publisher = GstWhip::publish(
        &format!("{}/{}", endpoint(&server), stream.stream_key),
        &stream.stream_key,
        "h264",
    )
    .await
    .expect("WHIP publish accepted");
    assert!(publisher.answer.contains("a=candidate:"), "{}", publisher.answer);

    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let live = live_entry(&server, &admin, &stream.id).await.expect("live");
    assert_eq!(live["protocol"], "whip", "{live}");
    assert_eq!(live["video"]["codec"], "h264", "{live}");
    // H.264 is copied into the top rung, as from RTMP: constrained baseline from x264.
    assert!(
        master.contains("avc1.42"),
        "the copied rung keeps the source's codec string: {master}"
    );
    assert_plays(&stream.playback_url);

    // Same takeover rule as RTMP: a new publisher with the key replaces the WHIP one.
    let _rtmp = Source::small().publish(&stream.publish_url());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let protocol = live_entry(&server, &admin, &stream.id)
            .await
            .map(|l| l["protocol"].clone());
        if protocol == Some(Value::from("rtmp")) {
            break;
        }
        assert!(Instant::now() < deadline, "RTMP did not take over: {protocol:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = server.log();
    assert!(log.contains("WHIP session ended reason=kicked or taken over"), "{log}");
    // The taken-over session is gone.
    assert_eq!(publisher.stop().await, 404);
    let types = server.event_types(&admin, &stream.id).await;
    assert!(types.iter().any(|t| t == "stream.takeover"), "{types:?}");
}

const OFFER_AV1_ONLY: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 45\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
    a=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\n\
    a=sendonly\r\na=rtcp-mux\r\na=rtpmap:45 AV1/90000\r\n";

async fn post(url: &str, content_type: &str, key: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = http()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("POST")
}

async fn patch(url: &str, content_type: &str, if_match: &str, body: &str) -> u16 {
    http()
        .patch(url)
        .header("content-type", content_type)
        .header("if-match", if_match)
        .body(body.to_owned())
        .send()
        .await
        .expect("PATCH")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whip_resource_answers_every_protocol_case_with_its_status() {
    let server = Server::start_with(&[
        ("PULSE_WHIP_MAX_SESSIONS", "1"),
        ("PULSE_WHIP_STUN_SERVER", "stun://127.0.0.1:3478"),
    ]);
    let stream = server.create_stream("cases", Some("small"));
    let key = stream.stream_key.as_str();
    let url = endpoint(&server);

    // OPTIONS, and the CORS preflight a browser sends first.
    let options = http()
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .expect("OPTIONS");
    assert!(options.status().is_success());
    assert_eq!(options.headers()["accept-post"], "application/sdp");
    let preflight = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://publisher.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(allowed("access-control-allow-origin"), "*");
    assert!(allowed("access-control-allow-headers").contains("authorization"));
    assert!(allowed("access-control-allow-methods").contains("patch"));

    // Refusals before any WebRTC work.
    let missing = post(&url, "application/sdp", None, OFFER_AV1_ONLY).await;
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    // The offer is checked before the key (a takeover must never happen for
    // an offer we would refuse), so the unknown key comes with a usable one.
    let vp8_offer = OFFER_AV1_ONLY.replace("AV1/90000", "VP8/90000");
    let bad_key = post(&url, "application/sdp", Some("live_nope"), &vp8_offer).await;
    assert_eq!(bad_key.status().as_u16(), 401, "unknown key");
    assert_eq!(bad_key.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        post(&url, "text/plain", Some(key), OFFER_AV1_ONLY)
            .await
            .status()
            .as_u16(),
        415
    );
    let garbage = post(&url, "application/sdp", Some(key), "hello").await;
    assert_eq!(garbage.status().as_u16(), 400);
    let av1 = post(&url, "application/sdp", Some(key), OFFER_AV1_ONLY).await;
    assert_eq!(av1.status().as_u16(), 406);
    assert!(
        av1.text().await.unwrap_or_default().contains("AV1"),
        "the refusal says what was offered"
    );

    // A real session, then its resource.
    let publisher = GstWhip::publish(&url, key, "vp8").await.expect("accepted");
    assert!(publisher.resource.contains("/whip/sessions/"));
    let (status, _) = get_text(&format!("{}/healthz", server.base())).await;
    assert_eq!(status, 200);
    // The configured STUN server is offered to the client.
    assert_eq!(publisher.link, "<stun:127.0.0.1:3478>; rel=\"ice-server\"");
    // At capacity (whip.max_sessions = 1): 503 with Retry-After.
    match GstWhip::publish(&url, key, "vp8").await {
        Err(refused) => {
            assert_eq!(refused.status, 503, "{}", refused.body);
            assert_eq!(refused.retry_after, "10");
        }
        Ok(_) => panic!("a second session was admitted past whip.max_sessions"),
    }

    let resource = publisher.resource.clone();
    let etag = publisher.etag.clone();
    let fragment = "a=ice-ufrag:nobody\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
        a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host\r\n";
    const FRAG: &str = "application/trickle-ice-sdpfrag";
    assert_eq!(patch(&resource, "application/sdp", &etag, fragment).await, 415);
    assert_eq!(patch(&resource, FRAG, "\"stale\"", fragment).await, 412);
    // New ICE credentials: a restart, which we do not do.
    assert_eq!(patch(&resource, FRAG, &etag, fragment).await, 422);
    let candidate_only = "a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host\r\na=end-of-candidates\r\n";
    assert_eq!(patch(&resource, FRAG, &etag, candidate_only).await, 204);
    assert_eq!(patch(&resource, FRAG, &etag, "a=candidate:broken\r\n").await, 400);
    assert_eq!(patch(&resource, FRAG, &etag, "a=mid:nosuchmid\r\n").await, 400);
    let unknown = format!("{}/whip/sessions/doesnotexist", server.base());
    assert_eq!(patch(&unknown, FRAG, &etag, candidate_only).await, 404);

    assert_eq!(publisher.stop().await, 200);
    let again = http().delete(&resource).send().await.expect("DELETE").status().as_u16();
    assert_eq!(again, 404);
    assert_eq!(patch(&resource, FRAG, &etag, candidate_only).await, 404);

    // The slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match GstWhip::publish(&url, key, "vp8").await {
            Ok(second) => {
                assert_eq!(second.stop().await, 200);
                break;
            }
            Err(refused) if refused.status == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(refused) => panic!("{refused:?}"),
        }
    }
}
