//! The request timeout: a request not answered within the limit gets 408
//! and its connection is closed. tower-http's `Timeout` does the timing;
//! this picks the routes it applies to.
//!
//! It bounds the time to the response head, request body included (the
//! handler reads it), so a client trickling a POST body is cut. Streamed
//! response bodies (the SSE event feed) are not timed: their handler
//! answers at once. Routes that *hold* a request on purpose (LL-HLS
//! blocking playlist reloads and preload-hinted parts, bounded by the
//! packager's own blocking timeout) are named by their route template and
//! left alone.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;
use tower_http::timeout::Timeout;

#[derive(Clone)]
struct RequestTimeout {
    limit: Duration,
    exempt: &'static [&'static str],
}

/// `app` with every route timed at `limit`, except the route templates in
/// `exempt` (as given to `Router::route`, with any nesting prefix). Add it
/// last, so that it sees every route.
pub fn with_request_timeout(app: Router, limit: Duration, exempt: &'static [&'static str]) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        RequestTimeout { limit, exempt },
        timed,
    ))
}

async fn timed(State(timeout): State<RequestTimeout>, request: Request, next: Next) -> Response {
    let held_on_purpose = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| timeout.exempt.contains(&route.as_str()));
    if held_on_purpose {
        return next.run(request).await;
    }
    let answer = Timeout::with_status_code(next, StatusCode::REQUEST_TIMEOUT, timeout.limit)
        .oneshot(request)
        .await;
    let mut response = match answer {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        // RFC 9110 §15.5.9: the server closes the connection after a 408
        // (and whatever of the body is still coming is not worth reading).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
