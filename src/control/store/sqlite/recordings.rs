//! Recordings: a row per run, its segments and its keys.

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{corrupt, to_i64, SqliteStore};
use crate::control::recordings::model::{NewRecording, Recording, STATUS_RECORDING};
use crate::control::store::{RecordingStore, StoreError};
use crate::hls::{RecordedSegment, VodSegment};

const COLUMNS: &str = "id, app_id, stream_id, status, storage_bucket, storage_prefix, cdn_base_url, master, \
                       started_at, ended_at, duration_ms, segments, error";

fn to_u64(value: i64, column: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column))
}

fn recording_from(row: &SqliteRow) -> Result<Recording, StoreError> {
    Ok(Recording {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        stream_id: row.try_get("stream_id")?,
        status: row.try_get("status")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_ms: to_u64(row.try_get("duration_ms")?, "duration_ms")?,
        segments: to_u64(row.try_get("segments")?, "segments")?,
        error: row.try_get("error")?,
        storage_bucket: row.try_get("storage_bucket")?,
        storage_prefix: row.try_get("storage_prefix")?,
        cdn_base_url: row.try_get("cdn_base_url")?,
        master: row.try_get("master")?,
    })
}

#[async_trait]
impl RecordingStore for SqliteStore {
    async fn create_recording(&self, new: NewRecording) -> Result<Recording, StoreError> {
        sqlx::query(
            "INSERT INTO recordings (id, app_id, stream_id, status, storage_bucket, storage_prefix, cdn_base_url, started_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.id)
        .bind(&new.app_id)
        .bind(&new.stream_id)
        .bind(STATUS_RECORDING)
        .bind(&new.storage_bucket)
        .bind(&new.storage_prefix)
        .bind(&new.cdn_base_url)
        .bind(new.started_at)
        .execute(&self.pool)
        .await?;
        self.recording(&new.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("recording {} vanished", new.id)))
    }

    async fn recording(&self, id: &str) -> Result<Option<Recording>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM recordings WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(recording_from)
            .transpose()
    }

    async fn recordings_of(&self, app_id: &str, limit: u32) -> Result<Vec<Recording>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE app_id = ? ORDER BY started_at DESC, id LIMIT ?"
        ))
        .bind(app_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(recording_from)
        .collect()
    }

    async fn unfinished_recordings(&self) -> Result<Vec<Recording>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE status = ? ORDER BY started_at"
        ))
        .bind(STATUS_RECORDING)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(recording_from)
        .collect()
    }

    async fn set_recording_master(&self, id: &str, master: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE recordings SET master = ? WHERE id = ?")
            .bind(master)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_recording_segment(&self, id: &str, segment: &RecordedSegment) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO recording_segments \
             (recording_id, rendition, msn, duration_ns, discontinuity, init_id, key_id, iv, program_date_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&segment.rendition)
        .bind(to_i64(segment.msn))
        .bind(to_i64(segment.duration_ns))
        .bind(segment.discontinuity)
        .bind(to_i64(segment.init_id))
        .bind(segment.key.map(|k| to_i64(k.key_id)))
        .bind(segment.key.map(|k| hex::encode(k.iv)))
        .bind(crate::control::clock::unix_ms_at(segment.program_date_time))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() > 0 {
            if let Some(key) = segment.key {
                sqlx::query("INSERT OR IGNORE INTO recording_keys (recording_id, key_id, key) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(to_i64(key.key_id))
                    .bind(key.key.to_vec())
                    .execute(&mut *tx)
                    .await?;
            }
            // The duration is the longest rendition's.
            sqlx::query(
                "UPDATE recordings SET segments = segments + 1, duration_ms = \
                 (SELECT COALESCE(MAX(total), 0) FROM (SELECT SUM(duration_ns) / 1000000 AS total \
                  FROM recording_segments WHERE recording_id = ? GROUP BY rendition)) WHERE id = ?",
            )
            .bind(id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_recording(
        &self,
        id: &str,
        status: &str,
        ended_at: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE recordings SET status = ?, ended_at = ?, error = ? WHERE id = ?")
            .bind(status)
            .bind(ended_at)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recording_renditions(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT DISTINCT rendition FROM recording_segments WHERE recording_id = ? ORDER BY rendition")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get("rendition")?)).collect()
    }

    async fn recording_segments(&self, id: &str, rendition: &str) -> Result<Vec<VodSegment>, StoreError> {
        let rows = sqlx::query(
            "SELECT msn, duration_ns, discontinuity, init_id, key_id, iv, program_date_time FROM recording_segments \
             WHERE recording_id = ? AND rendition = ? ORDER BY msn",
        )
        .bind(id)
        .bind(rendition)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let key_id: Option<i64> = row.try_get("key_id")?;
                let iv: Option<String> = row.try_get("iv")?;
                let key = match (key_id, iv) {
                    (Some(key_id), Some(iv)) => {
                        let iv: [u8; 16] = hex::decode(&iv)
                            .ok()
                            .and_then(|v| v.try_into().ok())
                            .ok_or_else(|| corrupt("iv"))?;
                        Some((to_u64(key_id, "key_id")?, iv))
                    }
                    _ => None,
                };
                let pdt_ms = to_u64(row.try_get("program_date_time")?, "program_date_time")?;
                Ok(VodSegment {
                    msn: to_u64(row.try_get("msn")?, "msn")?,
                    duration_ns: to_u64(row.try_get("duration_ns")?, "duration_ns")?,
                    discontinuity: row.try_get("discontinuity")?,
                    init_id: to_u64(row.try_get("init_id")?, "init_id")?,
                    key,
                    program_date_time: UNIX_EPOCH + Duration::from_millis(pdt_ms),
                })
            })
            .collect()
    }

    async fn inits_shared_with_others(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT s.rendition, s.init_id FROM recording_segments s \
             JOIN recordings r ON r.id = s.recording_id \
             WHERE r.stream_id = (SELECT stream_id FROM recordings WHERE id = ?) AND r.id != ?",
        )
        .bind(id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("rendition")?, to_u64(row.try_get("init_id")?, "init_id")?)))
            .collect()
    }

    async fn recording_key(&self, id: &str, key_id: u64) -> Result<Option<[u8; 16]>, StoreError> {
        let row = sqlx::query("SELECT key FROM recording_keys WHERE recording_id = ? AND key_id = ?")
            .bind(id)
            .bind(to_i64(key_id))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key: Vec<u8> = row.try_get("key")?;
        key.try_into().map(Some).map_err(|_| corrupt("recording key"))
    }

    async fn delete_recording(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recording_segments WHERE recording_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recording_keys WHERE recording_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM recordings WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::recordings::model::{new_recording_id, STATUS_READY};
    use crate::hls::RecordedKey;

    fn segment(rendition: &str, msn: u64, key_id: u64) -> RecordedSegment {
        RecordedSegment {
            stream_id: "st1".into(),
            rendition: rendition.into(),
            msn,
            duration_ns: 2_000_000_000,
            discontinuity: msn == 12,
            init_id: 7,
            key: Some(RecordedKey {
                key_id,
                key: [key_id as u8; 16],
                iv: [0xab; 16],
            }),
            program_date_time: UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + msn * 2000),
        }
    }

    #[tokio::test]
    async fn a_recording_files_segments_once_keeps_keys_and_deletes_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).await.expect("open");
        let id = new_recording_id();
        let created = store
            .create_recording(NewRecording {
                id: id.clone(),
                app_id: "app_default".into(),
                stream_id: "st1".into(),
                storage_bucket: Some("tenant".into()),
                storage_prefix: None,
                cdn_base_url: None,
                started_at: 1,
            })
            .await
            .expect("create");
        assert_eq!(created.status, STATUS_RECORDING);
        assert_eq!(store.unfinished_recordings().await.expect("list").len(), 1);
        for msn in [10, 11, 12, 11] {
            store
                .add_recording_segment(&id, &segment("720p", msn, msn / 11))
                .await
                .expect("add");
        }
        store
            .add_recording_segment(&id, &segment("audio", 10, 0))
            .await
            .expect("add");
        let recording = store.recording(&id).await.expect("get").expect("found");
        assert_eq!(recording.segments, 4, "a repeated segment is filed once");
        assert_eq!(recording.duration_ms, 6000, "the longest rendition's duration");
        assert_eq!(recording.storage_bucket.as_deref(), Some("tenant"));
        assert_eq!(store.recording_renditions(&id).await.expect("r"), vec!["720p", "audio"]);
        let listed = store.recording_segments(&id, "720p").await.expect("segments");
        assert_eq!(listed.iter().map(|s| s.msn).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert!(listed[2].discontinuity);
        assert_eq!(listed[0].key, Some((0, [0xab; 16])));
        assert_eq!(
            listed[1].program_date_time,
            UNIX_EPOCH + Duration::from_millis(1_800_000_022_000)
        );
        assert_eq!(store.recording_key(&id, 1).await.expect("key"), Some([1; 16]));
        assert_eq!(store.recording_key(&id, 9).await.expect("key"), None);

        store.set_recording_master(&id, "#EXTM3U\n").await.expect("master");
        store
            .finish_recording(&id, STATUS_READY, 99, None)
            .await
            .expect("finish");
        assert!(store.unfinished_recordings().await.expect("list").is_empty());
        let listed = store.recordings_of("app_default", 10).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].master.as_deref(), Some("#EXTM3U\n"));
        assert_eq!(listed[0].ended_at, Some(99));

        // A second run of the same stream that reuses init 7 of the audio rendition.
        let second = new_recording_id();
        store
            .create_recording(NewRecording {
                id: second.clone(),
                app_id: "app_default".into(),
                stream_id: "st1".into(),
                storage_bucket: None,
                storage_prefix: None,
                cdn_base_url: None,
                started_at: 2,
            })
            .await
            .expect("create");
        store
            .add_recording_segment(&second, &segment("audio", 40, 3))
            .await
            .expect("add");
        assert_eq!(
            store.inits_shared_with_others(&id).await.expect("shared"),
            vec![("audio".to_string(), 7)]
        );

        assert!(store.delete_recording(&id).await.expect("delete"));
        assert!(store.recording(&id).await.expect("get").is_none());
        assert!(store
            .recording_segments(&id, "720p")
            .await
            .expect("segments")
            .is_empty());
        assert_eq!(store.recording_key(&id, 1).await.expect("key"), None);
        assert!(!store.delete_recording(&id).await.expect("delete again"));
    }
}
