//! A pull source as the store keeps it, and as operators see it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ingest::rtsp::PullTransport;

/// The stored row. `url` and `stream_key` are secrets: never serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: String,
    pub app_id: String,
    pub stream_id: String,
    pub stream_key: String,
    pub name: String,
    pub url: String,
    pub transport: PullTransport,
    pub enabled: bool,
    pub created_at: i64,
    /// As last persisted by the server that runs it.
    pub state: String,
    pub last_error: Option<String>,
    pub state_at: i64,
}

/// What creating a source takes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    /// Also the name of the stream created for it.
    pub name: String,
    /// `rtsp://[user:password@]host[:port]/path`. Stored,
    /// never shown again: responses carry it with the credentials masked.
    pub url: String,
    /// `tcp` (default: interleaved, works through NAT) or `udp`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub transport: PullTransport,
    /// Ladder profile of the stream (the app's default when absent).
    pub profile: Option<String>,
}

/// A source in API responses and CLI output.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    pub app_id: String,
    pub stream_id: String,
    pub name: String,
    /// Credentials masked as `***`.
    pub url: String,
    #[schema(value_type = String)]
    pub transport: PullTransport,
    pub enabled: bool,
    pub created_at: i64,
    /// `connecting`, `live`, `retrying` (waiting before the next attempt) or `stopped`.
    pub state: String,
    /// Why the last attempt failed (wrong credentials, camera unreachable, …).
    pub last_error: Option<String>,
    /// Connection attempts and successful connections since the source last started.
    pub attempts: Option<u32>,
    pub connections: Option<u32>,
    /// Unix ms when the state began.
    pub state_at: i64,
}

impl Source {
    pub fn view(&self) -> SourceView {
        SourceView {
            id: self.id.clone(),
            app_id: self.app_id.clone(),
            stream_id: self.stream_id.clone(),
            name: self.name.clone(),
            url: crate::ingest::rtsp::redact(&self.url),
            transport: self.transport,
            enabled: self.enabled,
            created_at: self.created_at,
            state: self.state.clone(),
            last_error: self.last_error.clone(),
            attempts: None,
            connections: None,
            state_at: self.state_at,
        }
    }
}
