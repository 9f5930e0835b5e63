//! The control-plane store, behind [`ControlStore`] so that a PostgreSQL
//! implementation can follow the embedded SQLite one for multi-node
//! deployments. Queries are written in the SQL both understand.

mod outbox;
pub mod permissions;
mod recordings;
mod sources;
mod sqlite;
mod usage;
pub mod validate;

use async_trait::async_trait;

use super::model::{
    AdminToken, App, AppPatch, AuditEntry, AuditFilter, AuditRecord, NewAdminToken, NewApp, NewPlaybackKey, NewStream,
    PlaybackKey, Stream, StreamPatch, VerificationKey,
};

pub use outbox::EventStore;
pub use recordings::RecordingStore;
pub use sources::SourceStore;
pub use sqlite::SqliteStore;
pub use usage::UsageStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A unique field is taken (an app name, a kid).
    #[error("{0}")]
    Conflict(String),
    /// The request names something that does not exist (the app of a new stream).
    #[error("{0}")]
    NotFound(String),
    /// The value cannot be stored (a PEM that is not a public key).
    #[error("{0}")]
    Invalid(String),
}

/// Everything the control plane keeps. Lookups return `Ok(None)` for a
/// missing record; `Err` is reserved for the store itself failing or for a
/// request that breaks a rule ([`StoreError::Conflict`] and friends).
#[async_trait]
pub trait ControlStore: Send + Sync + std::fmt::Debug + 'static {
    /// A trivial round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);

    async fn create_app(&self, app: NewApp) -> Result<App, StoreError>;
    async fn app(&self, id: &str) -> Result<Option<App>, StoreError>;
    async fn app_by_name(&self, name: &str) -> Result<Option<App>, StoreError>;
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    async fn update_app(&self, id: &str, patch: AppPatch) -> Result<Option<App>, StoreError>;
    /// Deletes the app with its streams, playback keys and admin tokens.
    async fn delete_app(&self, id: &str) -> Result<bool, StoreError>;

    /// Creates a stream and returns it with its key, which is never retrievable again.
    async fn create_stream(&self, app_id: &str, stream: NewStream) -> Result<(Stream, String), StoreError>;
    async fn stream(&self, id: &str) -> Result<Option<Stream>, StoreError>;
    async fn stream_by_key(&self, key: &str) -> Result<Option<Stream>, StoreError>;
    /// All streams, or those of one app.
    async fn list_streams(&self, app_id: Option<&str>) -> Result<Vec<Stream>, StoreError>;
    async fn count_streams(&self) -> Result<i64, StoreError>;
    async fn update_stream(&self, id: &str, patch: StreamPatch) -> Result<Option<Stream>, StoreError>;
    /// A new key; the old one stops working at once.
    async fn rotate_stream_key(&self, id: &str) -> Result<Option<(Stream, String)>, StoreError>;
    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError>;

    /// For HS256 the server generates the secret and returns it (this once).
    async fn create_playback_key(
        &self,
        app_id: &str,
        key: NewPlaybackKey,
    ) -> Result<(PlaybackKey, Option<String>), StoreError>;
    async fn list_playback_keys(&self, app_id: &str) -> Result<Vec<PlaybackKey>, StoreError>;
    async fn delete_playback_key(&self, app_id: &str, kid: &str) -> Result<bool, StoreError>;
    /// Every active key with its material, for the token verifier.
    async fn verification_keys(&self) -> Result<Vec<VerificationKey>, StoreError>;

    /// Returns the token with its secret, which is never retrievable again.
    async fn create_admin_token(&self, token: NewAdminToken) -> Result<(AdminToken, String), StoreError>;
    /// The live (not revoked) token with this secret.
    async fn admin_token_by_secret(&self, secret: &str) -> Result<Option<AdminToken>, StoreError>;
    /// All tokens, or those scoped to one app.
    async fn list_admin_tokens(&self, app_id: Option<&str>) -> Result<Vec<AdminToken>, StoreError>;
    async fn revoke_admin_token(&self, id: &str) -> Result<bool, StoreError>;

    async fn append_audit(&self, record: AuditRecord) -> Result<AuditEntry, StoreError>;
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
}
