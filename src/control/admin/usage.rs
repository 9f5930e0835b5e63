//! Viewer counts and usage in the admin API.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::routes::Query;
use super::service::AdminService;
use crate::control::usage::model::{UsageFilter, UsageRow};
use crate::control::viewers::ViewerCount;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// One stream's rows only.
    pub stream_id: Option<String>,
    /// Hours starting at or after this (Unix seconds).
    pub from: Option<i64>,
    /// Hours starting before this (Unix seconds).
    pub to: Option<i64>,
    /// `stream` (default): a row per stream and hour; `app`: per app and hour.
    pub per: Option<String>,
    /// 1–10000 (default 1000), oldest hour first.
    pub limit: Option<u32>,
}

impl AdminService {
    pub async fn viewers(&self, who: &Principal, app_id: &str, stream_id: &str) -> Result<ViewerCount, ApiError> {
        self.visible_stream(who, app_id, stream_id).await?;
        Ok(self.audience().count(stream_id).unwrap_or_else(|| ViewerCount {
            stream_id: stream_id.to_owned(),
            app_id: app_id.to_owned(),
            viewers: 0,
            peak_viewers: 0,
            renditions: Default::default(),
        }))
    }

    pub async fn usage(&self, who: &Principal, app_id: &str, query: UsageQuery) -> Result<Vec<UsageRow>, ApiError> {
        self.visible_app(who, app_id).await?;
        let per_app = match query.per.as_deref() {
            None | Some("stream") => false,
            Some("app") => true,
            Some(_) => return Err(ApiError::invalid("per must be stream or app")),
        };
        let limit = query
            .limit
            .map_or(Ok(DEFAULT_LIMIT), |n| ApiError::check_limit(n, MAX_LIMIT))?;
        let filter = UsageFilter {
            app_id: Some(app_id.to_owned()),
            stream_id: query.stream_id,
            from: query.from,
            to: query.to,
            per_app,
            limit,
        };
        Ok(self.usage_store().usage(&filter).await?)
    }
}

#[utoipa::path(get, path = "/apps/{app_id}/streams/{stream_id}/viewers", tag = "viewers", security(("bearer" = [])),
    params(("app_id" = String, Path), ("stream_id" = String, Path)),
    responses((status = 200, body = ViewerCount), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn viewers(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, stream_id)): Path<(String, String)>,
) -> Result<Json<ViewerCount>, ApiError> {
    s.viewers(&who, &app_id, &stream_id).await.map(Json)
}

#[utoipa::path(get, path = "/apps/{app_id}/usage", tag = "viewers", security(("bearer" = [])),
    params(("app_id" = String, Path), UsageQuery),
    responses((status = 200, body = Vec<UsageRow>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn usage(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Vec<UsageRow>>, ApiError> {
    s.usage(&who, &app_id, query).await.map(Json)
}

#[utoipa::path(get, path = "/apps/{app_id}/usage.csv", tag = "viewers", security(("bearer" = [])),
    params(("app_id" = String, Path), UsageQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn usage_csv(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let rows = s.usage(&who, &app_id, query).await?;
    let body = super::csv::usage_csv(&rows)?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}
