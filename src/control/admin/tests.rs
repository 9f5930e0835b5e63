//! The router and service against a real SQLite store, through
//! `tower::ServiceExt::oneshot`: no sockets. The live side is a recording
//! fake, since no media runs here; the end-to-end tests use the real one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::control::live::{LiveStreamStats, LiveStreams};
use crate::control::model::NewAdminToken;
use crate::control::{ControlStore, PlaybackTokens, SqliteStore};

#[derive(Default)]
struct FakeLive {
    live: Mutex<Vec<LiveStreamStats>>,
    kicked: Mutex<Vec<String>>,
}

impl LiveStreams for FakeLive {
    fn live(&self, app_id: Option<&str>) -> Vec<LiveStreamStats> {
        self.live
            .lock()
            .iter()
            .filter(|s| app_id.is_none_or(|a| s.app_id == a))
            .cloned()
            .collect()
    }
    fn live_stream(&self, stream_id: &str) -> Option<LiveStreamStats> {
        self.live.lock().iter().find(|s| s.stream_id == stream_id).cloned()
    }
    fn kick(&self, stream_id: &str, _reason: &str) -> bool {
        self.kicked.lock().push(stream_id.to_owned());
        self.live.lock().iter().any(|s| s.stream_id == stream_id)
    }
}

fn live_entry(stream_id: &str, app_id: &str) -> LiveStreamStats {
    LiveStreamStats {
        stream_id: stream_id.into(),
        app_id: app_id.into(),
        session: 1,
        protocol: "rtmp".into(),
        client_ip: "127.0.0.1".into(),
        started_at_ms: 0,
        uptime_secs: 1.0,
        video: None,
        audio: None,
        input_kbps: 0.0,
        ingest_bytes: 0,
        frames_received: 0,
        frames_dropped: 0,
        renditions: Vec::new(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    live: Arc<FakeLive>,
    router: axum::Router,
    global: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.expect("open"));
    let live = Arc::new(FakeLive::default());
    let mut profiles = BTreeMap::new();
    profiles.insert(
        "small".to_owned(),
        crate::media::LadderProfile::from_toml("passthrough = true\n").expect("profile"),
    );
    let service = AdminService::new(
        store.clone(),
        live.clone(),
        PlaybackTokens::from_secret(&[5; 32], Duration::ZERO),
        Arc::new(profiles),
        AdminSettings {
            public_http_base: "http://edge.test".into(),
            public_rtmp_base: "rtmp://edge.test/live".into(),
        },
        Arc::new(|| Ok(())),
    );
    let (_, global) = store
        .create_admin_token(NewAdminToken {
            name: "ops".into(),
            app_id: None,
        })
        .await
        .expect("token");
    Fixture {
        _dir: dir,
        store,
        live,
        router: router(service),
        global,
    }
}

async fn call(f: &Fixture, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = f.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_401_with_a_challenge() {
    let f = fixture().await;
    for token in [None, Some("pe_admin_wrong"), Some("")] {
        let mut request = Request::builder().uri("/api/v1/apps");
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = f
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get("www-authenticate").is_some());
    }
    let (status, body) = call(&f, "GET", "/api/v1/apps", Some(&f.global), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(1), "the default app: {body}");
}

#[tokio::test]
async fn bad_bodies_get_useful_4xx_json() {
    let f = fixture().await;
    let (status, body) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "a", "max_stream": 3 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap_or("").contains("max_stream"), "{body}");
    let (status, _) = call(&f, "POST", "/api/v1/apps", Some(&f.global), Some(json!({ "name": 5 }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "bad name!" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "x", "profile": "nope" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"].as_str().unwrap_or("").contains("unknown profile"),
        "{body}"
    );

    let raw = |content_type: &str, body: Vec<u8>| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/apps")
            .header("authorization", format!("Bearer {}", f.global))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("req")
    };
    for (request, expected) in [
        (
            raw("application/json", b"{\"name\": ".to_vec()),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw("text/plain", b"{\"name\":\"x\"}".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw("application/json", vec![b' '; BODY_LIMIT + 10]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let response = f.router.clone().oneshot(request).await.expect("resp");
        assert_eq!(response.status(), expected);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    }
    let (status, body) = call(&f, "GET", "/api/v1/nope", Some(&f.global), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = call(&f, "GET", "/api/v1/audit?limit=lots", Some(&f.global), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_app_token_is_confined_to_its_app_and_every_attempt_is_audited() {
    let f = fixture().await;
    let (_, a) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "a" })),
    )
    .await;
    let (_, b) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "b" })),
    )
    .await;
    let (a, b) = (
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    );
    let (_, token_a) = call(
        &f,
        "POST",
        "/api/v1/admin-tokens",
        Some(&f.global),
        Some(json!({ "name": "a-ops", "app_id": a })),
    )
    .await;
    let token_a = token_a["secret"].as_str().expect("secret").to_owned();
    let (_, sb) = call(
        &f,
        "POST",
        &format!("/api/v1/apps/{b}/streams"),
        Some(&f.global),
        Some(json!({ "name": "b1" })),
    )
    .await;
    let sb = sb["stream"]["id"].as_str().expect("stream id").to_owned();
    f.live.live.lock().push(live_entry(&sb, &b));

    let (status, apps) = call(&f, "GET", "/api/v1/apps", Some(&token_a), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(apps.as_array().map(|a| a.len()), Some(1));
    assert_eq!(apps[0]["id"], a.as_str());
    for (method, path) in [
        ("GET", format!("/api/v1/apps/{b}")),
        ("GET", format!("/api/v1/apps/{b}/streams")),
        ("GET", format!("/api/v1/apps/{b}/streams/{sb}")),
        ("POST", format!("/api/v1/apps/{b}/streams/{sb}/disable")),
        ("GET", format!("/api/v1/live/{sb}")),
        ("POST", format!("/api/v1/live/{sb}/kick")),
    ] {
        let (status, _) = call(&f, method, &path, Some(&token_a), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, _) = call(&f, "POST", "/api/v1/apps", Some(&token_a), Some(json!({ "name": "c" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, live) = call(&f, "GET", "/api/v1/live", Some(&token_a), None).await;
    assert_eq!(live.as_array().map(Vec::len), Some(0), "B's live stream leaked: {live}");
    assert!(f.live.kicked.lock().is_empty(), "A's token kicked B's publisher");
    let stream = f.store.stream(&sb).await.expect("lookup").expect("still there");
    assert!(stream.enabled, "A's token disabled B's stream");

    // The attempts are in the log under A's token, and A sees only its own app's records.
    let (_, audit) = call(
        &f,
        "GET",
        "/api/v1/audit?result=error&action=stream.disable",
        Some(&f.global),
        None,
    )
    .await;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert!(audit[0]["result"].as_str().unwrap_or("").starts_with("error: 404"));
    let (_, own) = call(&f, "GET", "/api/v1/audit", Some(&token_a), None).await;
    assert!(
        own.as_array().expect("list").iter().all(|e| e["app_id"] == a.as_str()),
        "{own}"
    );
}

#[tokio::test]
async fn disabling_or_rotating_a_live_stream_kicks_its_publisher_at_once() {
    let f = fixture().await;
    let (_, created) = call(
        &f,
        "POST",
        "/api/v1/apps/app_default/streams",
        Some(&f.global),
        Some(json!({ "name": "s" })),
    )
    .await;
    let id = created["stream"]["id"].as_str().expect("id").to_owned();
    assert!(created["stream_key"].as_str().expect("key").starts_with("live_"));
    f.live.live.lock().push(live_entry(&id, "app_default"));
    let (status, stream) = call(
        &f,
        "POST",
        &format!("/api/v1/apps/app_default/streams/{id}/disable"),
        Some(&f.global),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stream["enabled"], false);
    assert_eq!(f.live.kicked.lock().as_slice(), std::slice::from_ref(&id));
    let (status, rotated) = call(
        &f,
        "POST",
        &format!("/api/v1/apps/app_default/streams/{id}/rotate-key"),
        Some(&f.global),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["stream_key"], created["stream_key"]);
    assert_eq!(f.live.kicked.lock().len(), 2);
    let (_, listed) = call(&f, "GET", "/api/v1/apps/app_default/streams", Some(&f.global), None).await;
    let text = listed.to_string();
    for secret in [&created["stream_key"], &rotated["stream_key"]] {
        assert!(!text.contains(secret.as_str().expect("key")), "a stream key is listed");
    }
}

#[tokio::test]
async fn the_openapi_document_names_every_route_and_the_csv_export_matches_the_json() {
    let f = fixture().await;
    let (status, doc) = call(&f, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/apps",
        "/apps/{app_id}",
        "/apps/{app_id}/streams/{stream_id}/rotate-key",
        "/apps/{app_id}/playback-keys/{kid}",
        "/admin-tokens/{token_id}",
        "/live/{stream_id}/kick",
        "/audit.csv",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "csv-app" })),
    )
    .await;
    let request = Request::builder()
        .uri("/api/v1/audit.csv?action=app.create")
        .header("authorization", format!("Bearer {}", f.global))
        .body(Body::empty())
        .expect("req");
    let response = f.router.clone().oneshot(request).await.expect("resp");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/csv"));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let mut reader = ::csv::Reader::from_reader(&bytes[..]);
    let rows: Vec<::csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("csv");
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][4], "app.create");
    assert_eq!(&rows[0][7], "ok");
}

#[tokio::test]
async fn readiness_reports_the_failing_check() {
    let f = fixture().await;
    let (status, body) = call(&f, "GET", "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    f.store.close().await;
    let (status, body) = call(&f, "GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["failed"], "store");
    let (status, _) = call(&f, "GET", "/livez", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
