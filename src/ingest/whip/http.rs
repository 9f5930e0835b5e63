//! The WHIP endpoint (RFC 9725) over axum: thin handlers over [`WhipService`].
//!
//! - `POST /whip` (`Authorization: Bearer <key>`) or `POST /whip/{key}`: 201 + answer
//! - `PATCH /whip/sessions/{id}`: trickle ICE (`application/trickle-ice-sdpfrag`)
//! - `DELETE /whip/sessions/{id}`: end the publish
//! - `OPTIONS` (Accept-Post / Accept-Patch) and CORS for browser publishers

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

use super::error::WhipError;
use super::service::WhipService;
use crate::ingest::RejectCode;

const SDP: &str = "application/sdp";
const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";
/// An offer is a few KiB; anything near this is not one.
const MAX_BODY: usize = 64 * 1024;

pub fn router(service: Arc<WhipService>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
        ]);
    Router::new()
        .route("/whip", post(publish_bearer))
        .route("/whip/{key}", post(publish_in_path))
        .route("/whip/sessions/{id}", patch(trickle).delete(delete))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .layer(axum::middleware::from_fn(advertise_accepted_types))
        .with_state(service)
}

/// The CORS layer answers every OPTIONS itself (a browser's preflight and
/// a plain OPTIONS alike), so what the resource accepts is added here, on
/// the way out.
async fn advertise_accepted_types(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let options = request.method() == Method::OPTIONS;
    let session = request.uri().path().starts_with("/whip/sessions/");
    let mut response = next.run(request).await;
    if options {
        let (name, value) = if session {
            ("accept-patch", SDP_FRAGMENT)
        } else {
            ("accept-post", SDP)
        };
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        match &self {
            WhipError::MissingKey | WhipError::Refused(_) if status == StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            WhipError::AtCapacity(_) | WhipError::TooManyFromAddress(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            WhipError::Refused(rejection) if rejection.code == RejectCode::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            WhipError::UnsupportedMediaType { expected, .. } if *expected == SDP => {
                headers.insert("accept-post", HeaderValue::from_static(SDP));
            }
            WhipError::UnsupportedMediaType { .. } => {
                headers.insert("accept-patch", HeaderValue::from_static(SDP_FRAGMENT));
            }
            _ => {}
        }
        response
    }
}

fn require_type(headers: &HeaderMap, expected: &'static str) -> Result<(), WhipError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = got.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(WhipError::UnsupportedMediaType {
            expected,
            got: got.to_owned(),
        })
    }
}

/// The one bearer parser the admin API uses too (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<String> {
    crate::httpd::bearer_token(headers).map(str::to_owned)
}

async fn publish_bearer(
    State(service): State<Arc<WhipService>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, WhipError> {
    let key = bearer(&headers).ok_or(WhipError::MissingKey)?;
    publish(&service, &key, client, &headers, &body).await
}

async fn publish_in_path(
    State(service): State<Arc<WhipService>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, WhipError> {
    // A bearer token, when sent, wins: it is how RFC 9725 authenticates.
    let key = bearer(&headers).unwrap_or(key);
    publish(&service, &key, client, &headers, &body).await
}

async fn publish(
    service: &Arc<WhipService>,
    key: &str,
    client: SocketAddr,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, WhipError> {
    require_type(headers, SDP)?;
    let created = service.publish(key, client, body).await?;
    let mut response = (StatusCode::CREATED, created.answer).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    let location = format!("/whip/sessions/{}", created.session_id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        out.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&created.etag) {
        out.insert(header::ETAG, value);
    }
    out.insert("accept-patch", HeaderValue::from_static(SDP_FRAGMENT));
    for link in service.ice_server_links() {
        if let Ok(value) = HeaderValue::from_str(link) {
            out.append(header::LINK, value);
        }
    }
    Ok(response)
}

async fn trickle(
    State(service): State<Arc<WhipService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, WhipError> {
    require_type(&headers, SDP_FRAGMENT)?;
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    service.trickle(&id, if_match, &body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(service): State<Arc<WhipService>>, Path(id): Path<String>) -> Result<StatusCode, WhipError> {
    service.delete(&id)?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::PublishRejection;

    fn refused(code: RejectCode) -> Response {
        WhipError::Refused(PublishRejection {
            code,
            description: "why".into(),
        })
        .into_response()
    }

    #[test]
    fn refusals_map_to_statuses_a_whip_client_can_act_on() {
        let bad_key = refused(RejectCode::BadName);
        assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
        assert!(bad_key.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(refused(RejectCode::Rejected).status(), StatusCode::FORBIDDEN);
        // A full transcode budget is temporary: the client is told when to retry.
        let overloaded = refused(RejectCode::Overloaded);
        assert_eq!(overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            overloaded.headers().get(header::RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"10"[..])
        );
    }
}
