//! RTSP pull sources in the admin API: create, list, show, start, stop, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::audit::{self, Attempt};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::json::Body;
use super::path::Path;
use super::routes::read;
use super::service::AdminService;
use crate::control::sources::model::{NewSource, SourceView};
use crate::control::sources::{SourceError, SourceRunner};

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Store(e) => e.into(),
            SourceError::Invalid(why) => ApiError::invalid(why),
            SourceError::NoApp(_) => ApiError::not_found("app"),
        }
    }
}

impl AdminService {
    fn runner(&self) -> Result<&SourceRunner, ApiError> {
        self.pull_sources().ok_or_else(|| ApiError::not_found("sources"))
    }

    pub async fn create_source(&self, who: &Principal, app_id: &str, body: NewSource) -> Result<SourceView, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            self.check_profile(body.profile.as_deref())?;
            let runner = self.runner()?;
            let source = runner.sources().create(app_id, body).await?;
            runner.wake();
            Ok(runner.view(&source))
        }
        .await;
        let attempt = match &outcome {
            Ok(view) => Attempt::new(audit::SOURCE_CREATE, format!("source/{}", view.id), Some(app_id)),
            Err(_) => Attempt::new(audit::SOURCE_CREATE, "source", Some(app_id)),
        };
        self.audit(who, attempt, outcome).await
    }

    pub async fn list_sources(&self, who: &Principal, app_id: &str) -> Result<Vec<SourceView>, ApiError> {
        self.visible_app(who, app_id).await?;
        let runner = self.runner()?;
        let sources = runner.sources().list(Some(app_id)).await?;
        Ok(sources.iter().map(|s| runner.view(s)).collect())
    }

    pub async fn get_source(&self, who: &Principal, app_id: &str, id: &str) -> Result<SourceView, ApiError> {
        self.visible_app(who, app_id).await?;
        let runner = self.runner()?;
        match runner.sources().get(app_id, id).await? {
            Some(source) => Ok(runner.view(&source)),
            None => Err(ApiError::not_found("source")),
        }
    }

    pub async fn set_source_enabled(
        &self,
        who: &Principal,
        app_id: &str,
        id: &str,
        enabled: bool,
    ) -> Result<SourceView, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            let runner = self.runner()?;
            let source = runner
                .sources()
                .set_enabled(app_id, id, enabled)
                .await?
                .ok_or_else(|| ApiError::not_found("source"))?;
            runner.wake();
            Ok(runner.view(&source))
        }
        .await;
        let action = if enabled {
            audit::SOURCE_START
        } else {
            audit::SOURCE_STOP
        };
        self.audit(who, Attempt::new(action, format!("source/{id}"), Some(app_id)), outcome)
            .await
    }

    pub async fn delete_source(&self, who: &Principal, app_id: &str, id: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            let runner = self.runner()?;
            if !runner.sources().delete(app_id, id).await? {
                return Err(ApiError::not_found("source"));
            }
            runner.wake();
            Ok(())
        }
        .await;
        self.audit(
            who,
            Attempt::new(audit::SOURCE_DELETE, format!("source/{id}"), Some(app_id)),
            outcome,
        )
        .await
    }
}

#[utoipa::path(post, path = "/apps/{app_id}/sources", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = NewSource,
    responses((status = 201, body = SourceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_source(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    body: Result<Body<NewSource>, ApiError>,
) -> Result<(StatusCode, Json<SourceView>), ApiError> {
    let body = read(&s, &who, body, || {
        Attempt::new(audit::SOURCE_CREATE, "source", Some(&app_id))
    })
    .await?;
    s.create_source(&who, &app_id, body)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)))
}

#[utoipa::path(get, path = "/apps/{app_id}/sources", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    responses((status = 200, body = Vec<SourceView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_sources(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    s.list_sources(&who, &app_id).await.map(Json)
}

#[utoipa::path(get, path = "/apps/{app_id}/sources/{source_id}", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path), ("source_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_source(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    s.get_source(&who, &app_id, &id).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/sources/{source_id}/start", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path), ("source_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start_source(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    s.set_source_enabled(&who, &app_id, &id, true).await.map(Json)
}

#[utoipa::path(post, path = "/apps/{app_id}/sources/{source_id}/stop", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path), ("source_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stop_source(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    s.set_source_enabled(&who, &app_id, &id, false).await.map(Json)
}

#[utoipa::path(delete, path = "/apps/{app_id}/sources/{source_id}", tag = "sources", security(("bearer" = [])),
    params(("app_id" = String, Path), ("source_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_source(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_source(&who, &app_id, &id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}
