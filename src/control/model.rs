//! The control plane's records: apps (tenants), their streams, playback
//! signing keys, admin tokens and the audit log. Secrets (stream keys, admin
//! tokens, HS256 secrets) are never fields of these types: they are returned
//! once, beside the record, by the call that creates them.

use serde::{Deserialize, Serialize};

/// A tenant. Streams, playback keys and app-scoped admin tokens belong to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct App {
    pub id: String,
    pub name: String,
    /// Ladder profile (a file in `pipelines/`) used by streams that name none.
    /// `None`: the server's `default_profile`.
    pub profile: Option<String>,
    /// A ladder of the app's own, as the TOML of a `pipelines/` file. Wins
    /// over `profile` for streams that name no profile.
    pub custom_ladder: Option<String>,
    pub encrypt: bool,
    /// A new content key every N segments.
    pub key_rotation_segments: u64,
    pub record: bool,
    /// The app's own bucket (on the server's S3 endpoint); `None`: the server's store.
    pub storage_bucket: Option<String>,
    /// Key prefix inside the bucket; `None`: the server's `storage.prefix`.
    pub storage_prefix: Option<String>,
    /// CDN mode: playlists point media URIs at `<cdn_base_url>/<stream>/<rendition>/`.
    pub cdn_base_url: Option<String>,
    /// Concurrent live streams allowed; `None` is unlimited.
    pub max_streams: Option<u32>,
    /// Ingest bitrate allowed per stream, in kbit/s; `None` is unlimited.
    pub max_ingest_kbps: Option<u32>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What creating an app takes; `None` fields get the defaults below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApp {
    pub name: String,
    pub profile: Option<String>,
    pub custom_ladder: Option<String>,
    pub encrypt: Option<bool>,
    pub key_rotation_segments: Option<u64>,
    pub record: Option<bool>,
    pub storage_bucket: Option<String>,
    pub storage_prefix: Option<String>,
    pub cdn_base_url: Option<String>,
    pub max_streams: Option<u32>,
    pub max_ingest_kbps: Option<u32>,
}

pub const DEFAULT_KEY_ROTATION_SEGMENTS: u64 = 10;

/// A partial update. The outer `Option` is "leave as is"; for nullable
/// fields the inner `None` clears the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppPatch {
    pub name: Option<String>,
    pub profile: Option<Option<String>>,
    pub custom_ladder: Option<Option<String>>,
    pub encrypt: Option<bool>,
    pub key_rotation_segments: Option<u64>,
    pub record: Option<bool>,
    pub storage_bucket: Option<Option<String>>,
    pub storage_prefix: Option<Option<String>>,
    pub cdn_base_url: Option<Option<String>>,
    pub max_streams: Option<Option<u32>>,
    pub max_ingest_kbps: Option<Option<u32>>,
}

/// The app every installation starts with; streams created before apps
/// existed belong to it.
pub const DEFAULT_APP_ID: &str = "app_default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stream {
    pub id: String,
    pub app_id: String,
    pub name: String,
    /// First characters of the key, for display; the key itself is never stored.
    pub key_prefix: String,
    /// Overrides the app's ladder.
    pub profile: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewStream {
    pub name: String,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPatch {
    pub name: Option<String>,
    pub profile: Option<Option<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum KeyAlgorithm {
    /// A secret the server generates and holds; the app's backend gets it once.
    HS256,
    /// The app's RSA public key; the app signs with its private key.
    RS256,
    /// The app's P-256 public key.
    ES256,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "HS256" => Some(Self::HS256),
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }
}

/// A playback signing key as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlaybackKey {
    /// The JWT `kid` a token signed with this key carries.
    pub kid: String,
    pub app_id: String,
    pub algorithm: KeyAlgorithm,
    /// PEM of the public key, for RS256/ES256.
    pub public_key_pem: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlaybackKey {
    pub algorithm: KeyAlgorithm,
    /// Required for RS256/ES256, refused for HS256.
    pub public_key_pem: Option<String>,
}

/// What the token verifier needs of a key: includes the HS256 secret, so it
/// never leaves the server.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationKey {
    pub kid: String,
    pub app_id: String,
    pub algorithm: KeyAlgorithm,
    /// The HS256 secret bytes, or the PEM text of the public key.
    pub material: Vec<u8>,
    /// The newest HS256 key of an app is the one tokens are minted with.
    pub created_at: i64,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("app_id", &self.app_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A bearer token for the admin API, as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    /// `None`: global. `Some(app)`: sees and touches only that app.
    pub app_id: Option<String>,
    /// First characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAdminToken {
    pub name: String,
    pub app_id: Option<String>,
}

/// One admin mutation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// Admin token id, or `cli` for the local command line.
    pub actor: String,
    pub ip: Option<String>,
    /// e.g. `app.create`, `stream.rotate_key`, `stream.kick`.
    pub action: String,
    /// e.g. `app/app_1f…`, `stream/st9a…`.
    pub target: String,
    /// The app the target belongs to, for app-scoped queries.
    pub app_id: Option<String>,
    /// `ok`, or `error: <status> <reason>`.
    pub result: String,
}

/// What to append; the store assigns `id` and `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub actor: String,
    pub ip: Option<String>,
    pub action: String,
    pub target: String,
    pub app_id: Option<String>,
    pub result: String,
}

/// Filters combine with AND; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub app_id: Option<String>,
    pub target: Option<String>,
    /// `ok` or `error`: matches the start of `result`.
    pub result: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// At most this many (the store caps it).
    pub limit: Option<u32>,
}
