//! The embedded control-plane store (SQLite through sqlx). The server and the
//! CLI open the same file concurrently, so it runs in WAL mode with a busy
//! timeout, and every publish reads it afresh: a stream created by the CLI can
//! publish at once.
//!
//! Each write that depends on another row is one statement (`INSERT …
//! SELECT … FROM apps WHERE id = ?`), not a read then a write: SQLite
//! serialises single statements, whereas a transaction that upgrades from
//! reading to writing fails at once when another process wrote in between.

mod admin_tokens;
mod apps;
mod audit;
mod outbox;
mod playback_keys;
mod recordings;
mod sources;
mod streams;
#[cfg(test)]
mod tests;
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

use super::{permissions, ControlStore, StoreError};
use crate::control::model::*;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Two processes opening a fresh file together contend for the switch
        // to WAL and for the migrations, and SQLite answers some of that
        // contention with an immediate "database is locked" that the busy
        // timeout does not cover. The loser retries; by then the winner is done.
        let mut attempt = 1;
        loop {
            match Self::open_once(path).await {
                Err(e) if attempt < OPEN_ATTEMPTS && is_open_contention(&e) => {
                    tracing::debug!(error = %e, attempt, "database busy while opening, retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn open_once(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let io_err = |e| open_err(sqlx::Error::Io(e));
        // It holds secrets: private from the first byte, and tightened if
        // an older version left it (or its WAL) readable.
        permissions::create_private_file(path).map_err(io_err)?;
        for file in permissions::database_files(path) {
            permissions::tighten(&file, permissions::FILE_MODE).map_err(io_err)?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Self { pool };
        let prepared = async {
            sqlx::migrate!("src/control/migrations").run(&store.pool).await?;
            store.date_the_default_app().await
        };
        if let Err(e) = prepared.await {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }
}

const OPEN_ATTEMPTS: usize = 5;

fn is_open_contention(e: &StoreError) -> bool {
    let busy = |e: &sqlx::Error| {
        matches!(e, sqlx::Error::Database(db)
            if db.code().and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
    };
    match e {
        StoreError::Open { source, .. } | StoreError::Query(source) => busy(source),
        // A migration that raced another process fails on the tables the
        // other one created; on retry it finds them recorded as applied.
        StoreError::Migrate(_) => true,
        _ => false,
    }
}

#[async_trait]
impl ControlStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_app(&self, app: NewApp) -> Result<App, StoreError> {
        self.insert_app(app).await
    }
    async fn app(&self, id: &str) -> Result<Option<App>, StoreError> {
        self.app_where("id", id).await
    }
    async fn app_by_name(&self, name: &str) -> Result<Option<App>, StoreError> {
        self.app_where("name", name).await
    }
    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.all_apps().await
    }
    async fn update_app(&self, id: &str, patch: AppPatch) -> Result<Option<App>, StoreError> {
        self.patch_app(id, patch).await
    }
    async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        self.remove_app(id).await
    }

    async fn create_stream(&self, app_id: &str, stream: NewStream) -> Result<(Stream, String), StoreError> {
        self.insert_stream(app_id, stream).await
    }
    async fn stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        self.stream_where("id", id).await
    }
    async fn stream_by_key(&self, key: &str) -> Result<Option<Stream>, StoreError> {
        self.stream_where("key_hash", &crate::control::keys::hash_stream_key(key))
            .await
    }
    async fn list_streams(&self, app_id: Option<&str>) -> Result<Vec<Stream>, StoreError> {
        self.streams_of(app_id).await
    }
    async fn count_streams(&self) -> Result<i64, StoreError> {
        self.stream_count().await
    }
    async fn update_stream(&self, id: &str, patch: StreamPatch) -> Result<Option<Stream>, StoreError> {
        self.patch_stream(id, patch).await
    }
    async fn rotate_stream_key(&self, id: &str) -> Result<Option<(Stream, String)>, StoreError> {
        self.new_stream_key(id).await
    }
    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        self.remove_stream(id).await
    }

    async fn create_playback_key(
        &self,
        app_id: &str,
        key: NewPlaybackKey,
    ) -> Result<(PlaybackKey, Option<String>), StoreError> {
        self.insert_playback_key(app_id, key).await
    }
    async fn list_playback_keys(&self, app_id: &str) -> Result<Vec<PlaybackKey>, StoreError> {
        self.playback_keys_of(app_id).await
    }
    async fn delete_playback_key(&self, app_id: &str, kid: &str) -> Result<bool, StoreError> {
        self.remove_playback_key(app_id, kid).await
    }
    async fn verification_keys(&self) -> Result<Vec<VerificationKey>, StoreError> {
        self.all_verification_keys().await
    }

    async fn create_admin_token(&self, token: NewAdminToken) -> Result<(AdminToken, String), StoreError> {
        self.insert_admin_token(token).await
    }
    async fn admin_token_by_secret(&self, secret: &str) -> Result<Option<AdminToken>, StoreError> {
        self.live_admin_token(secret).await
    }
    async fn list_admin_tokens(&self, app_id: Option<&str>) -> Result<Vec<AdminToken>, StoreError> {
        self.admin_tokens_of(app_id).await
    }
    async fn revoke_admin_token(&self, id: &str) -> Result<bool, StoreError> {
        self.revoke(id).await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        self.insert_audit(record).await
    }
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.query_audit(filter).await
    }
}

use crate::control::clock::{unix_ms as unix_now_ms, unix_secs as unix_now};

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A row that holds what no write of ours produces (corruption or a newer
/// schema): reported as a failed query, like any unreadable row.
/// A count or id we keep as u64, in SQLite's signed column (saturating).
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Query(sqlx::Error::Decode(format!("unreadable {what} in the database").into()))
}

fn to_u32(value: Option<i64>, what: &str) -> Result<Option<u32>, StoreError> {
    value.map(|v| u32::try_from(v).map_err(|_| corrupt(what))).transpose()
}

/// Writes whose `seq` is `MAX(seq) + 1` can collide when two processes insert
/// at once on an engine that does not serialise statements; a collision is a
/// unique violation, and the next attempt reads the new maximum.
const SEQ_ATTEMPTS: usize = 3;
