//! A pull source as the store keeps it, and as operators see it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::control::keys::Secret;
use crate::ingest::rtsp::PullTransport;

/// The stored row. `url` and `stream_key` are secrets: never serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: String,
    pub app_id: String,
    pub stream_id: String,
    pub stream_key: Secret,
    pub name: String,
    pub url: Secret,
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
    #[schema(value_type = String)]
    pub url: Secret,
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
            url: crate::ingest::rtsp::redact(self.url.expose()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_holds_no_camera_credentials_or_stream_key() {
        let source = Source {
            id: "src_1".into(),
            app_id: "app_1".into(),
            stream_id: "st1".into(),
            stream_key: "live_app_streamkeysecret".into(),
            name: "cam".into(),
            url: "rtsp://admin:cam-pa55@10.0.0.9/stream".into(),
            transport: PullTransport::Tcp,
            enabled: true,
            created_at: 0,
            state: "connecting".into(),
            last_error: None,
            state_at: 0,
        };
        let new: NewSource =
            serde_json::from_str(r#"{"name":"cam","url":"rtsp://admin:new-pa55@10.0.0.9/s"}"#).expect("json");
        assert_eq!(new.url.expose(), "rtsp://admin:new-pa55@10.0.0.9/s");
        let printed = format!("{source:?} {new:?} {:?}", source.view());
        for secret in ["cam-pa55", "new-pa55", "streamkeysecret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
