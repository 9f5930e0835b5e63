//! Pull sources: one row each.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{corrupt, SqliteStore};
use crate::control::sources::model::Source;
use crate::control::store::{SourceStore, StoreError};
use crate::ingest::rtsp::PullTransport;

const COLUMNS: &str =
    "id, app_id, stream_id, stream_key, name, url, transport, enabled, created_at, state, last_error, state_at";

fn source_from(row: &SqliteRow) -> Result<Source, StoreError> {
    let transport = match row.try_get::<String, _>("transport")?.as_str() {
        "tcp" => PullTransport::Tcp,
        "udp" => PullTransport::Udp,
        _ => return Err(corrupt("transport")),
    };
    Ok(Source {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        stream_id: row.try_get("stream_id")?,
        stream_key: row.try_get::<String, _>("stream_key")?.into(),
        name: row.try_get("name")?,
        url: row.try_get::<String, _>("url")?.into(),
        transport,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        state: row.try_get("state")?,
        last_error: row.try_get("last_error")?,
        state_at: row.try_get("state_at")?,
    })
}

fn transport_text(transport: PullTransport) -> &'static str {
    match transport {
        PullTransport::Tcp => "tcp",
        PullTransport::Udp => "udp",
    }
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, s: &Source) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO pull_sources ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&s.id)
        .bind(&s.app_id)
        .bind(&s.stream_id)
        .bind(s.stream_key.expose())
        .bind(&s.name)
        .bind(s.url.expose())
        .bind(transport_text(s.transport))
        .bind(s.enabled)
        .bind(s.created_at)
        .bind(&s.state)
        .bind(&s.last_error)
        .bind(s.state_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn source(&self, id: &str) -> Result<Option<Source>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM pull_sources WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(source_from)
            .transpose()
    }

    async fn sources(&self, app_id: Option<&str>) -> Result<Vec<Source>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pull_sources WHERE ? IS NULL OR app_id = ? ORDER BY created_at, id"
        ))
        .bind(app_id)
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(source_from)
        .collect()
    }

    async fn set_source_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE pull_sources SET enabled = ? WHERE id = ?")
            .bind(enabled)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_source_state(
        &self,
        id: &str,
        state: &str,
        last_error: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE pull_sources SET state = ?, last_error = ?, state_at = ? WHERE id = ?")
            .bind(state)
            .bind(last_error)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_source(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pull_sources WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
