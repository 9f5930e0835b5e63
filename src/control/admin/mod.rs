//! The operator's admin API under `/api/v1` (JSON, bearer admin tokens),
//! its OpenAPI document, and the liveness and readiness probes. Handlers are
//! thin over [`AdminService`], which holds the rules and is tested without HTTP.

mod audit;
mod auth;
mod csv;
mod dto;
mod error;
mod health;
mod json;
mod openapi;
mod path;
mod recordings;
mod routes;
mod service;
mod sources;
#[cfg(test)]
mod tests;
mod usage;
mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::{Json, Router};

pub use auth::Principal;
pub use error::ApiError;
pub use service::{AdminService, AdminSettings, ReadinessProbe, Reporting};

/// Admin request bodies are small JSON documents (a custom ladder is the
/// largest); `admin.body_limit_bytes` in the configuration.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// `/api/v1/…` plus `/livez` and `/readyz`.
pub fn router(service: AdminService) -> Router {
    use routes::*;
    use webhooks::routes as wh;
    let api = Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app_id}", get(get_app).patch(update_app).delete(delete_app))
        .route("/apps/{app_id}/streams", get(list_streams).post(create_stream))
        .route(
            "/apps/{app_id}/streams/{stream_id}",
            get(get_stream).patch(update_stream).delete(delete_stream),
        )
        .route("/apps/{app_id}/streams/{stream_id}/rotate-key", post(rotate_key))
        .route("/apps/{app_id}/streams/{stream_id}/disable", post(disable_stream))
        .route("/apps/{app_id}/streams/{stream_id}/enable", post(enable_stream))
        .route("/apps/{app_id}/streams/{stream_id}/playback-tokens", post(mint_token))
        .route(
            "/apps/{app_id}/playback-keys",
            get(list_playback_keys).post(create_playback_key),
        )
        .route(
            "/apps/{app_id}/playback-keys/{kid}",
            axum::routing::delete(delete_playback_key),
        )
        .route("/admin-tokens", get(list_admin_tokens).post(create_admin_token))
        .route("/admin-tokens/{token_id}", axum::routing::delete(revoke_admin_token))
        .route("/live", get(live))
        .route("/live/{stream_id}", get(live_stream))
        .route("/live/{stream_id}/kick", post(kick))
        .route(
            "/apps/{app_id}/webhooks",
            get(wh::list_webhooks).post(wh::create_webhook),
        )
        .route(
            "/apps/{app_id}/webhooks/{webhook_id}",
            get(wh::get_webhook)
                .patch(wh::update_webhook)
                .delete(wh::delete_webhook),
        )
        .route(
            "/apps/{app_id}/webhooks/{webhook_id}/rotate-secret",
            post(wh::rotate_webhook_secret),
        )
        .route("/apps/{app_id}/webhooks/{webhook_id}/test", post(wh::test_webhook))
        .route(
            "/apps/{app_id}/webhooks/{webhook_id}/deliveries",
            get(wh::list_deliveries),
        )
        .route(
            "/apps/{app_id}/webhooks/{webhook_id}/deliveries/{event_id}/redeliver",
            post(wh::redeliver),
        )
        .route(
            "/apps/{app_id}/webhooks/{webhook_id}/redeliver-failed",
            post(wh::redeliver_failed),
        )
        .route("/apps/{app_id}/events", get(wh::list_events))
        .route("/apps/{app_id}/streams/{stream_id}/viewers", get(usage::viewers))
        .route("/apps/{app_id}/usage", get(usage::usage))
        .route("/apps/{app_id}/usage.csv", get(usage::usage_csv))
        .route("/apps/{app_id}/recordings", get(recordings::list_recordings))
        .route(
            "/apps/{app_id}/recordings/{recording_id}",
            get(recordings::get_recording).delete(recordings::delete_recording),
        )
        .route(
            "/apps/{app_id}/sources",
            get(sources::list_sources).post(sources::create_source),
        )
        .route(
            "/apps/{app_id}/sources/{source_id}",
            get(sources::get_source).delete(sources::delete_source),
        )
        .route("/apps/{app_id}/sources/{source_id}/start", post(sources::start_source))
        .route("/apps/{app_id}/sources/{source_id}/stop", post(sources::stop_source))
        .route("/events/stream", get(wh::event_feed))
        .route("/audit", get(audit))
        .route("/audit.csv", get(audit_csv))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(service.body_limit_bytes()));
    Router::new()
        .nest("/api/v1", api)
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        // `nest` leaves the bare prefix with a slash to the outer router.
        .route("/api/v1/", any(|| async { ApiError::not_found("route") }))
        .with_state(service)
}
