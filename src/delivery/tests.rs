//! The delivery router against a real packager fed through its public
//! session API, requests through `tower::ServiceExt::oneshot` with the
//! client address a listener would insert: the per-client cap on held
//! requests, the per-token cap on viewer sessions, and the request span.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::*;
use crate::control::PlaybackTokens;
use crate::hls::{HlsSettings, Packagers};
use crate::media::{CmafChunk, LadderEvent, RenditionKind, RenditionSpec};

const PATIENCE: Duration = Duration::from_secs(10);

struct Fixture {
    service: PlaybackService,
    router: Router,
    token: String,
    ladder: mpsc::Sender<LadderEvent>,
    _dir: tempfile::TempDir,
}

/// Stream `s1` with one rendition and no part yet: a media playlist request
/// is held until the first part.
async fn fixture(configure: impl FnOnce(PlaybackService) -> PlaybackService) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = HlsSettings {
        part_target: Duration::from_millis(200),
        segment_target: Duration::from_secs(1),
        blocking_timeout: Some(Duration::from_secs(60)),
        encrypt: false,
        ..HlsSettings::default()
    };
    let packagers = Packagers::new(settings, crate::storage::Stores::fs(dir.path()).default_store());
    let packager = packagers.stream("s1");
    let (ladder, events) = mpsc::channel(16);
    tokio::spawn(packager.clone().run_session(events, SystemTime::now()));
    let spec = RenditionSpec {
        name: "720p".into(),
        kind: RenditionKind::Video {
            width: 1280,
            height: 720,
            framerate: 30.0,
        },
        bandwidth: 2_000_000,
        average_bandwidth: 2_000_000,
        codecs: "avc1.64001f".into(),
        passthrough: false,
    };
    ladder.send(LadderEvent::Renditions(vec![spec])).await.expect("send");
    let init = LadderEvent::Init {
        rendition: 0,
        data: Bytes::from_static(b"init"),
    };
    ladder.send(init).await.expect("send");
    let ready = tokio::time::timeout(PATIENCE, async {
        while packager.master_playlist("").is_none() {
            tokio::task::yield_now().await;
        }
    });
    ready.await.expect("renditions set");
    let tokens = PlaybackTokens::from_secret(&[7; 32], Duration::ZERO);
    let token = tokens.mint("s1", Duration::from_secs(3600), None).expect("token");
    let service = configure(PlaybackService::new(packagers, tokens));
    Fixture {
        router: router(service.clone()),
        service,
        token,
        ladder,
        _dir: dir,
    }
}

impl Fixture {
    async fn get(&self, client: &str, uri: &str) -> Response {
        let peer: SocketAddr = format!("{client}:40000").parse().expect("addr");
        let mut request = Request::builder().uri(uri).body(Body::empty()).expect("request");
        request.extensions_mut().insert(ConnectInfo(peer));
        self.router.clone().oneshot(request).await.expect("response")
    }

    fn playlist_uri(&self) -> String {
        format!("/live/s1/720p/index.m3u8?token={}", self.token)
    }

    /// The first part: every held playlist request is answered.
    async fn publish_part(&self) {
        let chunk = CmafChunk {
            data: Bytes::from_static(&[0; 188]),
            pts_ns: 0,
            duration_ns: 200_000_000,
            starts_segment: true,
            independent: true,
            source_arrival: None,
            encoder_delay: None,
        };
        let event = LadderEvent::Chunk { rendition: 0, chunk };
        self.ladder.send(event).await.expect("send");
    }
}

#[tokio::test]
async fn held_requests_over_the_per_client_cap_get_429_at_once() {
    let f = Arc::new(fixture(|s| s.with_blocking_cap(2)).await);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.get("192.0.2.1", &f.playlist_uri()).await.status() })
        })
        .collect();
    let other = {
        let f = f.clone();
        tokio::spawn(async move { f.get("192.0.2.2", &f.playlist_uri()).await.status() })
    };
    let client = "192.0.2.1".parse().expect("ip");
    let both_held = tokio::time::timeout(PATIENCE, async {
        while f.service.held_by(client) < 2 {
            tokio::task::yield_now().await;
        }
    });
    both_held.await.expect("two requests held");
    // A third from the same address is refused at once (before the cap it
    // was held like the others).
    let refused = tokio::time::timeout(PATIENCE, f.get("192.0.2.1", &f.playlist_uri()))
        .await
        .expect("a third held request was not refused at once");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["cache-control"], "no-store");
    f.publish_part().await;
    for task in held.into_iter().chain([other]) {
        let status = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("answered")
            .expect("join");
        assert_eq!(status, StatusCode::OK, "held ones, and another address's, are served");
    }
    let again = f.get("192.0.2.1", &f.playlist_uri()).await;
    assert_eq!(again.status(), StatusCode::OK, "slots are given back");
}

/// A reporter whose token is out of sessions.
struct Exhausted;

impl ViewerReporter for Exhausted {
    fn session_started(&self, _: &str, _: &str) -> Result<Option<String>, SessionsExhausted> {
        Err(SessionsExhausted {
            retry_after: Duration::from_millis(1500),
        })
    }

    fn playlist_requested(&self, _: &str, _: &str, _: &str, _: &str, _: &dyn Fn() -> bool) {}

    fn delivered(&self, _: &str, _: u64) {}
}

#[tokio::test]
async fn a_master_playlist_that_would_open_a_session_over_the_token_cap_is_429() {
    let f = fixture(|s| s.with_viewers(Arc::new(Exhausted))).await;
    let response = f
        .get("192.0.2.1", &format!("/live/s1/master.m3u8?token={}", f.token))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2", "whole seconds, rounded up");
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"], "too_many_requests");
}

/// Counts the sessions it is asked to open.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl ViewerReporter for Counting {
    fn session_started(&self, _: &str, _: &str) -> Result<Option<String>, SessionsExhausted> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some("v1".into()))
    }

    fn playlist_requested(&self, _: &str, _: &str, _: &str, _: &str, _: &dyn Fn() -> bool) {}

    fn delivered(&self, _: &str, _: u64) {}
}

#[tokio::test]
async fn polling_a_stream_that_is_still_starting_opens_no_viewer_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let packagers = Packagers::new(
        HlsSettings::default(),
        crate::storage::Stores::fs(dir.path()).default_store(),
    );
    // Published, but the ladder has not told its renditions yet.
    let _starting = packagers.stream("s2");
    let tokens = PlaybackTokens::from_secret(&[7; 32], Duration::ZERO);
    let token = tokens.mint("s2", Duration::from_secs(3600), None).expect("token");
    let counting = Arc::new(Counting::default());
    let service = PlaybackService::new(packagers, tokens).with_viewers(counting.clone());
    for _ in 0..50 {
        let polled = service.master_playlist("s2", Some(&token));
        assert!(matches!(polled, Err(DeliveryError::NotFound)), "{polled:?}");
    }
    assert_eq!(
        counting.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a player retrying during start-up would use up its token's sessions"
    );
}

#[tokio::test]
async fn the_request_span_never_holds_the_token() {
    let f = fixture(|s| s).await;
    f.publish_part().await;
    // The test runtime polls on this thread, so the capture sees it.
    let captured = crate::logging::CapturedLog::start(tracing::Level::DEBUG);
    let uri = format!("{}&_HLS_msn=0&_HLS_part=0", f.playlist_uri());
    let response = f.get("192.0.2.1", &uri).await;
    assert_eq!(response.status(), StatusCode::OK);
    let log = captured.text();
    assert!(
        log.contains("uri=/live/s1/720p/index.m3u8?token=…&_HLS_msn=0&_HLS_part=0"),
        "{log}"
    );
    let signature = f.token.rsplit('.').next().expect("jwt");
    assert!(!log.contains(signature), "{log}");
}
