//! How the audit log names admin mutations. Shared by the service, which
//! records every outcome, and by the handlers, which record the mutations
//! refused before the service is reached (a body that cannot be read).

pub const APP_CREATE: &str = "app.create";
pub const APP_UPDATE: &str = "app.update";
pub const APP_DELETE: &str = "app.delete";
pub const STREAM_CREATE: &str = "stream.create";
pub const STREAM_UPDATE: &str = "stream.update";
pub const STREAM_ENABLE: &str = "stream.enable";
pub const STREAM_DISABLE: &str = "stream.disable";
pub const STREAM_ROTATE_KEY: &str = "stream.rotate_key";
pub const STREAM_DELETE: &str = "stream.delete";
pub const STREAM_KICK: &str = "stream.kick";
pub const PLAYBACK_TOKEN_MINT: &str = "playback_token.mint";
pub const PLAYBACK_KEY_CREATE: &str = "playback_key.create";
pub const PLAYBACK_KEY_DELETE: &str = "playback_key.delete";
pub const ADMIN_TOKEN_CREATE: &str = "admin_token.create";
pub const ADMIN_TOKEN_REVOKE: &str = "admin_token.revoke";
pub const RECORDING_DELETE: &str = "recording.delete";
pub const SOURCE_CREATE: &str = "source.create";
pub const SOURCE_START: &str = "source.start";
pub const SOURCE_STOP: &str = "source.stop";
pub const SOURCE_DELETE: &str = "source.delete";

/// One mutation attempt as the log files it: what, on what, in which app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub action: &'static str,
    /// `app/<id>`, `stream/<id>`, …; the bare kind (`app`) for a create that
    /// produced nothing.
    pub target: String,
    pub app_id: Option<String>,
}

impl Attempt {
    pub fn new(action: &'static str, target: impl Into<String>, app_id: Option<&str>) -> Self {
        Self {
            action,
            target: target.into(),
            app_id: app_id.map(str::to_owned),
        }
    }

    pub fn on_stream(action: &'static str, app_id: &str, stream_id: &str) -> Self {
        Self::new(action, format!("stream/{stream_id}"), Some(app_id))
    }
}
