use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use super::service::token_param;
use super::{DeliveryError, PlaybackService, PlaylistQuery};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
/// Parts, segments and init segments never change once listed, and carry no
/// per-viewer data, so a CDN may keep them.
const MEDIA_CACHE: &str = "public, max-age=86400, immutable";

const LIVE_MEDIA_PLAYLIST: &str = "/live/{stream}/{rendition}/index.m3u8";
const LIVE_MEDIA_FILE: &str = "/live/{stream}/{rendition}/{file}";

/// The routes that hold a request on purpose: blocking playlist reloads and
/// preload-hinted parts. They are bounded by the packager's blocking timeout
/// (and capped per client by `http.max_blocking_per_ip`), so the listener's
/// request timeout leaves them alone.
pub const LONG_LIVED_ROUTES: &[&str] = &[LIVE_MEDIA_PLAYLIST, LIVE_MEDIA_FILE];

pub fn router(service: PlaybackService) -> Router {
    // Only playlists are compressed: media is already dense, keys are tiny.
    let playlists = Router::new()
        .route("/live/{stream}/master.m3u8", get(master))
        .route(LIVE_MEDIA_PLAYLIST, get(media_playlist))
        .route("/vod/{recording}/master.m3u8", get(vod_master))
        .route("/vod/{recording}/{rendition}/index.m3u8", get(vod_media_playlist))
        .layer(CompressionLayer::new().gzip(true));
    Router::new()
        .merge(playlists)
        .route("/live/{stream}/key/{key}", get(key))
        .route(LIVE_MEDIA_FILE, get(media_file))
        .route("/vod/{recording}/key/{key}", get(vod_key))
        .route("/vod/{recording}/{rendition}/{file}", get(vod_media_file))
        .route("/healthz", get(|| async { "ok" }))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(service)
}

/// tower-http's default span, with the URI redacted: a playback token in
/// the query is a credential, and must not reach the log at any level.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %crate::httpd::redacted_uri(request.uri()),
        version = ?request.version(),
    )
}

/// The client's address, when a listener put it there (tests may not).
struct Client(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Client(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}

fn playlist_response(body: String, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

async fn master(
    State(service): State<PlaybackService>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let token = query.as_deref().and_then(token_param);
    let body = service.master_playlist(&stream, token.as_deref())?;
    Ok(playlist_response(body, "private, max-age=1"))
}

async fn media_playlist(
    State(service): State<PlaybackService>,
    Client(client): Client,
    Path((stream, rendition)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let query = PlaylistQuery::parse(query.as_deref().unwrap_or(""))?;
    // Any media playlist may be held (a plain one until the first part).
    let _held = service.hold_slot(client)?;
    // A blocking response names a fixed point in the stream and can be cached
    // longer (6×TD in the spec's advice); a plain reload for TD/2.
    let cache = if query.msn.is_some() {
        "private, max-age=12"
    } else {
        "private, max-age=1"
    };
    let body = service.media_playlist(&stream, &rendition, query).await?;
    Ok(playlist_response(body, cache))
}

async fn key(
    State(service): State<PlaybackService>,
    Path((stream, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let key_id = key_id(&key)?;
    let token = query.as_deref().and_then(token_param);
    let key = service.key(&stream, key_id, token.as_deref())?;
    Ok(key_response(key))
}

/// `{id}.key` names key `id`.
fn key_id(file: &str) -> Result<u64, DeliveryError> {
    file.strip_suffix(".key")
        .and_then(|k| k.parse::<u64>().ok())
        .ok_or(DeliveryError::NotFound)
}

fn key_response(key: [u8; 16]) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache")),
        ],
        key.to_vec(),
    )
        .into_response()
}

/// A recording's playlists never change once written.
const VOD_PLAYLIST_CACHE: &str = "private, max-age=60";

async fn vod_master(
    State(service): State<PlaybackService>,
    Path(recording): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let token = query.as_deref().and_then(token_param);
    let body = service.vod_master(&recording, token.as_deref()).await?;
    Ok(playlist_response(body, VOD_PLAYLIST_CACHE))
}

async fn vod_media_playlist(
    State(service): State<PlaybackService>,
    Path((recording, rendition)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let token = query.as_deref().and_then(token_param);
    let body = service
        .vod_media_playlist(&recording, &rendition, token.as_deref())
        .await?;
    Ok(playlist_response(body, VOD_PLAYLIST_CACHE))
}

async fn vod_key(
    State(service): State<PlaybackService>,
    Path((recording, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, DeliveryError> {
    let key_id = key_id(&key)?;
    let token = query.as_deref().and_then(token_param);
    let key = service.vod_key(&recording, key_id, token.as_deref()).await?;
    Ok(key_response(key))
}

async fn vod_media_file(
    State(service): State<PlaybackService>,
    Path((recording, rendition, file)): Path<(String, String, String)>,
) -> Result<Response, DeliveryError> {
    // Only names the packager writes: nothing else of the bucket is reachable.
    match parse_media_file(&file) {
        Some(MediaFile::Init(_) | MediaFile::Segment(_)) => {}
        _ => return Err(DeliveryError::NotFound),
    }
    if rendition.is_empty() || rendition.contains(['/', '\\']) || rendition.starts_with('.') {
        return Err(DeliveryError::NotFound);
    }
    let (body, content_type) = service.vod_media(&recording, &rendition, &file).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(MEDIA_CACHE)),
        ],
        body,
    )
        .into_response())
}

/// What a media file name in a rendition directory refers to.
#[derive(Debug, PartialEq, Eq)]
enum MediaFile {
    Init(u64),
    Part(u64, u64),
    Segment(u64),
}

fn parse_media_file(name: &str) -> Option<MediaFile> {
    let stem = name.strip_suffix(".mp4")?;
    if let Some(id) = stem.strip_prefix("init") {
        return id.parse().ok().map(MediaFile::Init);
    }
    match stem.split_once('.') {
        Some((msn, part)) => Some(MediaFile::Part(msn.parse().ok()?, part.parse().ok()?)),
        None => stem.parse().ok().map(MediaFile::Segment),
    }
}

async fn media_file(
    State(service): State<PlaybackService>,
    Client(client): Client,
    Path((stream, rendition, file)): Path<(String, String, String)>,
) -> Result<Response, DeliveryError> {
    let media = parse_media_file(&file).ok_or(DeliveryError::NotFound)?;
    let body = match media {
        MediaFile::Init(id) => service.init(&stream, &rendition, id)?,
        MediaFile::Part(msn, part) => {
            // The preload-hinted part is held until it is complete.
            let _held = service.hold_slot(client)?;
            service.part(&stream, &rendition, msn, part).await?
        }
        MediaFile::Segment(msn) => service.segment(&stream, &rendition, msn).await?,
    };
    let content_type = service.media_content_type(&stream, &rendition);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(MEDIA_CACHE)),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_file_names() {
        assert_eq!(parse_media_file("init3.mp4"), Some(MediaFile::Init(3)));
        assert_eq!(parse_media_file("120.4.mp4"), Some(MediaFile::Part(120, 4)));
        assert_eq!(parse_media_file("120.mp4"), Some(MediaFile::Segment(120)));
        for bad in [
            "120.m4s",
            "x.mp4",
            "1.2.3.mp4",
            "init.mp4",
            "",
            ".mp4",
            "18446744073709551616.mp4",
        ] {
            assert_eq!(parse_media_file(bad), None, "{bad}");
        }
    }
}
