//! Apps' playback signing keys.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{corrupt, is_unique_violation, unix_now, SqliteStore, SEQ_ATTEMPTS};
use crate::control::keys;
use crate::control::model::{KeyAlgorithm, NewPlaybackKey, PlaybackKey, VerificationKey};
use crate::control::store::StoreError;

impl SqliteStore {
    pub(super) async fn insert_playback_key(
        &self,
        app_id: &str,
        new: NewPlaybackKey,
    ) -> Result<(PlaybackKey, Option<String>), StoreError> {
        let public_key_pem = keys::check_public_key_pem(new.algorithm, new.public_key_pem.as_deref())
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let secret = (new.algorithm == KeyAlgorithm::HS256).then(keys::new_hs256_secret);
        let key = PlaybackKey {
            kid: keys::new_playback_kid(),
            app_id: app_id.to_owned(),
            algorithm: new.algorithm,
            public_key_pem,
            created_at: unix_now(),
        };
        for attempt in 1..=SEQ_ATTEMPTS {
            let inserted = sqlx::query(
                "INSERT INTO playback_keys (kid, app_id, algorithm, secret, public_key_pem, created_at, seq) \
                 SELECT ?, id, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM playback_keys) \
                 FROM apps WHERE id = ?",
            )
            .bind(&key.kid)
            .bind(key.algorithm.as_str())
            .bind(&secret)
            .bind(&key.public_key_pem)
            .bind(key.created_at)
            .bind(app_id)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(done) if done.rows_affected() == 0 => {
                    return Err(StoreError::NotFound(format!("no app with id {app_id:?}")))
                }
                Ok(_) => return Ok((key, secret)),
                Err(e) if is_unique_violation(&e) && attempt < SEQ_ATTEMPTS => continue,
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict("playback key id collision, try again".into()))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("playback key id collision, try again".into()))
    }

    pub(super) async fn playback_keys_of(&self, app_id: &str) -> Result<Vec<PlaybackKey>, StoreError> {
        sqlx::query(
            "SELECT kid, app_id, algorithm, public_key_pem, created_at FROM playback_keys \
             WHERE app_id = ? ORDER BY seq",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(PlaybackKey {
                kid: row.try_get("kid")?,
                app_id: row.try_get("app_id")?,
                algorithm: algorithm(row)?,
                public_key_pem: row.try_get("public_key_pem")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
    }

    pub(super) async fn remove_playback_key(&self, app_id: &str, kid: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM playback_keys WHERE app_id = ? AND kid = ?")
            .bind(app_id)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Oldest first, so that the last HS256 key of an app is its newest.
    /// A row without its material is skipped: one bad row must not take
    /// every app's playback down.
    pub(super) async fn all_verification_keys(&self) -> Result<Vec<VerificationKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, app_id, algorithm, secret, public_key_pem, created_at FROM playback_keys ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let kid: String = row.try_get("kid")?;
            let Ok(algorithm) = algorithm(row) else {
                tracing::warn!(kid, "playback key with an unknown algorithm, skipped");
                continue;
            };
            let material: Option<String> = match algorithm {
                KeyAlgorithm::HS256 => row.try_get("secret")?,
                KeyAlgorithm::RS256 | KeyAlgorithm::ES256 => row.try_get("public_key_pem")?,
            };
            let Some(material) = material else {
                tracing::warn!(kid, "playback key without its material, skipped");
                continue;
            };
            keys.push(VerificationKey {
                kid,
                app_id: row.try_get("app_id")?,
                algorithm,
                material: material.into_bytes(),
                created_at: row.try_get("created_at")?,
            });
        }
        Ok(keys)
    }
}

fn algorithm(row: &SqliteRow) -> Result<KeyAlgorithm, StoreError> {
    let name: String = row.try_get("algorithm")?;
    KeyAlgorithm::parse(&name).ok_or_else(|| corrupt("playback key algorithm"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::tests::{open, open_at};
    use crate::control::model::*;
    use crate::control::store::{ControlStore, StoreError};

    fn hs256() -> NewPlaybackKey {
        NewPlaybackKey {
            algorithm: KeyAlgorithm::HS256,
            public_key_pem: None,
        }
    }

    fn public_pem(genpkey_args: &[&str]) -> (String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("k.pem");
        let private_s = private.to_str().expect("utf-8");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey_args);
        args.extend(["-out", private_s]);
        let out = Command::new("openssl").args(&args).output().expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new("openssl")
            .args(["pkey", "-in", private_s, "-pubout"])
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            std::fs::read_to_string(&private).expect("private"),
            String::from_utf8(out.stdout).expect("utf-8"),
        )
    }

    #[tokio::test]
    async fn hs256_keys_are_generated_and_shown_once() {
        let (_dir, store) = open().await;
        let (key, secret) = store
            .create_playback_key(DEFAULT_APP_ID, hs256())
            .await
            .expect("create");
        let secret = secret.expect("HS256 secret returned");
        assert_eq!(hex::decode(&secret).expect("hex").len(), 32);
        assert!(key.kid.starts_with("pk_"));
        assert_eq!((key.algorithm, key.public_key_pem.clone()), (KeyAlgorithm::HS256, None));
        assert_eq!(
            store.list_playback_keys(DEFAULT_APP_ID).await.expect("list"),
            vec![key.clone()]
        );
        let listed = format!("{:?}", store.list_playback_keys(DEFAULT_APP_ID).await.expect("list"));
        assert!(!listed.contains(&secret));
        let verification = store.verification_keys().await.expect("keys");
        assert_eq!(verification.len(), 1);
        assert_eq!(verification[0].kid, key.kid);
        assert_eq!(
            verification[0].material,
            secret.as_bytes(),
            "the secret text is the HMAC key"
        );
        assert!(!format!("{verification:?}").contains(&secret));

        let (second, second_secret) = store
            .create_playback_key(DEFAULT_APP_ID, hs256())
            .await
            .expect("create");
        assert_ne!(second.kid, key.kid);
        assert_ne!(second_secret.as_deref(), Some(secret.as_str()));
        let kids: Vec<_> = store
            .verification_keys()
            .await
            .expect("keys")
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, vec![key.kid, second.kid], "oldest first, even within one second");
    }

    #[tokio::test]
    async fn public_keys_are_validated_and_kept_as_pem() {
        let (_dir, store) = open().await;
        let (rsa_private, rsa_public) = public_pem(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        let (_, ec_public) = public_pem(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        let (rs, none) = store
            .create_playback_key(
                DEFAULT_APP_ID,
                NewPlaybackKey {
                    algorithm: KeyAlgorithm::RS256,
                    public_key_pem: Some(rsa_public.clone()),
                },
            )
            .await
            .expect("rsa");
        assert_eq!(none, None, "nothing secret to return");
        assert_eq!(rs.public_key_pem.as_deref(), Some(rsa_public.trim()));
        let (es, _) = store
            .create_playback_key(
                DEFAULT_APP_ID,
                NewPlaybackKey {
                    algorithm: KeyAlgorithm::ES256,
                    public_key_pem: Some(ec_public.clone()),
                },
            )
            .await
            .expect("ec");
        let verification = store.verification_keys().await.expect("keys");
        assert_eq!(verification[0].material, rsa_public.trim().as_bytes());
        assert_eq!(verification[1].material, ec_public.trim().as_bytes());
        assert_eq!(
            store.list_playback_keys(DEFAULT_APP_ID).await.expect("list"),
            vec![rs, es]
        );

        let refused = [
            (KeyAlgorithm::RS256, Some(rsa_private)),
            (KeyAlgorithm::RS256, Some("garbage".to_owned())),
            (KeyAlgorithm::RS256, None),
            (KeyAlgorithm::ES256, Some(rsa_public.clone())),
            (KeyAlgorithm::HS256, Some(rsa_public)),
        ];
        for (algorithm, public_key_pem) in refused {
            let result = store
                .create_playback_key(
                    DEFAULT_APP_ID,
                    NewPlaybackKey {
                        algorithm,
                        public_key_pem,
                    },
                )
                .await;
            assert!(
                matches!(result, Err(StoreError::Invalid(_))),
                "{algorithm:?}: {result:?}"
            );
        }
        assert_eq!(store.list_playback_keys(DEFAULT_APP_ID).await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn keys_belong_to_one_existing_app() {
        let (_dir, store) = open().await;
        assert!(matches!(
            store.create_playback_key("app_nope", hs256()).await,
            Err(StoreError::NotFound(_))
        ));
        let other = store
            .create_app(NewApp {
                name: "other".into(),
                ..NewApp::default()
            })
            .await
            .expect("app");
        let (key, _) = store
            .create_playback_key(DEFAULT_APP_ID, hs256())
            .await
            .expect("create");
        assert!(store.list_playback_keys(&other.id).await.expect("list").is_empty());
        assert!(
            !store.delete_playback_key(&other.id, &key.kid).await.expect("delete"),
            "another app cannot delete it"
        );
        assert!(store
            .delete_playback_key(DEFAULT_APP_ID, &key.kid)
            .await
            .expect("delete"));
        assert!(!store
            .delete_playback_key(DEFAULT_APP_ID, &key.kid)
            .await
            .expect("delete again"));
        assert!(store.verification_keys().await.expect("keys").is_empty());
    }

    #[tokio::test]
    async fn keys_survive_a_restart() {
        let (dir, store) = open().await;
        let (key, secret) = store
            .create_playback_key(DEFAULT_APP_ID, hs256())
            .await
            .expect("create");
        store.close().await;
        let reopened = open_at(dir.path()).await;
        let keys = reopened.verification_keys().await.expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, key.kid);
        assert_eq!(Some(keys[0].material.clone()), secret.map(String::into_bytes));
    }
}
