//! Publish authorisation end to end: the real binary, real ffmpeg
//! publishers, and — for `auth.mode = "http"` — a real HTTP server in this
//! test playing the operator's control plane.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::{get_text, wait_for_200, Proc, Server, Source};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "test-control-plane-shared-secret";

/// How the fake control plane answers.
#[derive(Clone)]
enum Answer {
    Allow(Value),
    Deny(u16, Value),
    Sleep(Duration),
}

#[derive(Clone)]
struct ControlPlane {
    answer: Arc<Mutex<Answer>>,
    /// Bodies of the requests that carried a valid signature.
    seen: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<Mutex<u32>>,
}

fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers.get("x-pulse-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")) else {
        return false;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let fresh = t.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= 60);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    fresh && hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

async fn auth_endpoint(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if !signature_ok(&headers, &body) {
        *cp.bad_signatures.lock().expect("lock") += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let mut parsed: Value = serde_json::from_slice(&body).expect("JSON body");
    let header_id = headers
        .get("x-pulse-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    parsed["header_request_id"] = json!(header_id);
    cp.seen.lock().expect("lock").push(parsed);
    let answer = cp.answer.lock().expect("lock").clone();
    match answer {
        Answer::Allow(body) => axum::Json(body).into_response(),
        Answer::Deny(status, body) => (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response(),
        Answer::Sleep(d) => {
            tokio::time::sleep(d).await;
            axum::Json(json!({})).into_response()
        }
    }
}

async fn start_control_plane(answer: Answer) -> (ControlPlane, SocketAddr) {
    let cp = ControlPlane {
        answer: Arc::new(Mutex::new(answer)),
        seen: Arc::default(),
        bad_signatures: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/auth", post(auth_endpoint))
        .with_state(cp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (cp, addr)
}

fn http_mode(addr: SocketAddr, extra: &[(&'static str, &'static str)]) -> Server {
    let url = format!("http://{addr}/auth");
    let url: &'static str = Box::leak(url.into_boxed_str());
    let mut env = vec![
        ("PULSE_AUTH_MODE", "http"),
        ("PULSE_AUTH_URL", url),
        ("PULSE_AUTH_SECRET", SECRET),
        ("PULSE_AUTH_TIMEOUT_MS", "700"),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

fn tiny(seconds: Option<u32>) -> Source {
    Source {
        video: Some((320, 180)),
        seconds,
        video_kbps: 300,
        ..Source::small()
    }
}

/// Publishes for a moment: Ok(()) if ffmpeg was still streaming after
/// `hold`, else Err(its output) once it exited.
fn try_publish(server: &Server, key: &str, hold: Duration) -> Result<Proc, String> {
    let mut publisher = tiny(None).publish(&format!("rtmp://{}/live/{key}", server.rtmp));
    match publisher.wait_timeout(hold) {
        None => Ok(publisher),
        Some(_) => Err(publisher.log()),
    }
}

/// A publish that must be refused: returns what ffmpeg printed.
fn refused(server: &Server, key: &str, why: &str) -> String {
    match try_publish(server, key, Duration::from_secs(10)) {
        Ok(_) => panic!("publish with {key:?} was accepted ({why})"),
        Err(out) => out,
    }
}

/// A playback token signed with the server's own key (the one in the data dir).
fn server_token(server: &Server, stream_id: &str) -> String {
    let hex_secret = std::fs::read_to_string(server.data_dir.path().join("playback-signing.key")).expect("secret");
    let secret = hex::decode(hex_secret.trim()).expect("hex");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": stream_id, "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_allows_and_names_the_stream() {
    let (cp, addr) = start_control_plane(Answer::Allow(
        json!({ "stream_id": "cam-42", "profile": "passthrough", "extra": "ignored" }),
    ))
    .await;
    let server = http_mode(addr, &[]);
    let _publisher =
        try_publish(&server, "customer-key-1", Duration::from_secs(3)).expect("allowed publish keeps streaming");
    let url = format!(
        "{}/live/cam-42/master.m3u8?token={}",
        server.base(),
        server_token(&server, "cam-42")
    );
    let master = wait_for_200(&url, Duration::from_secs(20)).await;
    assert!(master.contains("#EXT-X-STREAM-INF"), "{master}");

    let seen = cp.seen.lock().expect("lock").clone();
    assert_eq!(*cp.bad_signatures.lock().expect("lock"), 0, "every request was signed");
    let first = seen.first().expect("the control plane was asked");
    assert_eq!(first["action"], "publish");
    assert_eq!(first["protocol"], "rtmp");
    assert_eq!(first["app"], "live");
    assert_eq!(first["stream_key"], "customer-key-1");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(!first["request_id"].as_str().unwrap_or("").is_empty());
    assert_eq!(first["request_id"], first["header_request_id"]);
    assert!(!server.log().contains(SECRET), "the HMAC secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_reaches_the_encoder_with_its_reason() {
    let (_cp, addr) =
        start_control_plane(Answer::Deny(403, json!({ "reason": "subscription expired\nfor acme" }))).await;
    let server = http_mode(addr, &[]);
    let out = refused(&server, "key-x", "denied");
    assert!(out.contains("subscription expiredfor acme"), "ffmpeg said: {out}");
    // No reason: a generic message naming the status.
    let (_cp, addr) = start_control_plane(Answer::Deny(401, json!("nope"))).await;
    let server = http_mode(addr, &[]);
    let out = refused(&server, "key-x", "denied");
    assert!(
        out.contains("denied by the control plane (HTTP 401)"),
        "ffmpeg said: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_absent_control_plane_denies_fail_closed() {
    let (_cp, addr) = start_control_plane(Answer::Sleep(Duration::from_secs(3))).await;
    let server = http_mode(addr, &[]);
    let started = Instant::now();
    let out = refused(&server, "key-slow", "denied on timeout");
    assert!(
        out.contains("did not answer in time (fail closed)"),
        "ffmpeg said: {out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout (700 ms) was not applied"
    );
    assert!(
        server
            .log()
            .contains("auth callback timed out: publish denied (fail closed)"),
        "{}",
        server.log()
    );

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let server = http_mode(closed, &[]);
    let out = refused(&server, "key-gone", "denied when unreachable");
    assert!(
        out.contains("control plane unreachable (fail closed)"),
        "ffmpeg said: {out}"
    );
    assert!(server
        .log()
        .contains("auth callback unreachable: publish denied (fail closed)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outage_cache_bridges_a_blip_but_never_a_deny() {
    let (cp, addr) = start_control_plane(Answer::Allow(
        json!({ "stream_id": "cached", "profile": "passthrough" }),
    ))
    .await;
    let server = http_mode(addr, &[("PULSE_AUTH_CACHE_TTL_SECS", "4")]);
    drop(try_publish(&server, "key-c", Duration::from_secs(2)).expect("allowed"));

    // The control plane fails: the recent allow carries the reconnect.
    *cp.answer.lock().expect("lock") = Answer::Deny(503, json!({ "reason": "maintenance" }));
    drop(try_publish(&server, "key-c", Duration::from_secs(2)).expect("allowed from the outage cache"));
    assert!(server.log().contains("allowed from the outage cache"));
    // Another key was never allowed: nothing to reuse.
    let out = refused(&server, "key-other", "no cached allow");
    assert!(out.contains("HTTP 503"), "ffmpeg said: {out}");

    // Past the TTL the blip is a deny again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = refused(&server, "key-c", "cache expired");
    assert!(out.contains("fail closed"), "ffmpeg said: {out}");

    // A deny from a working control plane is never overridden by the cache.
    *cp.answer.lock().expect("lock") = Answer::Allow(json!({ "stream_id": "cached", "profile": "passthrough" }));
    drop(try_publish(&server, "key-c", Duration::from_secs(2)).expect("allowed again"));
    *cp.answer.lock().expect("lock") = Answer::Deny(403, json!({ "reason": "key revoked" }));
    let out = refused(&server, "key-c", "revoked");
    assert!(out.contains("key revoked"), "ffmpeg said: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_keys_is_throttled_but_the_streaming_encoder_gets_back_in() {
    let server = Server::start_with(&[
        ("PULSE_AUTH_FAILED_ATTEMPTS_BURST", "3"),
        ("PULSE_AUTH_FAILED_ATTEMPTS_PER_MINUTE", "1"),
    ]);
    let stream = server.create_stream("throttled", Some("passthrough"));
    // The encoder streams, then drops (as OBS does on a network blip).
    drop(try_publish(&server, &stream.stream_key, Duration::from_secs(2)).expect("good key"));

    for attempt in 0..4 {
        let out = refused(&server, &format!("live_guess{attempt}"), "bad key");
        assert!(out.contains("unknown stream key"), "attempt {attempt}: {out}");
    }
    let out = refused(&server, "live_guess_more", "throttled");
    assert!(out.contains("too many failed publish attempts"), "{out}");
    // Even a real key that never streamed from here waits out the throttle...
    let other = server.create_stream("never-streamed", Some("passthrough"));
    let out = refused(&server, &other.stream_key, "throttled");
    assert!(out.contains("too many failed publish attempts"), "{out}");
    // ...but the encoder that was streaming reconnects at once.
    drop(try_publish(&server, &stream.stream_key, Duration::from_secs(2)).expect("known good key gets through"));
    let log = server.log();
    for key in [&stream.stream_key, &other.stream_key] {
        assert!(!log.contains(key.as_str()), "a stream key reached the log");
    }
    assert!(
        server.log().contains("code=\"rate_limited\"") || server.log().contains("code=rate_limited"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_settings_apply_to_its_streams() {
    let server = Server::start();
    let app = server.cli_json(&[
        "app",
        "create",
        "--name",
        "clear-tv",
        "--no-encrypt",
        "--max-streams",
        "1",
        "--profile",
        "passthrough",
    ]);
    let app_id = app["id"].as_str().expect("id");
    let first = server.create_stream_in(app_id, "one", None);
    let second = server.create_stream_in(app_id, "two", None);

    let _live = try_publish(&server, &first.stream_key, Duration::from_secs(2)).expect("first stream");
    let out = refused(&server, &second.stream_key, "over the app's limit");
    assert!(out.contains("maximum of 1 live streams"), "{out}");

    // The app's profile (passthrough: one rendition) and no encryption.
    let master = common::wait_until_live(&server, &first, Duration::from_secs(30)).await;
    let uris = common::playlist::media_uris(&master);
    assert_eq!(uris.iter().filter(|u| !u.contains("audio")).count(), 1, "{master}");
    let (status, media) = get_text(&first.url(&server.base(), &uris[0])).await;
    assert_eq!(status, 200);
    assert!(media.contains("#EXTINF") && !media.contains("#EXT-X-KEY"), "{media}");
}
