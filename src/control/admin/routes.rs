//! Thin handlers: extract, call [`AdminService`], answer JSON. Each carries
//! its OpenAPI description.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::audit::{self, Attempt};
use super::auth::Principal;
use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::json::Body;
use super::path::Path;
use super::service::AdminService;
use crate::control::live::LiveStreamStats;
use crate::control::model::{AdminToken, App, AuditEntry, PlaybackKey, Stream};

type Result<T> = std::result::Result<T, ApiError>;

/// A mutation's body; one that cannot be read (malformed, too large, not
/// JSON) is refused, and audited like any refusal after authentication.
pub(super) async fn read<T>(
    s: &AdminService,
    who: &Principal,
    body: Result<Body<T>>,
    attempt: impl FnOnce() -> Attempt,
) -> Result<T> {
    match body {
        Ok(Body(value)) => Ok(value),
        Err(refusal) => s.refused(who, attempt(), refusal).await,
    }
}

/// Query strings, with rejections as our JSON errors.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

#[utoipa::path(get, path = "/apps", tag = "apps", security(("bearer" = [])),
    responses((status = 200, body = Vec<App>), (status = 401, body = ErrorBody)))]
pub async fn list_apps(State(s): State<AdminService>, who: Principal) -> Result<Json<Vec<App>>> {
    s.list_apps(&who).await.map(Json)
}

#[utoipa::path(post, path = "/apps", tag = "apps", security(("bearer" = [])), request_body = CreateApp,
    responses((status = 201, body = App), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_app(
    State(s): State<AdminService>,
    who: Principal,
    body: Result<Body<CreateApp>>,
) -> Result<(StatusCode, Json<App>)> {
    let body = read(&s, &who, body, || Attempt::new(audit::APP_CREATE, "app", None)).await?;
    s.create_app(&who, body).await.map(|a| (StatusCode::CREATED, Json(a)))
}

#[utoipa::path(get, path = "/apps/{app_id}", tag = "apps", security(("bearer" = [])), params(("app_id" = String, Path)),
    responses((status = 200, body = App), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_app(State(s): State<AdminService>, who: Principal, Path(app_id): Path<String>) -> Result<Json<App>> {
    s.get_app(&who, &app_id).await.map(Json)
}

#[utoipa::path(patch, path = "/apps/{app_id}", tag = "apps", security(("bearer" = [])), params(("app_id" = String, Path)),
    request_body = UpdateApp,
    responses((status = 200, body = App), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_app(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    body: Result<Body<UpdateApp>>,
) -> Result<Json<App>> {
    let body = read(&s, &who, body, || {
        Attempt::new(audit::APP_UPDATE, format!("app/{app_id}"), Some(&app_id))
    })
    .await?;
    s.update_app(&who, &app_id, body).await.map(Json)
}

#[utoipa::path(delete, path = "/apps/{app_id}", tag = "apps", security(("bearer" = [])), params(("app_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_app(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
) -> Result<StatusCode> {
    s.delete_app(&who, &app_id).await.map(|()| StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/apps/{app_id}/streams", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    responses((status = 200, body = Vec<Stream>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_streams(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
) -> Result<Json<Vec<Stream>>> {
    s.list_streams(&who, &app_id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/streams", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = CreateStream,
    responses((status = 201, body = StreamWithKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    body: Result<Body<CreateStream>>,
) -> Result<(StatusCode, Json<StreamWithKey>)> {
    let body = read(&s, &who, body, || {
        Attempt::new(audit::STREAM_CREATE, "stream", Some(&app_id))
    })
    .await?;
    s.create_stream(&who, &app_id, body)
        .await
        .map(|c| (StatusCode::CREATED, Json(c)))
}

#[utoipa::path(get, path = "/apps/{app_id}/streams/{stream_id}", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 200, body = Stream), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<Json<Stream>> {
    s.get_stream(&who, &app_id, &stream_id).await.map(Json)
}

#[utoipa::path(patch, path = "/apps/{app_id}/streams/{stream_id}", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)), request_body = UpdateStream,
    responses((status = 200, body = Stream), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
    body: Result<Body<UpdateStream>>,
) -> Result<Json<Stream>> {
    let body = read(&s, &who, body, || {
        Attempt::on_stream(audit::STREAM_UPDATE, &app_id, &stream_id)
    })
    .await?;
    s.update_stream(&who, &app_id, &stream_id, body).await.map(Json)
}

#[utoipa::path(delete, path = "/apps/{app_id}/streams/{stream_id}", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    s.delete_stream(&who, &app_id, &stream_id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/apps/{app_id}/streams/{stream_id}/rotate-key", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 200, body = StreamWithKey), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_key(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<Json<StreamWithKey>> {
    s.rotate_key(&who, &app_id, &stream_id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/streams/{stream_id}/disable", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 200, body = Stream), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<Json<Stream>> {
    s.set_enabled(&who, &app_id, &stream_id, false).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/streams/{stream_id}/enable", tag = "streams", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 200, body = Stream), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<Json<Stream>> {
    s.set_enabled(&who, &app_id, &stream_id, true).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/streams/{stream_id}/playback-tokens", tag = "playback", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)), request_body = MintToken,
    responses((status = 201, body = MintedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn mint_token(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
    body: Result<Body<MintToken>>,
) -> Result<(StatusCode, Json<MintedToken>)> {
    let body = read(&s, &who, body, || {
        Attempt::on_stream(audit::PLAYBACK_TOKEN_MINT, &app_id, &stream_id)
    })
    .await?;
    s.mint_token(&who, &app_id, &stream_id, body)
        .await
        .map(|m| (StatusCode::CREATED, Json(m)))
}

#[utoipa::path(get, path = "/apps/{app_id}/playback-keys", tag = "playback", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    responses((status = 200, body = Vec<PlaybackKey>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_playback_keys(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
) -> Result<Json<Vec<PlaybackKey>>> {
    s.list_playback_keys(&who, &app_id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/playback-keys", tag = "playback", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = CreatePlaybackKey,
    responses((status = 201, body = CreatedPlaybackKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_playback_key(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    body: Result<Body<CreatePlaybackKey>>,
) -> Result<(StatusCode, Json<CreatedPlaybackKey>)> {
    let body = read(&s, &who, body, || {
        Attempt::new(audit::PLAYBACK_KEY_CREATE, "playback_key", Some(&app_id))
    })
    .await?;
    s.create_playback_key(&who, &app_id, body)
        .await
        .map(|k| (StatusCode::CREATED, Json(k)))
}

#[utoipa::path(delete, path = "/apps/{app_id}/playback-keys/{kid}", tag = "playback", security(("bearer" = [])),
    params(("app_id" = String, Path), ("kid" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_playback_key(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, kid)): Path<(String, String)>,
) -> Result<StatusCode> {
    s.delete_playback_key(&who, &app_id, &kid)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/admin-tokens", tag = "admin tokens", security(("bearer" = [])),
    responses((status = 200, body = Vec<AdminToken>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_admin_tokens(State(s): State<AdminService>, who: Principal) -> Result<Json<Vec<AdminToken>>> {
    s.list_admin_tokens(&who).await.map(Json)
}

#[utoipa::path(post, path = "/admin-tokens", tag = "admin tokens", security(("bearer" = [])), request_body = CreateAdminToken,
    responses((status = 201, body = CreatedAdminToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_admin_token(
    State(s): State<AdminService>,
    who: Principal,
    body: Result<Body<CreateAdminToken>>,
) -> Result<(StatusCode, Json<CreatedAdminToken>)> {
    let body = read(&s, &who, body, || {
        Attempt::new(audit::ADMIN_TOKEN_CREATE, "admin_token", None)
    })
    .await?;
    s.create_admin_token(&who, body)
        .await
        .map(|t| (StatusCode::CREATED, Json(t)))
}

#[utoipa::path(delete, path = "/admin-tokens/{token_id}", tag = "admin tokens", security(("bearer" = [])),
    params(("token_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_admin_token(
    State(s): State<AdminService>,
    who: Principal,
    Path(token_id): Path<String>,
) -> Result<StatusCode> {
    s.revoke_admin_token(&who, &token_id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/live", tag = "live", security(("bearer" = [])), params(LiveQuery),
    responses((status = 200, body = Vec<LiveStreamStats>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn live(
    State(s): State<AdminService>,
    who: Principal,
    Query(q): Query<LiveQuery>,
) -> Json<Vec<LiveStreamStats>> {
    Json(s.live(&who, q.app_id.as_deref()))
}

#[utoipa::path(get, path = "/live/{stream_id}", tag = "live", security(("bearer" = [])), params(("stream_id" = String, Path)),
    responses((status = 200, body = LiveStreamStats), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn live_stream(
    State(s): State<AdminService>,
    who: Principal,
    Path(stream_id): Path<String>,
) -> Result<Json<LiveStreamStats>> {
    s.live_stream(&who, &stream_id).map(Json)
}

#[utoipa::path(post, path = "/live/{stream_id}/kick", tag = "live", security(("bearer" = [])), params(("stream_id" = String, Path)),
    responses((status = 200, body = Kicked), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kick(
    State(s): State<AdminService>,
    who: Principal,
    Path(stream_id): Path<String>,
) -> Result<Json<Kicked>> {
    s.kick(&who, &stream_id).await.map(Json)
}

#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn audit(
    State(s): State<AdminService>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>> {
    s.audit_log(&who, q).await.map(Json)
}

#[utoipa::path(get, path = "/audit.csv", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn audit_csv(State(s): State<AdminService>, who: Principal, Query(q): Query<AuditQuery>) -> Result<Response> {
    let entries = s.audit_log(&who, q).await?;
    let body = super::csv::audit_csv(&entries)?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}
