//! The embedded control-plane store (SQLite through sqlx). The server and the
//! CLI open the same file concurrently, so it runs in WAL mode with a busy
//! timeout, and every publish reads it afresh: a stream created by the CLI can
//! publish at once.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use super::keys;

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
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stream {
    pub id: String,
    pub name: String,
    /// First characters of the key, for display; the key itself is never stored.
    pub key_prefix: String,
    pub profile: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
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
        sqlx::migrate!("src/control/migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Creates a stream and returns it with its key, which is never retrievable again.
    pub async fn create_stream(&self, name: &str, profile: Option<&str>) -> Result<(Stream, String), StoreError> {
        let key = keys::new_stream_key();
        let stream = Stream {
            id: keys::new_stream_id(),
            name: name.to_owned(),
            key_prefix: keys::redact_stream_key(&key),
            profile: profile.map(str::to_owned),
            enabled: true,
            created_at: unix_now(),
        };
        sqlx::query(
            "INSERT INTO streams (id, name, key_hash, key_prefix, profile, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&stream.id)
        .bind(&stream.name)
        .bind(keys::hash_stream_key(&key))
        .bind(&stream.key_prefix)
        .bind(&stream.profile)
        .bind(stream.enabled)
        .bind(stream.created_at)
        .execute(&self.pool)
        .await?;
        Ok((stream, key))
    }

    pub async fn stream_by_key(&self, key: &str) -> Result<Option<Stream>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM streams WHERE key_hash = ?"))
            .bind(keys::hash_stream_key(key))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| stream_from_row(&r)).transpose()
    }

    pub async fn stream(&self, id: &str) -> Result<Option<Stream>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM streams WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| stream_from_row(&r)).transpose()
    }

    pub async fn count_streams(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM streams")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const COLUMNS: &str = "id, name, key_prefix, profile, enabled, created_at";

fn stream_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Stream, StoreError> {
    Ok(Stream {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        profile: row.try_get("profile")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn created_stream_is_found_by_its_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        let (stream, key) = store.create_stream("demo", Some("small")).await.expect("create");
        assert_eq!(store.stream_by_key(&key).await.expect("lookup"), Some(stream.clone()));
        assert_eq!(store.stream_by_key("live_wrong").await.expect("lookup"), None);
        assert_eq!(store.stream(&stream.id).await.expect("by id"), Some(stream));
        assert_eq!(store.count_streams().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn the_key_is_not_stored_in_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Store::open(&path).await.expect("open");
        let (_, key) = store.create_stream("demo", None).await.expect("create");
        store.close().await;
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            raw.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
        }
        let needle = key.as_bytes();
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "stream key found in the database files"
        );
    }

    #[tokio::test]
    async fn a_second_process_sees_streams_created_by_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let server = Store::open(&path).await.expect("open server");
        let cli = Store::open(&path).await.expect("open cli");
        let (_, key) = cli.create_stream("late", None).await.expect("create");
        assert!(server.stream_by_key(&key).await.expect("lookup").is_some());
    }
}
