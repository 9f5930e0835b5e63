use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::control::TokenRejection;
use crate::hls::HlsError;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Token(#[from] TokenRejection),
    #[error(transparent)]
    Hls(#[from] HlsError),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    /// A per-client or per-token limit: answered 429 with `Retry-After`.
    #[error("too many {what}; retry in {retry_after_secs} s")]
    TooMany { what: &'static str, retry_after_secs: u64 },
}

impl DeliveryError {
    pub fn status(&self) -> StatusCode {
        match self {
            DeliveryError::Token(TokenRejection::WrongStream) => StatusCode::FORBIDDEN,
            DeliveryError::Token(_) => StatusCode::UNAUTHORIZED,
            DeliveryError::Hls(e) => match e {
                HlsError::BadRequest(_) => StatusCode::BAD_REQUEST,
                HlsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::NOT_FOUND,
            },
            DeliveryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DeliveryError::NotFound => StatusCode::NOT_FOUND,
            DeliveryError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DeliveryError::Token(TokenRejection::Missing) => "token_missing",
            DeliveryError::Token(TokenRejection::Malformed) => "token_malformed",
            DeliveryError::Token(TokenRejection::BadSignature) => "token_bad_signature",
            DeliveryError::Token(TokenRejection::Expired) => "token_expired",
            DeliveryError::Token(TokenRejection::NotYetValid) => "token_not_yet_valid",
            DeliveryError::Token(TokenRejection::WrongStream) => "token_wrong_stream",
            DeliveryError::Token(TokenRejection::UnknownKey) => "token_unknown_key",
            DeliveryError::Hls(HlsError::BadRequest(_)) | DeliveryError::BadRequest(_) => "bad_request",
            DeliveryError::Hls(HlsError::Unavailable(_)) => "unavailable",
            DeliveryError::Hls(_) | DeliveryError::NotFound => "not_found",
            DeliveryError::TooMany { .. } => "too_many_requests",
        }
    }
}

impl IntoResponse for DeliveryError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            DeliveryError::TooMany { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.code(), "message": self.to_string() }));
        let mut response = (status, body).into_response();
        let cache = if status == StatusCode::NOT_FOUND {
            "no-cache"
        } else {
            "no-store"
        };
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static(cache),
        );
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"playback\""),
            );
        }
        response
    }
}
