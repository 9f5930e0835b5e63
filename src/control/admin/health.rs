//! The probes, outside `/api/v1` and without a token: `/livez` (the process
//! answers) and `/readyz` (the store answers a query and GStreamer has every
//! element a ladder needs).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::service::AdminService;

pub async fn livez() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// 200 with every check's outcome, or 503 naming the first that failed.
pub async fn readyz(State(service): State<AdminService>) -> Response {
    let checks = service.readiness().await;
    let mut outcomes = Map::new();
    for (name, outcome) in &checks {
        let text = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(reason) => format!("error: {reason}"),
        };
        outcomes.insert((*name).to_owned(), Value::String(text));
    }
    match checks
        .iter()
        .find_map(|(name, outcome)| outcome.as_ref().err().map(|r| (name, r)))
    {
        None => (StatusCode::OK, Json(json!({ "status": "ready", "checks": outcomes }))).into_response(),
        Some((failed, reason)) => {
            if let Some(suppressed) = service.not_ready_log() {
                tracing::warn!(check = failed, %reason, suppressed, "not ready");
            }
            let body = json!({ "status": "not_ready", "failed": failed, "reason": reason, "checks": outcomes });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
