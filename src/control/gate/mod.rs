//! Publish authorisation: who may publish, as which stream, with which
//! settings. The embedded store answers by default; an operator's own
//! control plane can answer instead over an HMAC-signed HTTP callback.
//! Either way, repeated failures from one address are throttled first.

mod embedded;
mod http;
mod limiter;
mod outage_cache;

use std::sync::Arc;

use async_trait::async_trait;

use crate::ingest::{PublishRequest, RejectCode};

pub use embedded::EmbeddedAuthorizer;
pub use http::{sign_body, HttpAuthSettings, HttpAuthorizer, SIGNATURE_HEADER};
pub use limiter::{FailureLimiter, LimiterSettings};

/// Which ladder a stream gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LadderChoice {
    /// The server's `default_profile`.
    ServerDefault,
    /// A profile from `pipelines/`, by name.
    Profile(String),
    /// An app's own ladder, as the TOML of a profile file.
    Custom(String),
}

/// An accepted publish and everything the rest of the session needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub stream_id: String,
    pub app_id: String,
    pub ladder: LadderChoice,
    /// `None`: the server's `hls.encrypt`.
    pub encrypt: Option<bool>,
    /// `None`: the server's `hls.key_rotation_segments`.
    pub key_rotation_segments: Option<u64>,
    pub record: bool,
    /// Where the stream's media goes: the app's own bucket and prefix, and
    /// its CDN base (all `None`: the server's store, media served by the edge).
    pub storage: StorageChoice,
    pub max_streams: Option<u32>,
    pub max_ingest_kbps: Option<u32>,
}

/// An app's storage overrides, as the publish path needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageChoice {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub cdn_base_url: Option<String>,
}

/// Why a publish was refused: a stable label for metrics and events, and
/// the description the publisher sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthDenial {
    pub reason: DenyReason,
    pub message: String,
    /// The stream and app the refused key belongs to, when known: the
    /// app's webhooks hear about refusals of its own streams only.
    pub target: Option<DeniedStream>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedStream {
    pub stream_id: String,
    pub app_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    UnknownKey,
    Disabled,
    RateLimited,
    CallbackDenied,
    CallbackUnreachable,
    CallbackTimeout,
    CallbackBadAnswer,
    StoreUnavailable,
    AppStreamLimit,
    BadProfile,
}

impl DenyReason {
    pub const ALL: [DenyReason; 10] = [
        Self::UnknownKey,
        Self::Disabled,
        Self::RateLimited,
        Self::CallbackDenied,
        Self::CallbackUnreachable,
        Self::CallbackTimeout,
        Self::CallbackBadAnswer,
        Self::StoreUnavailable,
        Self::AppStreamLimit,
        Self::BadProfile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::Disabled => "disabled",
            Self::RateLimited => "rate_limited",
            Self::CallbackDenied => "callback_denied",
            Self::CallbackUnreachable => "callback_unreachable",
            Self::CallbackTimeout => "callback_timeout",
            Self::CallbackBadAnswer => "callback_bad_answer",
            Self::StoreUnavailable => "store_unavailable",
            Self::AppStreamLimit => "app_stream_limit",
            Self::BadProfile => "bad_profile",
        }
    }

    /// Failures a key guesser causes count towards its throttle; outages of
    /// our own control plane and limits of a valid key do not.
    pub fn is_failed_attempt(self) -> bool {
        matches!(self, Self::UnknownKey | Self::Disabled | Self::CallbackDenied)
    }

    /// How RTMP reports it: a bad key is `BadName`, everything else `Rejected`.
    pub fn reject_code(self) -> RejectCode {
        match self {
            Self::UnknownKey | Self::Disabled => RejectCode::BadName,
            _ => RejectCode::Rejected,
        }
    }
}

impl AuthDenial {
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            target: None,
        }
    }

    pub fn of_stream(mut self, stream_id: &str, app_id: &str) -> Self {
        self.target = Some(DeniedStream {
            stream_id: stream_id.to_owned(),
            app_id: app_id.to_owned(),
        });
        self
    }
}

/// The whole admission decision: the failed-attempt throttle in front of
/// whichever authorizer is configured.
pub struct Admission {
    pub authorizer: Arc<dyn PublishAuthorizer>,
    pub limiter: FailureLimiter,
}

#[async_trait]
pub trait PublishAuthorizer: Send + Sync + 'static {
    async fn authorize(&self, request: &PublishRequest) -> Result<Authorization, AuthDenial>;
}

/// Stream ids become URL path segments and object-store keys.
pub fn is_valid_stream_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
