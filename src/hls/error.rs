/// What the packager reports to delivery (mapped to 404 / 400 / 503) and to
/// the publish controller.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// Unknown stream, rendition, key, or media object outside retention.
    #[error("not found: {0}")]
    NotFound(String),
    /// A blocking-reload directive the spec says to reject at once.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A blocking request timed out with nothing to return.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The media stage broke the event contract (e.g. a chunk before its init).
    #[error("stream {stream}: ladder events out of contract: {reason}")]
    Protocol { stream: String, reason: String },
}
