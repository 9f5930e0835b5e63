//! Apps (tenants).

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{corrupt, is_unique_violation, to_u32, unix_now, SqliteStore};
use crate::control::model::{App, AppPatch, NewApp, DEFAULT_APP_ID, DEFAULT_KEY_ROTATION_SEGMENTS};
use crate::control::store::{validate, StoreError};

const COLUMNS: &str = "id, name, profile, custom_ladder, encrypt, key_rotation_segments, record, \
                       storage_bucket, storage_prefix, cdn_base_url, \
                       max_streams, max_ingest_kbps, created_at, updated_at";

impl SqliteStore {
    pub(super) async fn insert_app(&self, new: NewApp) -> Result<App, StoreError> {
        validate::app_name(&new.name)?;
        validate::optional(new.profile.as_deref(), validate::profile_name)?;
        validate::optional(new.custom_ladder.as_deref(), validate::custom_ladder)?;
        validate::optional(new.storage_bucket.as_deref(), validate::bucket_name)?;
        validate::optional(new.storage_prefix.as_deref(), validate::storage_prefix)?;
        validate::optional(new.cdn_base_url.as_deref(), validate::cdn_base_url)?;
        let rotation = new.key_rotation_segments.unwrap_or(DEFAULT_KEY_ROTATION_SEGMENTS);
        let rotation_column = validate::key_rotation_segments(rotation)?;
        let now = unix_now();
        let app = App {
            id: crate::control::keys::new_app_id(),
            name: new.name,
            profile: new.profile,
            custom_ladder: new.custom_ladder,
            encrypt: new.encrypt.unwrap_or(true),
            key_rotation_segments: rotation,
            record: new.record.unwrap_or(false),
            storage_bucket: new.storage_bucket,
            storage_prefix: new.storage_prefix,
            cdn_base_url: new.cdn_base_url,
            max_streams: new.max_streams,
            max_ingest_kbps: new.max_ingest_kbps,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO apps ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&app.id)
        .bind(&app.name)
        .bind(&app.profile)
        .bind(&app.custom_ladder)
        .bind(app.encrypt)
        .bind(rotation_column)
        .bind(app.record)
        .bind(&app.storage_bucket)
        .bind(&app.storage_prefix)
        .bind(&app.cdn_base_url)
        .bind(app.max_streams.map(i64::from))
        .bind(app.max_ingest_kbps.map(i64::from))
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| name_conflict(e, &app.name))?;
        Ok(app)
    }

    /// `column` is one of ours (`id`, `name`), never caller input.
    pub(super) async fn app_where(&self, column: &'static str, value: &str) -> Result<Option<App>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE {column} = ?"))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| app_from_row(&r)).transpose()
    }

    pub(super) async fn all_apps(&self) -> Result<Vec<App>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM apps ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(app_from_row)
            .collect()
    }

    /// One UPDATE naming only the patched columns, so that two concurrent
    /// patches of different fields both land.
    pub(super) async fn patch_app(&self, id: &str, patch: AppPatch) -> Result<Option<App>, StoreError> {
        validate::optional(patch.name.as_deref(), validate::app_name)?;
        validate::optional(
            patch.profile.as_ref().and_then(Option::as_deref),
            validate::profile_name,
        )?;
        validate::optional(
            patch.custom_ladder.as_ref().and_then(Option::as_deref),
            validate::custom_ladder,
        )?;
        validate::optional(
            patch.storage_bucket.as_ref().and_then(Option::as_deref),
            validate::bucket_name,
        )?;
        validate::optional(
            patch.storage_prefix.as_ref().and_then(Option::as_deref),
            validate::storage_prefix,
        )?;
        validate::optional(
            patch.cdn_base_url.as_ref().and_then(Option::as_deref),
            validate::cdn_base_url,
        )?;
        let rotation = patch
            .key_rotation_segments
            .map(validate::key_rotation_segments)
            .transpose()?;

        let mut query = QueryBuilder::<Sqlite>::new("UPDATE apps SET updated_at = ");
        query.push_bind(unix_now());
        if let Some(name) = &patch.name {
            query.push(", name = ").push_bind(name);
        }
        if let Some(profile) = &patch.profile {
            query.push(", profile = ").push_bind(profile);
        }
        if let Some(ladder) = &patch.custom_ladder {
            query.push(", custom_ladder = ").push_bind(ladder);
        }
        if let Some(encrypt) = patch.encrypt {
            query.push(", encrypt = ").push_bind(encrypt);
        }
        if let Some(rotation) = rotation {
            query.push(", key_rotation_segments = ").push_bind(rotation);
        }
        if let Some(record) = patch.record {
            query.push(", record = ").push_bind(record);
        }
        if let Some(bucket) = &patch.storage_bucket {
            query.push(", storage_bucket = ").push_bind(bucket);
        }
        if let Some(prefix) = &patch.storage_prefix {
            query.push(", storage_prefix = ").push_bind(prefix);
        }
        if let Some(base) = &patch.cdn_base_url {
            query.push(", cdn_base_url = ").push_bind(base);
        }
        if let Some(max) = patch.max_streams {
            query.push(", max_streams = ").push_bind(max.map(i64::from));
        }
        if let Some(max) = patch.max_ingest_kbps {
            query.push(", max_ingest_kbps = ").push_bind(max.map(i64::from));
        }
        query.push(" WHERE id = ").push_bind(id);
        let done = query.build().execute(&self.pool).await.map_err(|e| match &patch.name {
            Some(name) => name_conflict(e, name),
            None => e.into(),
        })?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.app_where("id", id).await
    }

    /// The app and everything that hangs off it, at once. Its audit records
    /// stay: they are history.
    pub(super) async fn remove_app(&self, id: &str) -> Result<bool, StoreError> {
        if id == DEFAULT_APP_ID {
            return Err(StoreError::Invalid("the default app cannot be deleted".into()));
        }
        // The first statement writes, so the transaction takes the write
        // lock (waiting out the busy timeout) before it reads anything.
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE endpoint_id IN (SELECT id FROM webhook_endpoints WHERE app_id = ?)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Its events stay: they are history (and usage) of the app.
        for table in ["streams", "playback_keys", "admin_tokens", "webhook_endpoints"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE app_id = ?"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The migration could not know the time: give the built-in app the
    /// time of the first open instead of 1970.
    pub(super) async fn date_the_default_app(&self) -> Result<(), StoreError> {
        let undated: Option<i64> = sqlx::query_scalar("SELECT created_at FROM apps WHERE id = ? AND created_at = 0")
            .bind(DEFAULT_APP_ID)
            .fetch_optional(&self.pool)
            .await?;
        if undated.is_some() {
            let now = unix_now();
            sqlx::query("UPDATE apps SET created_at = ?, updated_at = ? WHERE id = ? AND created_at = 0")
                .bind(now)
                .bind(now)
                .bind(DEFAULT_APP_ID)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

fn name_conflict(e: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!("an app named {name:?} already exists"))
    } else {
        e.into()
    }
}

fn app_from_row(row: &SqliteRow) -> Result<App, StoreError> {
    let rotation: i64 = row.try_get("key_rotation_segments")?;
    Ok(App {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        profile: row.try_get("profile")?,
        custom_ladder: row.try_get("custom_ladder")?,
        encrypt: row.try_get("encrypt")?,
        key_rotation_segments: u64::try_from(rotation).map_err(|_| corrupt("key_rotation_segments"))?,
        record: row.try_get("record")?,
        storage_bucket: row.try_get("storage_bucket")?,
        storage_prefix: row.try_get("storage_prefix")?,
        cdn_base_url: row.try_get("cdn_base_url")?,
        max_streams: to_u32(row.try_get("max_streams")?, "max_streams")?,
        max_ingest_kbps: to_u32(row.try_get("max_ingest_kbps")?, "max_ingest_kbps")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{open, open_at};
    use crate::control::model::*;
    use crate::control::store::{ControlStore, StoreError};

    fn named(name: &str) -> NewApp {
        NewApp {
            name: name.into(),
            ..NewApp::default()
        }
    }

    #[tokio::test]
    async fn the_default_app_exists_and_is_dated() {
        let (_dir, store) = open().await;
        let default = store.app(DEFAULT_APP_ID).await.expect("query").expect("default app");
        assert_eq!(default.name, "default");
        assert!(default.encrypt);
        assert_eq!(default.key_rotation_segments, DEFAULT_KEY_ROTATION_SEGMENTS);
        assert!(!default.record);
        assert!(default.created_at > 1_600_000_000, "dated at first open");
        assert_eq!(
            store.app_by_name("default").await.expect("query"),
            Some(default.clone())
        );
        assert_eq!(store.list_apps().await.expect("list"), vec![default]);
    }

    #[tokio::test]
    async fn create_fills_defaults_and_keeps_every_field() {
        let (_dir, store) = open().await;
        let plain = store.create_app(named("plain")).await.expect("create");
        assert!(plain.id.starts_with("app_"));
        assert!(plain.encrypt && !plain.record);
        assert_eq!(plain.key_rotation_segments, DEFAULT_KEY_ROTATION_SEGMENTS);
        assert_eq!(
            (plain.profile.clone(), plain.max_streams, plain.max_ingest_kbps),
            (None, None, None)
        );

        let full = store
            .create_app(NewApp {
                name: "full".into(),
                profile: Some("small".into()),
                custom_ladder: Some("passthrough = true\n".into()),
                encrypt: Some(false),
                key_rotation_segments: Some(4),
                record: Some(true),
                storage_bucket: Some("tenant-media".into()),
                storage_prefix: Some("live/".into()),
                cdn_base_url: Some("https://cdn.example/tenant".into()),
                max_streams: Some(3),
                max_ingest_kbps: Some(u32::MAX),
            })
            .await
            .expect("create");
        assert_eq!(store.app(&full.id).await.expect("query"), Some(full.clone()));
        assert_eq!(full.max_ingest_kbps, Some(u32::MAX));
        assert_eq!(store.app_by_name("full").await.expect("query"), Some(full.clone()));
        let names: Vec<_> = store
            .list_apps()
            .await
            .expect("list")
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"plain".to_owned()) && names.contains(&"full".to_owned()));
        assert_eq!(store.app("app_nope").await.expect("query"), None);
    }

    #[tokio::test]
    async fn names_are_unique_and_well_formed() {
        let (_dir, store) = open().await;
        store.create_app(named("acme")).await.expect("create");
        assert!(matches!(
            store.create_app(named("acme")).await,
            Err(StoreError::Conflict(m)) if m.contains("acme")
        ));
        assert!(matches!(
            store.create_app(named("default")).await,
            Err(StoreError::Conflict(_))
        ));
        for bad in ["", "has space", "slash/", &"x".repeat(65)] {
            assert!(
                matches!(store.create_app(named(bad)).await, Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        let bad_profile = NewApp {
            profile: Some("../etc/passwd".into()),
            ..named("p")
        };
        assert!(matches!(
            store.create_app(bad_profile).await,
            Err(StoreError::Invalid(_))
        ));
        let bad_ladder = NewApp {
            custom_ladder: Some("passthrough = false\n".into()),
            ..named("l")
        };
        assert!(matches!(
            store.create_app(bad_ladder).await,
            Err(StoreError::Invalid(_))
        ));
        let bad_rotation = NewApp {
            key_rotation_segments: Some(0),
            ..named("r")
        };
        assert!(matches!(
            store.create_app(bad_rotation).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            store.list_apps().await.expect("list").len(),
            2,
            "nothing invalid stored"
        );
    }

    #[tokio::test]
    async fn update_changes_only_the_patched_fields() {
        let (_dir, store) = open().await;
        let app = store
            .create_app(NewApp {
                max_streams: Some(5),
                profile: Some("small".into()),
                ..named("before")
            })
            .await
            .expect("create");
        let patched = store
            .update_app(
                &app.id,
                AppPatch {
                    name: Some("after".into()),
                    max_streams: Some(None),
                    encrypt: Some(false),
                    key_rotation_segments: Some(7),
                    ..AppPatch::default()
                },
            )
            .await
            .expect("update")
            .expect("found");
        assert_eq!(patched.name, "after");
        assert_eq!(patched.max_streams, None, "cleared");
        assert_eq!(patched.profile.as_deref(), Some("small"), "left as is");
        assert!(!patched.encrypt);
        assert_eq!(patched.key_rotation_segments, 7);
        assert!(patched.updated_at >= app.updated_at);
        assert_eq!(store.app(&app.id).await.expect("query"), Some(patched));

        let empty = store
            .update_app(&app.id, AppPatch::default())
            .await
            .expect("update")
            .expect("found");
        assert_eq!(empty.name, "after");
        assert_eq!(
            store.update_app("app_nope", AppPatch::default()).await.expect("update"),
            None
        );
        let rename_to_taken = AppPatch {
            name: Some("default".into()),
            ..AppPatch::default()
        };
        assert!(matches!(
            store.update_app(&app.id, rename_to_taken).await,
            Err(StoreError::Conflict(_))
        ));
        let garbage = AppPatch {
            name: Some("no spaces".into()),
            ..AppPatch::default()
        };
        assert!(matches!(
            store.update_app(&app.id, garbage).await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn delete_takes_streams_keys_and_tokens_with_it() {
        let (_dir, store) = open().await;
        let doomed = store.create_app(named("doomed")).await.expect("create");
        let kept = store.create_app(named("kept")).await.expect("create");
        let mut keys = Vec::new();
        for app in [&doomed, &kept] {
            let (_, key) = store
                .create_stream(
                    &app.id,
                    NewStream {
                        name: "s".into(),
                        profile: None,
                    },
                )
                .await
                .expect("stream");
            keys.push(key);
            store
                .create_playback_key(
                    &app.id,
                    NewPlaybackKey {
                        algorithm: KeyAlgorithm::HS256,
                        public_key_pem: None,
                    },
                )
                .await
                .expect("playback key");
            store
                .create_admin_token(NewAdminToken {
                    name: "t".into(),
                    app_id: Some(app.id.clone()),
                })
                .await
                .expect("token");
        }
        assert!(store.delete_app(&doomed.id).await.expect("delete"));
        assert_eq!(store.app(&doomed.id).await.expect("query"), None);
        assert_eq!(store.stream_by_key(&keys[0]).await.expect("lookup"), None);
        assert!(store.list_streams(Some(&doomed.id)).await.expect("list").is_empty());
        assert!(store.list_playback_keys(&doomed.id).await.expect("list").is_empty());
        assert!(store
            .list_admin_tokens(Some(&doomed.id))
            .await
            .expect("list")
            .is_empty());
        // The other app is untouched.
        assert!(store.stream_by_key(&keys[1]).await.expect("lookup").is_some());
        assert_eq!(store.list_playback_keys(&kept.id).await.expect("list").len(), 1);
        assert_eq!(store.list_admin_tokens(Some(&kept.id)).await.expect("list").len(), 1);
        assert_eq!(store.verification_keys().await.expect("keys").len(), 1);

        assert!(!store.delete_app(&doomed.id).await.expect("delete again"));
        assert!(matches!(
            store.delete_app(DEFAULT_APP_ID).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(store.app(DEFAULT_APP_ID).await.expect("query").is_some());
    }

    #[tokio::test]
    async fn an_app_created_by_one_process_is_seen_by_another() {
        let (dir, first) = open().await;
        let second = open_at(dir.path()).await;
        let app = first.create_app(named("shared")).await.expect("create");
        assert_eq!(second.app_by_name("shared").await.expect("query"), Some(app));
    }
}
