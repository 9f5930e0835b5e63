//! The router and service against a real SQLite store, through
//! `tower::ServiceExt::oneshot`: no sockets. The live side is a recording
//! fake, since no media runs here; the end-to-end tests use the real one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
        viewers: 0,
    }
}

/// The real reporting stack over the fixture's store; webhooks may reach loopback.
fn reporting(store: Arc<SqliteStore>) -> super::Reporting {
    let metrics = crate::control::metrics::Metrics::new().expect("metrics");
    let usage = crate::control::usage::UsageMeter::new(store.clone());
    super::Reporting {
        webhooks: webhook_service(store.clone()),
        audience: crate::control::audience::Audience::new(
            crate::control::viewers::ViewerSettings::default(),
            usage,
            PlaybackTokens::from_secret(&[5; 32], Duration::ZERO),
            metrics,
        ),
        usage: store,
        recordings: None,
        sources: None,
    }
}

fn webhook_service(store: Arc<SqliteStore>) -> Arc<crate::control::webhooks::WebhookService> {
    use crate::control::webhooks::{retry::RetrySchedule, sender::Sender, AddressPolicy, DispatchSettings, Dispatcher};
    let events: Arc<dyn crate::control::EventStore> = store;
    let policy = Arc::new(AddressPolicy::new(vec!["127.0.0.0/8".parse().expect("net")]));
    let lifecycle = Arc::new(crate::control::Lifecycle::new(
        events.clone(),
        crate::control::EventBus::default(),
        100,
        Duration::from_secs(30),
    ));
    let sender = Sender::new(policy.clone(), Duration::from_secs(2)).expect("client");
    let dispatcher = Dispatcher::new(
        events.clone(),
        sender,
        DispatchSettings {
            schedule: RetrySchedule::from_secs(&[1]),
            lanes_in_flight: 2,
        },
    );
    Arc::new(crate::control::webhooks::WebhookService::new(
        events,
        policy,
        dispatcher,
        lifecycle,
        Duration::from_secs(3600),
    ))
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    live: Arc<FakeLive>,
    service: AdminService,
    router: axum::Router,
    global: String,
    /// What the fake GStreamer readiness probe answers.
    media_ok: Arc<AtomicBool>,
}

async fn fixture() -> Fixture {
    fixture_with_body_limit(DEFAULT_BODY_LIMIT).await
}

async fn fixture_with_body_limit(body_limit_bytes: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.expect("open"));
    let live = Arc::new(FakeLive::default());
    let media_ok = Arc::new(AtomicBool::new(true));
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
            body_limit_bytes,
        },
        {
            let media_ok = media_ok.clone();
            Arc::new(move || match media_ok.load(Ordering::Relaxed) {
                true => Ok(()),
                false => Err("GStreamer element x264enc is missing".to_owned()),
            })
        },
        reporting(store.clone()),
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
        router: router(service.clone()),
        service,
        global,
        media_ok,
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
            raw("application/json", vec![b' '; DEFAULT_BODY_LIMIT + 10]),
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
    let (status, wb) = call(
        &f,
        "POST",
        &format!("/api/v1/apps/{b}/webhooks"),
        Some(&f.global),
        Some(json!({ "url": "http://127.0.0.1:9/hook" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{wb}");
    let wb = wb["id"].as_str().expect("webhook id").to_owned();

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
        ("GET", format!("/api/v1/apps/{b}/streams/{sb}/viewers")),
        ("GET", format!("/api/v1/apps/{a}/streams/{sb}/viewers")),
        ("GET", format!("/api/v1/apps/{b}/usage")),
        ("GET", format!("/api/v1/apps/{b}/usage.csv")),
        ("GET", format!("/api/v1/apps/{b}/events")),
        ("GET", format!("/api/v1/apps/{b}/webhooks")),
        ("GET", format!("/api/v1/apps/{b}/webhooks/{wb}")),
        ("GET", format!("/api/v1/apps/{a}/webhooks/{wb}")),
        ("GET", format!("/api/v1/apps/{a}/webhooks/{wb}/deliveries")),
        ("DELETE", format!("/api/v1/apps/{b}/webhooks/{wb}")),
        ("POST", format!("/api/v1/apps/{b}/webhooks/{wb}/test")),
        ("POST", format!("/api/v1/apps/{b}/webhooks/{wb}/rotate-secret")),
        ("GET", format!("/api/v1/apps/{b}/webhooks/{wb}/deliveries")),
        ("POST", format!("/api/v1/apps/{b}/webhooks/{wb}/redeliver-failed")),
        ("GET", format!("/api/v1/events/stream?app_id={b}")),
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
    assert_eq!(body["checks"], json!({ "store": "ok", "media": "ok" }));
    f.media_ok.store(false, Ordering::Relaxed);
    let (status, body) = call(&f, "GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (&body["failed"], &body["checks"]["store"]),
        (&json!("media"), &json!("ok"))
    );
    assert!(body["reason"].as_str().unwrap_or("").contains("x264enc"), "{body}");
    f.media_ok.store(true, Ordering::Relaxed);
    f.store.close().await;
    let (status, body) = call(&f, "GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["failed"], "store");
    assert_eq!(body["checks"]["media"], "ok");
    let (status, _) = call(&f, "GET", "/livez", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn raw(f: &Fixture, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", f.global))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let response = f.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {bytes:?}"));
    (status, body)
}

/// The newest audit records with this action.
async fn audited(f: &Fixture, action: &str) -> Vec<crate::control::model::AuditEntry> {
    f.store
        .audit(&crate::control::model::AuditFilter {
            action: Some(action.to_owned()),
            ..Default::default()
        })
        .await
        .expect("audit")
}

#[tokio::test]
async fn a_mutation_refused_for_its_body_is_audited_too() {
    let f = fixture().await;
    let (status, _) = raw(
        &f,
        "POST",
        "/api/v1/apps",
        "application/json",
        br#"{"name":"a","nope":1}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = raw(&f, "POST", "/api/v1/apps", "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let entries = audited(&f, "app.create").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].result.starts_with("error: 415"), "{entries:?}");
    assert!(entries[1].result.starts_with("error: 422"), "{entries:?}");
    assert_eq!(entries[0].target, "app");

    let (_, created) = call(
        &f,
        "POST",
        "/api/v1/apps/app_default/streams",
        Some(&f.global),
        Some(json!({ "name": "s" })),
    )
    .await;
    let id = created["stream"]["id"].as_str().expect("id").to_owned();
    let (status, _) = raw(
        &f,
        "PATCH",
        &format!("/api/v1/apps/app_default/streams/{id}"),
        "application/json",
        b"{\"enabled\": ".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let entries = audited(&f, "stream.update").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].target, format!("stream/{id}"));
    assert_eq!(entries[0].app_id.as_deref(), Some("app_default"));
    assert!(entries[0].result.starts_with("error: 400"), "{entries:?}");
}

#[tokio::test]
async fn ids_that_do_not_decode_are_json_404s_and_audited() {
    let f = fixture().await;
    let (status, body) = call(&f, "GET", "/api/v1/apps/%FF", Some(&f.global), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = call(
        &f,
        "POST",
        "/api/v1/apps/app_default/streams/%C3%28/disable",
        Some(&f.global),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let entries = audited(&f, "stream.disable").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].target, "stream/%C3%28");
    assert!(entries[0].result.starts_with("error: 404"), "{entries:?}");
    // The bare prefix is a JSON 404 too.
    let (status, body) = call(&f, "GET", "/api/v1/", Some(&f.global), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn the_audit_limit_outside_its_documented_range_is_refused() {
    let f = fixture().await;
    for limit in ["0", "1001"] {
        let (status, body) = call(
            &f,
            "GET",
            &format!("/api/v1/audit?limit={limit}"),
            Some(&f.global),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{limit}: {body}");
        assert!(body["message"].as_str().unwrap_or("").contains("limit"), "{body}");
    }
    let (status, _) = call(&f, "GET", "/api/v1/audit?limit=1000", Some(&f.global), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_body_limit_comes_from_the_settings() {
    let f = fixture_with_body_limit(2048).await;
    let name = "n".repeat(3000);
    let (status, body) = raw(
        &f,
        "POST",
        "/api/v1/apps",
        "application/json",
        json!({ "name": name }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (status, _) = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.global),
        Some(json!({ "name": "fits" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_must_be_an_object_not_an_array_serde_would_read_in_field_order() {
    let f = fixture().await;
    let (status, body) = raw(
        &f,
        "POST",
        "/api/v1/apps",
        "application/json",
        br#"["sneaky",null,null,null,null,null,null,null]"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("object"), "{body}");
    let apps = f.store.list_apps().await.expect("apps");
    assert!(apps.iter().all(|a| a.name != "sneaky"), "{apps:?}");
    let (status, _) = raw(
        &f,
        "POST",
        "/api/v1/apps",
        "application/json",
        b" \n {\"name\":\"ok\"}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

fn principal(token_id: &str, app_id: Option<&str>) -> Principal {
    Principal {
        token_id: token_id.into(),
        app_id: app_id.map(str::to_owned),
        ip: Some("192.0.2.7".into()),
    }
}

async fn app_named(f: &Fixture, name: &str) -> String {
    let ops = principal("at_ops", None);
    let body: dto::CreateApp = serde_json::from_value(json!({ "name": name })).expect("body");
    f.service.create_app(&ops, body).await.expect("app").id
}

#[tokio::test]
async fn deleting_an_app_kicks_its_live_streams_and_only_those() {
    let f = fixture().await;
    let (a, b) = (app_named(&f, "a").await, app_named(&f, "b").await);
    f.live.live.lock().push(live_entry("st_a1", &a));
    f.live.live.lock().push(live_entry("st_a2", &a));
    f.live.live.lock().push(live_entry("st_b1", &b));
    let scoped = principal("at_a", Some(&a));
    assert_eq!(
        f.service.delete_app(&scoped, &a).await.map_err(|e| e.status),
        Err(StatusCode::FORBIDDEN),
        "an app token deleting its own app"
    );
    assert!(f.live.kicked.lock().is_empty());
    f.service
        .delete_app(&principal("at_ops", None), &a)
        .await
        .expect("delete");
    let mut kicked = f.live.kicked.lock().clone();
    kicked.sort();
    assert_eq!(kicked, ["st_a1", "st_a2"]);
    let entries = audited(&f, "app.delete").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].result.as_str()),
        ("at_ops", "ok")
    );
    assert_eq!(entries[0].ip.as_deref(), Some("192.0.2.7"));
    assert!(entries[1].result.starts_with("error: 403"), "{entries:?}");
}

#[tokio::test]
async fn an_app_token_may_not_change_its_app_or_manage_admin_tokens() {
    let f = fixture().await;
    let a = app_named(&f, "a").await;
    let scoped = principal("at_a", Some(&a));
    let patch: dto::UpdateApp = serde_json::from_value(json!({ "max_streams": 1000 })).expect("body");
    assert_eq!(
        f.service.update_app(&scoped, &a, patch).await.map_err(|e| e.status),
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        f.service.list_admin_tokens(&scoped).await.map_err(|e| e.status),
        Err(StatusCode::FORBIDDEN)
    );
    let visible = f.service.list_apps(&scoped).await.expect("apps");
    assert_eq!(visible.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [a.as_str()]);
    // Its attempt is in its own app's log, beside the operator's creation of the app.
    let own = f
        .service
        .audit_log(&scoped, dto::AuditQuery::default())
        .await
        .expect("audit");
    let actions: Vec<(&str, &str)> = own.iter().map(|e| (e.actor.as_str(), e.action.as_str())).collect();
    assert_eq!(actions, [("at_a", "app.update"), ("at_ops", "app.create")]);
    assert!(own.iter().all(|e| e.app_id.as_deref() == Some(a.as_str())), "{own:?}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let f = fixture().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request = Request::builder()
            .uri("/api/v1/apps")
            .header("authorization", format!("{scheme} {}", f.global))
            .body(Body::empty())
            .expect("req");
        let response = f.router.clone().oneshot(request).await.expect("resp");
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    let request = Request::builder()
        .uri("/api/v1/apps")
        .header("authorization", format!("Basic {}", f.global))
        .body(Body::empty())
        .expect("req");
    let response = f.router.clone().oneshot(request).await.expect("resp");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_probe_flood_while_not_ready_logs_one_line() {
    let f = fixture().await;
    f.media_ok.store(false, Ordering::Relaxed);
    // The test runtime polls on this thread, so the capture sees it.
    let captured = crate::logging::CapturedLog::start(tracing::Level::INFO);
    for _ in 0..200 {
        let (status, _) = call(&f, "GET", "/readyz", None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let log = captured.text();
    assert_eq!(log.matches("not ready").count(), 1, "{log}");
}
