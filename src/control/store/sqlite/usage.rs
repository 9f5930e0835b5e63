//! Hourly usage: UPSERTs that add, queries that sum.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{to_i64, SqliteStore};
use crate::control::store::{StoreError, UsageStore};
use crate::control::usage::model::{UsageDelta, UsageFilter, UsageKey, UsageRow};

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn row_from(row: &SqliteRow, per_app: bool) -> Result<UsageRow, StoreError> {
    let ingest_ms: i64 = row.try_get("ingest_ms")?;
    let rendition_ms: i64 = row.try_get("rendition_ms")?;
    let viewer_ms: i64 = row.try_get("viewer_ms")?;
    Ok(UsageRow {
        app_id: row.try_get("app_id")?,
        stream_id: if per_app { None } else { Some(row.try_get("stream_id")?) },
        hour: row.try_get("hour")?,
        ingest_minutes: ingest_ms as f64 / 60_000.0,
        rendition_minutes: rendition_ms as f64 / 60_000.0,
        delivered_bytes: to_u64(row.try_get("delivered_bytes")?),
        viewer_seconds: viewer_ms as f64 / 1000.0,
        peak_viewers: to_u64(row.try_get("peak_viewers")?),
    })
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn add_usage(&self, deltas: &[(UsageKey, UsageDelta)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (key, delta) in deltas {
            sqlx::query(
                "INSERT INTO usage_hourly (app_id, stream_id, hour, ingest_ms, rendition_ms, delivered_bytes, \
                 viewer_ms, peak_viewers) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (app_id, stream_id, hour) DO UPDATE SET \
                   ingest_ms = usage_hourly.ingest_ms + excluded.ingest_ms, \
                   rendition_ms = usage_hourly.rendition_ms + excluded.rendition_ms, \
                   delivered_bytes = usage_hourly.delivered_bytes + excluded.delivered_bytes, \
                   viewer_ms = usage_hourly.viewer_ms + excluded.viewer_ms, \
                   peak_viewers = CASE WHEN excluded.peak_viewers > usage_hourly.peak_viewers \
                     THEN excluded.peak_viewers ELSE usage_hourly.peak_viewers END",
            )
            .bind(&key.app_id)
            .bind(&key.stream_id)
            .bind(key.hour)
            .bind(to_i64(delta.ingest_ms))
            .bind(to_i64(delta.rendition_ms))
            .bind(to_i64(delta.delivered_bytes))
            .bind(to_i64(delta.viewer_ms))
            .bind(to_i64(delta.peak_viewers))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        let mut conditions = Vec::new();
        if filter.app_id.is_some() {
            conditions.push("app_id = ?");
        }
        if filter.stream_id.is_some() {
            conditions.push("stream_id = ?");
        }
        if filter.from.is_some() {
            conditions.push("hour >= ?");
        }
        if filter.to.is_some() {
            conditions.push("hour < ?");
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = if filter.per_app {
            format!(
                "SELECT app_id, hour, SUM(ingest_ms) AS ingest_ms, SUM(rendition_ms) AS rendition_ms, \
                 SUM(delivered_bytes) AS delivered_bytes, SUM(viewer_ms) AS viewer_ms, \
                 MAX(peak_viewers) AS peak_viewers FROM usage_hourly{where_clause} \
                 GROUP BY app_id, hour ORDER BY hour, app_id LIMIT ?"
            )
        } else {
            format!(
                "SELECT app_id, stream_id, hour, ingest_ms, rendition_ms, delivered_bytes, viewer_ms, peak_viewers \
                 FROM usage_hourly{where_clause} ORDER BY hour, app_id, stream_id LIMIT ?"
            )
        };
        let mut query = sqlx::query(&sql);
        for value in [&filter.app_id, &filter.stream_id].into_iter().flatten() {
            query = query.bind(value);
        }
        for value in [filter.from, filter.to].into_iter().flatten() {
            query = query.bind(value);
        }
        query
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row_from(row, filter.per_app))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    fn key(stream: &str, hour: i64) -> UsageKey {
        UsageKey {
            app_id: "app_a".into(),
            stream_id: stream.into(),
            hour,
        }
    }

    #[tokio::test]
    async fn deltas_add_up_peaks_keep_the_maximum_and_apps_sum_their_streams() {
        let (_dir, store) = open().await;
        let delta = |ingest_ms, viewer_ms, peak| UsageDelta {
            ingest_ms,
            rendition_ms: ingest_ms * 2,
            delivered_bytes: 1000,
            viewer_ms,
            peak_viewers: peak,
        };
        store
            .add_usage(&[
                (key("s1", 3600), delta(60_000, 5_000, 3)),
                (key("s2", 3600), delta(30_000, 1_000, 7)),
            ])
            .await
            .expect("add");
        store
            .add_usage(&[
                (key("s1", 3600), delta(60_000, 5_000, 2)),
                (key("s1", 7200), delta(6_000, 0, 1)),
            ])
            .await
            .expect("add");
        let filter = UsageFilter {
            app_id: Some("app_a".into()),
            limit: 100,
            ..UsageFilter::default()
        };
        let rows = store.usage(&filter).await.expect("rows");
        assert_eq!(rows.len(), 3);
        let s1 = &rows[0];
        assert_eq!((s1.stream_id.as_deref(), s1.hour), (Some("s1"), 3600));
        assert_eq!(s1.ingest_minutes, 2.0);
        assert_eq!(s1.rendition_minutes, 4.0);
        assert_eq!(s1.delivered_bytes, 2000);
        assert_eq!(s1.viewer_seconds, 10.0);
        assert_eq!(s1.peak_viewers, 3, "the peak is a maximum, not a sum");
        let per_app = store
            .usage(&UsageFilter {
                per_app: true,
                from: Some(3600),
                to: Some(7200),
                ..filter.clone()
            })
            .await
            .expect("per app");
        assert_eq!(per_app.len(), 1);
        assert_eq!(per_app[0].stream_id, None);
        assert_eq!(per_app[0].ingest_minutes, 2.5);
        assert_eq!(per_app[0].peak_viewers, 7);
        let other = store
            .usage(&UsageFilter {
                app_id: Some("app_b".into()),
                limit: 100,
                ..UsageFilter::default()
            })
            .await
            .expect("rows");
        assert!(other.is_empty());
    }
}
