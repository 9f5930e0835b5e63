//! Path parameters that never fail with axum's plain-text rejection. A
//! segment that does not percent-decode to UTF-8 is handed on as written
//! (`%FF`): it cannot be one of our ids, so the service answers it like any
//! other unknown id (404) and audits the attempt like any other.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::value::{Error as ValueError, SeqDeserializer};
use serde::de::{DeserializeOwned, IntoDeserializer};

use super::error::ApiError;

pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => as_written(parts)
                .and_then(|raw| from_strings(raw).ok())
                .map(Path)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", rejection.body_text())),
        }
    }
}

/// The route's parameters as they appear in the request, undecoded.
fn as_written(parts: &Parts) -> Option<Vec<String>> {
    let template = parts.extensions.get::<MatchedPath>()?.as_str();
    // A nested router sees its URI without the prefix while the matched path
    // keeps it: align the two from the end.
    let mut params: Vec<String> = template
        .rsplit('/')
        .zip(parts.uri.path().rsplit('/'))
        .filter(|(segment, _)| segment.starts_with('{'))
        .map(|(_, written)| written.to_owned())
        .collect();
    params.reverse();
    Some(params)
}

/// A single parameter deserialises as itself, several as a tuple, as with axum's `Path`.
fn from_strings<T: DeserializeOwned>(mut params: Vec<String>) -> Result<T, ValueError> {
    if params.len() == 1 {
        let only = params.pop().unwrap_or_default();
        T::deserialize(IntoDeserializer::<ValueError>::into_deserializer(only))
    } else {
        T::deserialize(SeqDeserializer::<_, ValueError>::new(params.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_segments_come_through_as_written() {
        let one: String = from_strings(vec!["%FF".into()]).expect("one");
        assert_eq!(one, "%FF");
        let two: (String, String) = from_strings(vec!["app_x".into(), "%C3%28".into()]).expect("two");
        assert_eq!(two, ("app_x".to_owned(), "%C3%28".to_owned()));
        assert!(from_strings::<(String, String)>(vec!["only".into()]).is_err());
    }
}
