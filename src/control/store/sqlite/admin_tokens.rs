//! Admin API bearer tokens, stored as SHA-256 hashes.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{is_unique_violation, unix_now, SqliteStore};
use crate::control::keys;
use crate::control::model::{AdminToken, NewAdminToken};
use crate::control::store::{validate, StoreError};

const COLUMNS: &str = "id, name, app_id, prefix, created_at, revoked";

impl SqliteStore {
    pub(super) async fn insert_admin_token(&self, new: NewAdminToken) -> Result<(AdminToken, String), StoreError> {
        validate::admin_token_name(&new.name)?;
        let secret = keys::new_admin_token_secret();
        let token = AdminToken {
            id: keys::new_admin_token_id(),
            name: new.name,
            app_id: new.app_id,
            prefix: keys::redact_admin_token(&secret),
            created_at: unix_now(),
            revoked: false,
        };
        let hash = keys::hash_secret(&secret);
        let done = match &token.app_id {
            // Scoped: inserted only if the app exists, in the same statement.
            Some(app_id) => sqlx::query(
                "INSERT INTO admin_tokens (id, name, app_id, token_hash, prefix, created_at, revoked) \
                 SELECT ?, ?, id, ?, ?, ?, ? FROM apps WHERE id = ?",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(&hash)
            .bind(&token.prefix)
            .bind(token.created_at)
            .bind(token.revoked)
            .bind(app_id),
            None => sqlx::query(
                "INSERT INTO admin_tokens (id, name, app_id, token_hash, prefix, created_at, revoked) \
                 VALUES (?, ?, NULL, ?, ?, ?, ?)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(&hash)
            .bind(&token.prefix)
            .bind(token.created_at)
            .bind(token.revoked),
        }
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("admin token id collision, try again".into())
            } else {
                e.into()
            }
        })?;
        if done.rows_affected() == 0 {
            let app_id = token.app_id.as_deref().unwrap_or_default();
            return Err(StoreError::NotFound(format!("no app with id {app_id:?}")));
        }
        Ok((token, secret))
    }

    pub(super) async fn live_admin_token(&self, secret: &str) -> Result<Option<AdminToken>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM admin_tokens WHERE token_hash = ? AND revoked = ?"
        ))
        .bind(keys::hash_secret(secret))
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    pub(super) async fn admin_tokens_of(&self, app_id: Option<&str>) -> Result<Vec<AdminToken>, StoreError> {
        let rows = match app_id {
            Some(app_id) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM admin_tokens WHERE app_id = ? ORDER BY created_at, id"
                ))
                .bind(app_id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM admin_tokens ORDER BY created_at, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    /// True when the token exists (revoking twice is not an error). Revoked
    /// tokens stay listed, so the audit log's actor ids still resolve.
    pub(super) async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE admin_tokens SET revoked = ? WHERE id = ?")
            .bind(true)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn token_from_row(row: &SqliteRow) -> Result<AdminToken, StoreError> {
    Ok(AdminToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        app_id: row.try_get("app_id")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked: row.try_get("revoked")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{grep_db_files, open};
    use crate::control::keys::ADMIN_TOKEN_PREFIX;
    use crate::control::model::*;
    use crate::control::store::{ControlStore, StoreError};

    fn global(name: &str) -> NewAdminToken {
        NewAdminToken {
            name: name.into(),
            app_id: None,
        }
    }

    #[tokio::test]
    async fn a_token_is_found_by_its_secret_until_revoked() {
        let (_dir, store) = open().await;
        let (token, secret) = store.create_admin_token(global("ops")).await.expect("create");
        assert!(token.id.starts_with("at_"));
        assert!(secret.starts_with(ADMIN_TOKEN_PREFIX));
        assert!(secret.len() >= ADMIN_TOKEN_PREFIX.len() + 32, "at least 128 bits");
        assert_eq!(token.prefix, format!("{}…", &secret[..ADMIN_TOKEN_PREFIX.len() + 4]));
        assert_eq!((token.app_id.clone(), token.revoked), (None, false));
        assert_eq!(
            store.admin_token_by_secret(&secret).await.expect("lookup"),
            Some(token.clone())
        );
        assert_eq!(
            store.admin_token_by_secret("pe_admin_wrong").await.expect("lookup"),
            None
        );
        assert_eq!(store.admin_token_by_secret("").await.expect("lookup"), None);

        assert!(store.revoke_admin_token(&token.id).await.expect("revoke"));
        assert!(store.revoke_admin_token(&token.id).await.expect("revoke twice"));
        assert!(!store.revoke_admin_token("at_nope").await.expect("revoke unknown"));
        assert_eq!(store.admin_token_by_secret(&secret).await.expect("lookup"), None);
        let listed = store.list_admin_tokens(None).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked, "revoked tokens stay listed");
    }

    #[tokio::test]
    async fn scoped_tokens_need_their_app_and_list_by_it() {
        let (_dir, store) = open().await;
        assert!(matches!(
            store
                .create_admin_token(NewAdminToken {
                    name: "x".into(),
                    app_id: Some("app_nope".into()),
                })
                .await,
            Err(StoreError::NotFound(_))
        ));
        let (scoped, _) = store
            .create_admin_token(NewAdminToken {
                name: "tenant".into(),
                app_id: Some(DEFAULT_APP_ID.into()),
            })
            .await
            .expect("scoped");
        let (root, _) = store.create_admin_token(global("root")).await.expect("global");
        assert_eq!(scoped.app_id.as_deref(), Some(DEFAULT_APP_ID));
        assert_eq!(
            store.list_admin_tokens(Some(DEFAULT_APP_ID)).await.expect("list"),
            vec![scoped.clone()]
        );
        let all = store.list_admin_tokens(None).await.expect("list");
        assert_eq!(all.len(), 2);
        assert!(all.contains(&scoped) && all.contains(&root));
        for bad in ["", "\u{1b}[31m"] {
            assert!(matches!(
                store.create_admin_token(global(bad)).await,
                Err(StoreError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn secrets_are_not_stored_in_clear() {
        let (dir, store) = open().await;
        let (_, secret) = store.create_admin_token(global("ops")).await.expect("create");
        let (_, key) = store
            .create_stream(
                DEFAULT_APP_ID,
                NewStream {
                    name: "s".into(),
                    profile: None,
                },
            )
            .await
            .expect("stream");
        let listed = serde_json::to_string(&store.list_admin_tokens(None).await.expect("list")).expect("json");
        assert!(!listed.contains(&secret));
        store.close().await;
        assert!(
            !grep_db_files(dir.path(), secret.as_bytes()).await,
            "admin token in the database files"
        );
        assert!(
            !grep_db_files(dir.path(), key.as_bytes()).await,
            "stream key in the database files"
        );
        // The search itself works: the hashes are there.
        let hash = crate::control::keys::hash_secret(&secret);
        assert!(
            grep_db_files(dir.path(), hash.as_bytes()).await,
            "admin token hash not found"
        );
        let hash = crate::control::keys::hash_stream_key(&key);
        assert!(
            grep_db_files(dir.path(), hash.as_bytes()).await,
            "stream key hash not found"
        );
    }
}
