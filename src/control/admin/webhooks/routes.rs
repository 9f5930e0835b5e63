//! Thin handlers for webhooks, deliveries, the event log and the live feed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use tokio::sync::broadcast;

use super::dto::*;
use super::WEBHOOK_CREATE;
use super::WEBHOOK_UPDATE;
use crate::control::admin::audit::Attempt;
use crate::control::admin::auth::Principal;
use crate::control::admin::error::{ApiError, ErrorBody};
use crate::control::admin::json::Body;
use crate::control::admin::path::Path;
use crate::control::admin::routes::{read, Query};
use crate::control::admin::service::AdminService;
use crate::control::webhooks::model::{Delivery, RecordedEvent};

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(get, path = "/apps/{app_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    responses((status = 200, body = Vec<WebhookView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_webhooks(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
) -> Result<Json<Vec<WebhookView>>> {
    s.list_webhooks(&who, &app_id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = CreateWebhook,
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_webhook(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    body: Result<Body<CreateWebhook>>,
) -> Result<(StatusCode, Json<WebhookWithSecret>)> {
    let body = read(&s, &who, body, || {
        Attempt::new(WEBHOOK_CREATE, "webhook", Some(&app_id))
    })
    .await?;
    s.create_webhook(&who, &app_id, body)
        .await
        .map(|w| (StatusCode::CREATED, Json(w)))
}

#[utoipa::path(get, path = "/apps/{app_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<WebhookView>> {
    s.get_webhook(&who, &app_id, &id).await.map(Json)
}

#[utoipa::path(patch, path = "/apps/{app_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path), ("webhook_id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_webhook(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
    body: Result<Body<UpdateWebhook>>,
) -> Result<Json<WebhookView>> {
    let body = read(&s, &who, body, || {
        Attempt::new(WEBHOOK_UPDATE, format!("webhook/{id}"), Some(&app_id))
    })
    .await?;
    s.update_webhook(&who, &app_id, &id, body).await.map(Json)
}

#[utoipa::path(delete, path = "/apps/{app_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    s.delete_webhook(&who, &app_id, &id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/apps/{app_id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    security(("bearer" = [])), params(("app_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookWithSecret), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_webhook_secret(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<WebhookWithSecret>> {
    s.rotate_webhook_secret(&who, &app_id, &id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    security(("bearer" = [])), params(("app_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 202, body = TestSent), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn test_webhook(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<TestSent>)> {
    s.test_webhook(&who, &app_id, &id)
        .await
        .map(|t| (StatusCode::ACCEPTED, Json(t)))
}

#[utoipa::path(get, path = "/apps/{app_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    security(("bearer" = [])), params(("app_id" = String, Path), ("webhook_id" = String, Path), DeliveryQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_deliveries(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>> {
    s.list_deliveries(&who, &app_id, &id, query).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/webhooks/{webhook_id}/deliveries/{event_id}/redeliver", tag = "webhooks",
    security(("bearer" = [])),
    params(("app_id" = String, Path), ("webhook_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 202), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeliver(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id, event_id)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    s.redeliver(&who, &app_id, &id, &event_id)
        .await
        .map(|()| StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/apps/{app_id}/webhooks/{webhook_id}/redeliver-failed", tag = "webhooks",
    security(("bearer" = [])), params(("app_id" = String, Path), ("webhook_id" = String, Path)),
    responses((status = 202, body = Redelivered), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeliver_failed(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Redelivered>)> {
    s.redeliver_failed(&who, &app_id, &id)
        .await
        .map(|r| (StatusCode::ACCEPTED, Json(r)))
}

#[utoipa::path(get, path = "/apps/{app_id}/events", tag = "webhooks", security(("bearer" = [])),
    params(("app_id" = String, Path), EventQuery),
    responses((status = 200, body = Vec<RecordedEvent>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_events(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Vec<RecordedEvent>>> {
    s.list_events(&who, &app_id, query).await.map(Json)
}

/// Server-Sent Events: every committed event of the caller's app(s), as
/// it is committed, and every change of a stream's viewer count (`event:
/// viewers`, within a second, unthrottled). Left out of the OpenAPI document (it never ends, which
/// a schema fuzzer cannot judge); documented in the README.
pub async fn event_feed(
    State(s): State<AdminService>,
    who: Principal,
    Query(query): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let scope = s.feed_scope(&who, query.app_id).await?;
    let scope_for_counts = scope.clone();
    let feed = s.webhooks().feed();
    let stream = futures::stream::unfold((feed, scope), |(mut feed, scope)| async move {
        loop {
            match feed.recv().await {
                Ok(event) if visible(&event, scope.as_deref()) => {
                    let sse = Event::default()
                        .id(event.id.clone())
                        .event(event.event_type.clone())
                        .data(event.payload.clone());
                    return Some((Ok(sse), (feed, scope)));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // The subscriber learns that it missed events and can
                    // catch up from the event log.
                    let sse = Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}"));
                    return Some((Ok(sse), (feed, scope)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let counts = futures::stream::unfold(
        (s.audience_counts(), scope_for_counts),
        |(mut counts, scope)| async move {
            loop {
                match counts.recv().await {
                    Ok(count) if scope.as_deref().is_none_or(|app| app == count.app_id) => {
                        let sse = Event::default().event("viewers").json_data(&count).unwrap_or_default();
                        return Some((Ok(sse), (counts, scope)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let merged = futures::stream::select(stream, counts);
    Ok(Sse::new(merged).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn visible(event: &Arc<RecordedEvent>, scope: Option<&str>) -> bool {
    match scope {
        None => true,
        Some(app) => event.app_id.as_deref() == Some(app),
    }
}
