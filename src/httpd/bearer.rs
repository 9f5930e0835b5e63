//! `Authorization: Bearer <token>` (RFC 6750 §2.1), as every endpoint that
//! takes one reads it.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

/// The token of an `Authorization: Bearer` header, trimmed; `None` when the
/// header is missing, not text, of another scheme, or has no token. The
/// scheme is matched without regard to case (RFC 9110 §11.1): `BEARER x` is
/// as good as `Bearer x`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc  "] {
            assert_eq!(bearer_token(&with(value)), Some("abc"), "{value}");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "Token abc", ""] {
            assert_eq!(bearer_token(&with(value)), None, "{value}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
