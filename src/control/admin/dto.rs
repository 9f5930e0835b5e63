//! Request and response bodies. Every request body refuses unknown fields,
//! so a typo (`"max_stream"`) is an error rather than silently ignored.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::control::model::{AdminToken, KeyAlgorithm, PlaybackKey, Stream};

/// `null` clears a nullable field; leaving it out keeps it.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// 1–64 characters of `[A-Za-z0-9_-]`, unique.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// A profile in `pipelines/`.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub profile: Option<String>,
    /// The TOML of a ladder profile, the app's own.
    pub custom_ladder: Option<String>,
    pub encrypt: Option<bool>,
    #[schema(minimum = 1, maximum = 100000)]
    pub key_rotation_segments: Option<u64>,
    pub record: Option<bool>,
    /// The app's own bucket on the server's S3 endpoint.
    #[schema(pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    pub storage_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[schema(max_length = 256)]
    pub storage_prefix: Option<String>,
    /// CDN mode: an absolute http(s) URL media URIs are written under.
    #[schema(max_length = 2048)]
    pub cdn_base_url: Option<String>,
    pub max_streams: Option<u32>,
    pub max_ingest_kbps: Option<u32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub custom_ladder: Option<Option<String>>,
    pub encrypt: Option<bool>,
    #[schema(minimum = 1, maximum = 100000)]
    pub key_rotation_segments: Option<u64>,
    pub record: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    pub storage_bucket: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, max_length = 256)]
    pub storage_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, max_length = 2048)]
    pub cdn_base_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable)]
    pub max_streams: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, nullable)]
    pub max_ingest_kbps: Option<Option<u32>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// 1–128 printable characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// Overrides the app's ladder.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub profile: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStream {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub profile: Option<Option<String>>,
    /// `false` also disconnects a live publisher at once.
    pub enabled: Option<bool>,
}

/// A stream with its key: only in the answer that creates or rotates it.
#[derive(Serialize, ToSchema)]
pub struct StreamWithKey {
    pub stream: Stream,
    /// Shown only now; stored as a hash.
    pub stream_key: String,
    /// Point the encoder here, with `stream_key` as the key.
    pub rtmp_url: String,
    /// A signed master playlist URL (24 h).
    pub playback_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlaybackKey {
    pub algorithm: KeyAlgorithm,
    /// RS256/ES256: the app's public key (PEM).
    pub public_key_pem: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedPlaybackKey {
    pub key: PlaybackKey,
    /// HS256 only, shown only now: the HMAC key is this text.
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// Lifetime in seconds (default 3600, at most 30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_secs: Option<u64>,
    /// Becomes the token's `sid` claim: 1–128 printable characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub viewer_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MintedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub playback_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminToken {
    /// 1–128 printable characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// Scope the token to one app; absent: a global token.
    pub app_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedAdminToken {
    pub token: AdminToken,
    /// Shown only now; stored as a hash.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Kicked {
    /// False when the stream had no publisher.
    pub kicked: bool,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Admin token id, or `cli`.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub app_id: Option<String>,
    pub target: Option<String>,
    /// `ok` or `error`.
    #[param(pattern = "^(ok|error)$")]
    pub result: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Default 100, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    pub app_id: Option<String>,
}

/// The answers that carry a secret print without it, so that a stray `{:?}`
/// in a log line cannot leak one.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for StreamWithKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWithKey")
            .field("stream", &self.stream)
            .field("stream_key", &REDACTED)
            .field("rtmp_url", &self.rtmp_url)
            .field("playback_url", &self.playback_url)
            .finish()
    }
}

impl std::fmt::Debug for CreatedPlaybackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPlaybackKey")
            .field("key", &self.key)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl std::fmt::Debug for CreatedAdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAdminToken")
            .field("token", &self.token)
            .field("secret", &REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_secrets_debug_print_without_them() {
        let token = CreatedAdminToken {
            token: AdminToken {
                id: "at_1".into(),
                name: "ops".into(),
                app_id: None,
                prefix: "pe_admin_abcd…".into(),
                created_at: 0,
                revoked: false,
            },
            secret: "pe_admin_abcdsecretsecret".into(),
        };
        let key = CreatedPlaybackKey {
            key: PlaybackKey {
                kid: "pk_1".into(),
                app_id: "app_1".into(),
                algorithm: KeyAlgorithm::HS256,
                public_key_pem: None,
                created_at: 0,
            },
            secret: Some("hs256secretsecret".into()),
        };
        let printed = format!("{token:?} {key:?}");
        assert!(!printed.contains("secretsecret"), "{printed}");
        assert!(printed.contains("at_1") && printed.contains("pk_1"), "{printed}");
    }
}
