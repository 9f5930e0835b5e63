//! What a WHIP request can fail with, and the HTTP status RFC 9725 gives it.

use crate::ingest::{PublishRejection, RejectCode};

#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("no stream key: send `Authorization: Bearer <stream key>` or POST to /whip/<stream key>")]
    MissingKey,
    #[error("publish refused: {0}")]
    Refused(PublishRejection),
    #[error("content type must be {expected}, not {got:?}")]
    UnsupportedMediaType { expected: &'static str, got: String },
    #[error("the offer is not valid SDP: {0}")]
    BadOffer(String),
    #[error("the offer has nothing we can take: {0}")]
    NotAcceptable(String),
    #[error("the SDP fragment is not valid: {0}")]
    BadFragment(String),
    #[error("no WHIP session {0}")]
    UnknownSession(String),
    #[error("If-Match {got:?} does not match the session's ETag")]
    EtagMismatch { got: String },
    #[error("ICE restarts are not supported; start a new session")]
    IceRestart,
    #[error("at capacity: {0} WHIP sessions are running")]
    AtCapacity(usize),
    #[error("too many WHIP sessions from your address (at most {0})")]
    TooManyFromAddress(usize),
    #[error("negotiation failed: {0}")]
    Negotiation(String),
}

impl WhipError {
    pub fn status(&self) -> u16 {
        match self {
            WhipError::MissingKey => 401,
            WhipError::Refused(r) => match r.code {
                RejectCode::BadName => 401,
                RejectCode::Rejected => 403,
                RejectCode::Overloaded => 503,
            },
            WhipError::UnsupportedMediaType { .. } => 415,
            WhipError::BadOffer(_) | WhipError::BadFragment(_) => 400,
            WhipError::NotAcceptable(_) => 406,
            WhipError::UnknownSession(_) => 404,
            WhipError::EtagMismatch { .. } => 412,
            // RFC 9725 §4.3.1: a session that trickles but cannot restart
            // answers the restart with 422.
            WhipError::IceRestart => 422,
            WhipError::AtCapacity(_) | WhipError::TooManyFromAddress(_) => 503,
            WhipError::Negotiation(_) => 500,
        }
    }
}
