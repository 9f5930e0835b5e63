//! Who is calling: a bearer admin token, global or scoped to one app.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::service::AdminService;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    /// `None`: global. `Some(app)`: this app only.
    pub app_id: Option<String>,
    pub ip: Option<String>,
}

impl Principal {
    /// Another app's resources do not exist for an app token (404, never 403,
    /// so that ids cannot be probed).
    pub fn may_see(&self, app_id: &str) -> bool {
        self.app_id.as_deref().is_none_or(|own| own == app_id)
    }

    pub fn require_global(&self) -> Result<(), ApiError> {
        match self.app_id {
            None => Ok(()),
            Some(_) => Err(ApiError::forbidden("this needs a global admin token")),
        }
    }
}

impl FromRequestParts<AdminService> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &AdminService) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <admin token>"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <admin token>`"))?;
        match service.store().admin_token_by_secret(secret).await? {
            Some(token) => Ok(Principal {
                token_id: token.id,
                app_id: token.app_id,
                ip,
            }),
            None => {
                tracing::warn!(
                    client = ip.as_deref().unwrap_or("?"),
                    "admin API: unknown or revoked token"
                );
                Err(ApiError::unauthorized("unknown or revoked admin token"))
            }
        }
    }
}
