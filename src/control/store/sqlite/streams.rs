//! Streams and their hashed publish keys.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{is_unique_violation, unix_now, SqliteStore};
use crate::control::keys;
use crate::control::model::{NewStream, Stream, StreamPatch};
use crate::control::store::{validate, StoreError};

const COLUMNS: &str = "id, app_id, name, key_prefix, profile, enabled, created_at";

impl SqliteStore {
    pub(super) async fn insert_stream(&self, app_id: &str, new: NewStream) -> Result<(Stream, String), StoreError> {
        validate::stream_name(&new.name)?;
        validate::optional(new.profile.as_deref(), validate::profile_name)?;
        let key = keys::new_stream_key(app_id);
        let stream = Stream {
            id: keys::new_stream_id(),
            app_id: app_id.to_owned(),
            name: new.name,
            key_prefix: keys::redact_stream_key(&key),
            profile: new.profile,
            enabled: true,
            created_at: unix_now(),
        };
        // Inserted only if the app exists, in the same statement.
        let done = sqlx::query(
            "INSERT INTO streams (id, app_id, name, key_hash, key_prefix, profile, enabled, created_at) \
             SELECT ?, id, ?, ?, ?, ?, ?, ? FROM apps WHERE id = ?",
        )
        .bind(&stream.id)
        .bind(&stream.name)
        .bind(keys::hash_stream_key(&key))
        .bind(&stream.key_prefix)
        .bind(&stream.profile)
        .bind(stream.enabled)
        .bind(stream.created_at)
        .bind(app_id)
        .execute(&self.pool)
        .await
        .map_err(key_conflict)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no app with id {app_id:?}")));
        }
        Ok((stream, key))
    }

    /// `column` is one of ours (`id`, `key_hash`), never caller input.
    pub(super) async fn stream_where(&self, column: &'static str, value: &str) -> Result<Option<Stream>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM streams WHERE {column} = ?"))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| stream_from_row(&r)).transpose()
    }

    pub(super) async fn streams_of(&self, app_id: Option<&str>) -> Result<Vec<Stream>, StoreError> {
        let rows = match app_id {
            Some(app_id) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM streams WHERE app_id = ? ORDER BY created_at, id"
                ))
                .bind(app_id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM streams ORDER BY created_at, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(stream_from_row).collect()
    }

    /// Ids of streams an auth callback admitted without naming them, as
    /// versions before keyed ids derived them (`ext_` and 16 hex): those
    /// streams keep their ids (see `keys::StreamIdKey`).
    pub async fn legacy_derived_stream_ids(&self) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT stream_id FROM stream_states WHERE stream_id LIKE 'ext\\_%' ESCAPE '\\'")
                .fetch_all(&self.pool)
                .await?;
        Ok(ids
            .into_iter()
            .filter(|id| keys::StreamIdKey::is_legacy_shape(id))
            .collect())
    }

    pub(super) async fn stream_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM streams")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(super) async fn patch_stream(&self, id: &str, patch: StreamPatch) -> Result<Option<Stream>, StoreError> {
        validate::optional(patch.name.as_deref(), validate::stream_name)?;
        validate::optional(
            patch.profile.as_ref().and_then(Option::as_deref),
            validate::profile_name,
        )?;
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE streams SET id = id");
        if let Some(name) = &patch.name {
            query.push(", name = ").push_bind(name);
        }
        if let Some(profile) = &patch.profile {
            query.push(", profile = ").push_bind(profile);
        }
        if let Some(enabled) = patch.enabled {
            query.push(", enabled = ").push_bind(enabled);
        }
        query.push(" WHERE id = ").push_bind(id);
        if query.build().execute(&self.pool).await?.rows_affected() == 0 {
            return Ok(None);
        }
        self.stream_where("id", id).await
    }

    /// The old hash is overwritten by the new one in one statement: from
    /// then on, no lookup finds the stream by its old key.
    pub(super) async fn new_stream_key(&self, id: &str) -> Result<Option<(Stream, String)>, StoreError> {
        let Some(mut stream) = self.stream_where("id", id).await? else {
            return Ok(None);
        };
        let key = keys::new_stream_key(&stream.app_id);
        stream.key_prefix = keys::redact_stream_key(&key);
        let done = sqlx::query("UPDATE streams SET key_hash = ?, key_prefix = ? WHERE id = ?")
            .bind(keys::hash_stream_key(&key))
            .bind(&stream.key_prefix)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(key_conflict)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some((stream, key)))
    }

    pub(super) async fn remove_stream(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM streams WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// 128 random bits do not collide; if the impossible happens, say so
/// without the key.
fn key_conflict(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("stream id or key collision, try again".into())
    } else {
        e.into()
    }
}

fn stream_from_row(row: &SqliteRow) -> Result<Stream, StoreError> {
    Ok(Stream {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        profile: row.try_get("profile")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{open, open_at};
    use crate::control::model::*;
    use crate::control::store::{ControlStore, StoreError};

    fn new_stream(name: &str) -> NewStream {
        NewStream {
            name: name.into(),
            profile: None,
        }
    }

    async fn app(store: &dyn ControlStore, name: &str) -> App {
        store
            .create_app(NewApp {
                name: name.into(),
                ..NewApp::default()
            })
            .await
            .expect("app")
    }

    #[tokio::test]
    async fn created_stream_is_found_by_its_key_only() {
        let (_dir, store) = open().await;
        let (stream, key) = store
            .create_stream(
                DEFAULT_APP_ID,
                NewStream {
                    name: "demo".into(),
                    profile: Some("small".into()),
                },
            )
            .await
            .expect("create");
        assert_eq!(stream.app_id, DEFAULT_APP_ID);
        assert!(key.starts_with("live_default_"), "scoped to the default app");
        assert_eq!(store.stream_by_key(&key).await.expect("lookup"), Some(stream.clone()));
        assert_eq!(store.stream_by_key("live_wrong").await.expect("lookup"), None);
        assert_eq!(store.stream(&stream.id).await.expect("by id"), Some(stream));
        assert_eq!(store.count_streams().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn keys_are_scoped_to_their_app_and_streams_listed_by_app() {
        let (_dir, store) = open().await;
        let acme = app(&store, "acme").await;
        let (in_acme, key) = store.create_stream(&acme.id, new_stream("a")).await.expect("create");
        let scope = &acme.id["app_".len().."app_".len() + 8];
        assert!(key.starts_with(&format!("live_{scope}_")), "{key} for {}", acme.id);
        assert!(in_acme.key_prefix.starts_with(&format!("live_{scope}_")));
        assert!(in_acme.key_prefix.ends_with('…'));
        assert!(!in_acme.key_prefix.contains(&key[key.len() - 28..]));
        let (in_default, _) = store
            .create_stream(DEFAULT_APP_ID, new_stream("d"))
            .await
            .expect("create");

        assert_eq!(
            store.list_streams(Some(&acme.id)).await.expect("list"),
            vec![in_acme.clone()]
        );
        assert_eq!(
            store.list_streams(Some(DEFAULT_APP_ID)).await.expect("list"),
            vec![in_default.clone()]
        );
        let all = store.list_streams(None).await.expect("list");
        assert_eq!(all.len(), 2);
        assert!(all.contains(&in_acme) && all.contains(&in_default));
        assert!(store.list_streams(Some("app_nope")).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_stream_needs_an_existing_app_and_sane_fields() {
        let (_dir, store) = open().await;
        assert!(matches!(
            store.create_stream("app_nope", new_stream("x")).await,
            Err(StoreError::NotFound(_))
        ));
        for bad in ["", "  ", "tab\tin", &"x".repeat(129)] {
            assert!(
                matches!(
                    store.create_stream(DEFAULT_APP_ID, new_stream(bad)).await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let bad_profile = NewStream {
            name: "ok".into(),
            profile: Some("a/b".into()),
        };
        assert!(matches!(
            store.create_stream(DEFAULT_APP_ID, bad_profile).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.count_streams().await.expect("count"), 0);
    }

    #[tokio::test]
    async fn update_renames_reprofiles_and_disables() {
        let (_dir, store) = open().await;
        let (stream, key) = store
            .create_stream(DEFAULT_APP_ID, new_stream("s"))
            .await
            .expect("create");
        let disabled = store
            .update_stream(
                &stream.id,
                StreamPatch {
                    enabled: Some(false),
                    profile: Some(Some("passthrough".into())),
                    ..StreamPatch::default()
                },
            )
            .await
            .expect("update")
            .expect("found");
        assert!(!disabled.enabled);
        assert_eq!(disabled.profile.as_deref(), Some("passthrough"));
        assert_eq!(disabled.name, "s");
        // A disabled stream is still found by its key: the publish gate says why it refuses.
        assert_eq!(store.stream_by_key(&key).await.expect("lookup"), Some(disabled));
        let renamed = store
            .update_stream(
                &stream.id,
                StreamPatch {
                    name: Some("renamed".into()),
                    profile: Some(None),
                    enabled: Some(true),
                },
            )
            .await
            .expect("update")
            .expect("found");
        assert_eq!(
            (renamed.name.as_str(), renamed.profile.clone(), renamed.enabled),
            ("renamed", None, true)
        );
        assert_eq!(
            store
                .update_stream("stnope", StreamPatch::default())
                .await
                .expect("update"),
            None
        );
        let garbage = StreamPatch {
            name: Some(String::new()),
            ..StreamPatch::default()
        };
        assert!(matches!(
            store.update_stream(&stream.id, garbage).await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn rotation_retires_the_old_key_at_once() {
        let (dir, store) = open().await;
        // The server holds its own connection pool, as in production.
        let server = open_at(dir.path()).await;
        let acme = app(&store, "acme").await;
        let (stream, old) = store.create_stream(&acme.id, new_stream("s")).await.expect("create");
        assert!(server.stream_by_key(&old).await.expect("lookup").is_some());
        let (rotated, new) = store
            .rotate_stream_key(&stream.id)
            .await
            .expect("rotate")
            .expect("found");
        assert_ne!(old, new);
        assert_ne!(rotated.key_prefix, stream.key_prefix);
        assert_eq!(rotated.app_id, acme.id);
        assert!(new.starts_with(&rotated.key_prefix[..rotated.key_prefix.len() - '…'.len_utf8()]));
        assert_eq!(server.stream_by_key(&old).await.expect("lookup"), None);
        assert_eq!(server.stream_by_key(&new).await.expect("lookup"), Some(rotated.clone()));
        assert_eq!(server.stream(&stream.id).await.expect("by id"), Some(rotated));
        assert_eq!(store.rotate_stream_key("stnope").await.expect("rotate"), None);
    }

    #[tokio::test]
    async fn delete_removes_the_stream_and_its_key() {
        let (_dir, store) = open().await;
        let (stream, key) = store
            .create_stream(DEFAULT_APP_ID, new_stream("s"))
            .await
            .expect("create");
        assert!(store.delete_stream(&stream.id).await.expect("delete"));
        assert!(!store.delete_stream(&stream.id).await.expect("delete again"));
        assert_eq!(store.stream(&stream.id).await.expect("by id"), None);
        assert_eq!(store.stream_by_key(&key).await.expect("lookup"), None);
        assert_eq!(store.count_streams().await.expect("count"), 0);
    }
}
