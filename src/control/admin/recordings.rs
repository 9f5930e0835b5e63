//! Recordings in the admin API: list, show, delete (with their objects).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::{self, Attempt};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::routes::Query;
use super::service::AdminService;
use crate::control::recordings::model::Recording;
use crate::control::recordings::{Recorder, RecordingError};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Lifetime of the playback URL shown with a recording.
const PLAYBACK_URL_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordingsQuery {
    /// 1–1000 (default 100), newest first.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    #[serde(flatten)]
    pub recording: Recording,
    /// Signed for 24 hours; only for `ready` recordings.
    pub playback_url: Option<String>,
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::Store(e) => e.into(),
            RecordingError::StillRecording(id) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("recording {id} is still recording; delete it once its stream ended"),
            ),
            RecordingError::Storage { .. } => {
                tracing::error!(error = %e, "admin API: recording storage failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e.to_string())
            }
        }
    }
}

impl AdminService {
    fn recorder(&self) -> Result<&Recorder, ApiError> {
        self.recordings().ok_or_else(|| ApiError::not_found("recordings"))
    }

    fn recording_view(&self, recorder: &Recorder, recording: Recording) -> RecordingView {
        let playback_url = (recording.status == crate::control::recordings::model::STATUS_READY)
            .then(|| recorder.playback_url(&recording, PLAYBACK_URL_TTL))
            .flatten();
        RecordingView {
            recording,
            playback_url,
        }
    }

    async fn visible_recording(&self, who: &Principal, app_id: &str, id: &str) -> Result<Recording, ApiError> {
        self.visible_app(who, app_id).await?;
        let recorder = self.recorder()?;
        match recorder.get(id).await? {
            Some(recording) if recording.app_id == app_id => Ok(recording),
            _ => Err(ApiError::not_found("recording")),
        }
    }

    pub async fn list_recordings(
        &self,
        who: &Principal,
        app_id: &str,
        query: RecordingsQuery,
    ) -> Result<Vec<RecordingView>, ApiError> {
        self.visible_app(who, app_id).await?;
        let limit = query
            .limit
            .map_or(Ok(DEFAULT_LIMIT), |n| ApiError::check_limit(n, MAX_LIMIT))?;
        let recorder = self.recorder()?;
        let recordings = recorder.list(app_id, limit).await?;
        Ok(recordings
            .into_iter()
            .map(|r| self.recording_view(recorder, r))
            .collect())
    }

    pub async fn get_recording(&self, who: &Principal, app_id: &str, id: &str) -> Result<RecordingView, ApiError> {
        let recording = self.visible_recording(who, app_id, id).await?;
        Ok(self.recording_view(self.recorder()?, recording))
    }

    pub async fn delete_recording(&self, who: &Principal, app_id: &str, id: &str) -> Result<(), ApiError> {
        let outcome = async {
            let recording = self.visible_recording(who, app_id, id).await?;
            if self.recorder()?.delete(&recording).await? {
                Ok(())
            } else {
                Err(ApiError::not_found("recording"))
            }
        }
        .await;
        self.audit(
            who,
            Attempt::new(audit::RECORDING_DELETE, format!("recording/{id}"), Some(app_id)),
            outcome,
        )
        .await
    }
}

#[utoipa::path(get, path = "/apps/{app_id}/recordings", tag = "recordings", security(("bearer" = [])),
    params(("app_id" = String, Path), RecordingsQuery),
    responses((status = 200, body = Vec<RecordingView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_recordings(
    State(s): State<AdminService>,
    who: Principal,
    Path(app_id): Path<String>,
    Query(query): Query<RecordingsQuery>,
) -> Result<Json<Vec<RecordingView>>, ApiError> {
    s.list_recordings(&who, &app_id, query).await.map(Json)
}

#[utoipa::path(get, path = "/apps/{app_id}/recordings/{recording_id}", tag = "recordings", security(("bearer" = [])),
    params(("app_id" = String, Path), ("recording_id" = String, Path)),
    responses((status = 200, body = RecordingView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_recording(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<Json<RecordingView>, ApiError> {
    s.get_recording(&who, &app_id, &id).await.map(Json)
}

#[utoipa::path(delete, path = "/apps/{app_id}/recordings/{recording_id}", tag = "recordings", security(("bearer" = [])),
    params(("app_id" = String, Path), ("recording_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete_recording(
    State(s): State<AdminService>,
    who: Principal,
    Path((app_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_recording(&who, &app_id, &id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
}
