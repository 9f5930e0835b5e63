//! Who is calling: a bearer admin token, global or scoped to one app.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use parking_lot::Mutex;

use super::error::ApiError;
use super::service::AdminService;
use crate::httpd::bearer_token;
use crate::logging::LogLimiter;

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
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::unauthorized("missing Authorization: Bearer <admin token>"));
        }
        let secret = bearer_token(&parts.headers)
            .filter(|s| s.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <admin token>`"))?;
        match service.store().admin_token_by_secret(secret).await? {
            Some(token) => Ok(Principal {
                token_id: token.id,
                app_id: token.app_id,
                ip,
            }),
            None => {
                service.auth_log().unknown_token(ip.as_deref());
                Err(ApiError::unauthorized("unknown or revoked admin token"))
            }
        }
    }
}

/// Refused admin tokens, logged at most once per interval: anyone can send
/// them as fast as the network allows (2,000 lines in 1.2 s before this).
#[derive(Default)]
pub(super) struct AuthLog {
    unknown_token: Mutex<LogLimiter>,
}

impl AuthLog {
    fn unknown_token(&self, client: Option<&str>) {
        self.unknown_token_at(client, Instant::now());
    }

    /// Whether a line was written (for the tests, which also choose `now`).
    fn unknown_token_at(&self, client: Option<&str>, now: Instant) -> bool {
        let Some(suppressed) = self.unknown_token.lock().allow_at(now) else {
            return false;
        };
        tracing::warn!(
            client = client.unwrap_or("?"),
            suppressed,
            "admin API: unknown or revoked token"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refused_tokens_are_logged_once_per_interval() {
        let log = AuthLog::default();
        let t0 = Instant::now();
        assert!(log.unknown_token_at(Some("192.0.2.1"), t0));
        let written = (1..2000)
            .filter(|i| log.unknown_token_at(Some("192.0.2.1"), t0 + Duration::from_micros(600 * i)))
            .count();
        assert_eq!(written, 0, "2,000 refusals in 1.2 s: one line");
        assert!(log.unknown_token_at(None, t0 + Duration::from_secs(10)));
    }
}
