//! What delivery tells the control plane about viewers, without knowing how
//! they are counted or billed.

/// Implemented by the control plane; every call must be cheap (it runs on
/// the request path) and must never fail the request.
pub trait ViewerReporter: Send + Sync + 'static {
    /// A signed master playlist was served: a new viewer session id to put
    /// in the child playlist URLs, or `None` when it is not counted.
    fn session_started(&self, stream_id: &str) -> Option<String>;
    /// A child playlist request carried `session`. `is_alternate` says
    /// whether the rendition is an audio one a player loads beside its
    /// video; it is asked only when the session's rendition changes.
    fn playlist_requested(&self, session: &str, stream_id: &str, rendition: &str, is_alternate: &dyn Fn() -> bool);
    /// Response body bytes served for the stream.
    fn delivered(&self, stream_id: &str, bytes: u64);
}
