//! What delivery tells the control plane about viewers, without knowing how
//! they are counted or billed.

use std::time::Duration;

/// A playback token opened as many new viewer sessions as its window
/// allows; its next one may open after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsExhausted {
    pub retry_after: Duration,
}

/// Implemented by the control plane; every call must be cheap (it runs on
/// the request path) and must never fail the request except as said.
pub trait ViewerReporter: Send + Sync + 'static {
    /// A master playlist was served under a valid `token`: a new viewer
    /// session id to put in the child playlist URLs, `None` when it is not
    /// counted, `Err` when the token has opened too many sessions lately
    /// (the request is then refused).
    fn session_started(&self, stream_id: &str, token: &str) -> Result<Option<String>, SessionsExhausted>;
    /// A child playlist request carried `session` (and `token`). `is_alternate` says
    /// whether the rendition is an audio one a player loads beside its
    /// video; it is asked only when the session's rendition changes.
    fn playlist_requested(
        &self,
        session: &str,
        stream_id: &str,
        token: &str,
        rendition: &str,
        is_alternate: &dyn Fn() -> bool,
    );
    /// Response body bytes served for the stream.
    fn delivered(&self, stream_id: &str, bytes: u64);
}
