//! Helpers shared by the store's tests, and the tests of the database as a
//! whole: migrations of old files, several processes on one file.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::SqliteStore;
use crate::control::keys;
use crate::control::model::*;
use crate::control::store::ControlStore;

const DB_FILE: &str = "t.db";

pub async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_at(dir.path()).await;
    (dir, store)
}

pub async fn open_at(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join(DB_FILE)).await.expect("open store")
}

/// Whether `needle` occurs in any file of `dir` (database, WAL, shm). Call
/// after closing the store. A pool closes its connections side by side, so
/// none of them may be the last and fold the WAL into the database; one
/// connection of our own is last for sure, and leaves a single file to read.
pub async fn grep_db_files(dir: &Path, needle: &[u8]) -> bool {
    let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join(DB_FILE).display()))
        .expect("options")
        .connect()
        .await
        .expect("connect");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .expect("checkpoint");
    conn.close().await.expect("close");
    std::fs::read_dir(dir).expect("dir").any(|entry| {
        let raw = std::fs::read(entry.expect("entry").path()).expect("read a database file");
        raw.windows(needle.len()).any(|w| w == needle)
    })
}

/// A database as issue 2's server left it: migration 0001 only, recorded
/// the way sqlx records it, with two streams whose keys predate app scopes.
async fn write_issue2_database(path: &Path) -> Vec<(String, String)> {
    let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("options")
        .create_if_missing(true)
        .connect()
        .await
        .expect("connect");
    let migration = sqlx::migrate!("src/control/migrations")
        .iter()
        .find(|m| m.version == 1)
        .cloned()
        .expect("migration 0001");
    sqlx::raw_sql(&migration.sql).execute(&mut conn).await.expect("0001");
    sqlx::query(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("migrations table");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?, ?, TRUE, ?, 1)",
    )
    .bind(migration.version)
    .bind(&*migration.description)
    .bind(&*migration.checksum)
    .execute(&mut conn)
    .await
    .expect("record 0001");
    let mut streams = Vec::new();
    for (i, name) in ["old-a", "old-b"].into_iter().enumerate() {
        let key = format!("live_{}", keys::random_hex(16));
        let id = format!("st{}", keys::random_hex(8));
        sqlx::query(
            "INSERT INTO streams (id, name, key_hash, key_prefix, profile, enabled, created_at) \
             VALUES (?, ?, ?, ?, NULL, TRUE, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(keys::hash_stream_key(&key))
        .bind(keys::redact_stream_key(&key))
        .bind(1_700_000_000 + i as i64)
        .execute(&mut conn)
        .await
        .expect("old stream");
        streams.push((id, key));
    }
    conn.close().await.expect("close");
    streams
}

#[tokio::test]
async fn an_issue2_database_migrates_into_the_default_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE);
    let old = write_issue2_database(&path).await;
    let store = SqliteStore::open(&path).await.expect("migrate");

    let default = store.app(DEFAULT_APP_ID).await.expect("query").expect("default app");
    assert_eq!(default.name, "default");
    assert_eq!(default.created_at, 1_700_000_000, "as old as its oldest stream");
    for (id, key) in &old {
        let stream = store
            .stream_by_key(key)
            .await
            .expect("lookup")
            .expect("old key still works");
        assert_eq!(&stream.id, id);
        assert_eq!(stream.app_id, DEFAULT_APP_ID);
        assert!(stream.enabled);
    }
    assert_eq!(store.list_streams(Some(DEFAULT_APP_ID)).await.expect("list").len(), 2);

    // The old streams live on like new ones: rotation scopes their key.
    let (rotated, new_key) = store
        .rotate_stream_key(&old[0].0)
        .await
        .expect("rotate")
        .expect("found");
    assert!(new_key.starts_with("live_default_"));
    assert_eq!(store.stream_by_key(&old[0].1).await.expect("lookup"), None);
    assert_eq!(store.stream_by_key(&new_key).await.expect("lookup"), Some(rotated));
    store.close().await;

    // Opening again applies nothing twice.
    let again = SqliteStore::open(&path).await.expect("reopen");
    assert!(again.stream_by_key(&old[1].1).await.expect("lookup").is_some());
    assert_eq!(again.list_apps().await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_second_process_sees_streams_created_by_the_first() {
    let (dir, server) = open().await;
    let cli = open_at(dir.path()).await;
    let (_, key) = cli
        .create_stream(
            DEFAULT_APP_ID,
            NewStream {
                name: "late".into(),
                profile: None,
            },
        )
        .await
        .expect("create");
    assert!(server.stream_by_key(&key).await.expect("lookup").is_some());
}

#[tokio::test]
async fn two_stores_opening_a_fresh_file_together_both_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE);
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.expect("first"), b.expect("second"));
    a.ping().await.expect("ping");
    assert_eq!(b.list_apps().await.expect("list").len(), 1);
}

#[tokio::test]
async fn nothing_secret_shows_in_debug_output() {
    let (_dir, store) = open().await;
    let (stream, key) = store
        .create_stream(
            DEFAULT_APP_ID,
            NewStream {
                name: "s".into(),
                profile: None,
            },
        )
        .await
        .expect("stream");
    let (token, secret) = store
        .create_admin_token(NewAdminToken {
            name: "t".into(),
            app_id: None,
        })
        .await
        .expect("token");
    let (playback, hs_secret) = store
        .create_playback_key(
            DEFAULT_APP_ID,
            NewPlaybackKey {
                algorithm: KeyAlgorithm::HS256,
                public_key_pem: None,
            },
        )
        .await
        .expect("key");
    let hs_secret = hs_secret.expect("secret");
    let debug = format!(
        "{store:?} {stream:?} {token:?} {playback:?} {:?}",
        store.verification_keys().await.expect("keys")
    );
    for secret in [&key[..], &secret[..], &hs_secret[..]] {
        assert!(!debug.contains(secret), "secret in Debug output");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_private_even_under_a_loose_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    let (dir, store) = open().await;
    store
        .create_stream(
            DEFAULT_APP_ID,
            NewStream {
                name: "s".into(),
                profile: None,
            },
        )
        .await
        .expect("a write, so the WAL exists");
    for file in crate::control::store::permissions::database_files(&dir.path().join(DB_FILE)) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store.close().await;
    // An older version's file, readable by everyone, is tightened on open.
    let db = dir.path().join(DB_FILE);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = open_at(dir.path()).await;
    assert_eq!(mode(&db), 0o600);
    store.close().await;
}

#[tokio::test]
async fn legacy_derived_stream_ids_are_read_from_stream_states() {
    let (_dir, store) = open().await;
    for id in [
        "ext_0123456789abcdef",
        "ext_0123456789abcdef0123abcd",
        "st1",
        "extx0123456789abcdef",
    ] {
        sqlx::query(
            "INSERT INTO stream_states (stream_id, app_id, state, session, last_sequence, updated_at) \
             VALUES (?, 'live', 'idle', NULL, 1, 0)",
        )
        .bind(id)
        .execute(&store.pool)
        .await
        .expect("insert");
    }
    assert_eq!(
        store.legacy_derived_stream_ids().await.expect("ids"),
        vec!["ext_0123456789abcdef".to_string()]
    );
}
