//! Ids for streams the operator's control plane does not name. The id is in
//! every playback URL, so it must not let anyone test guesses of the stream
//! key offline: it is an HMAC under a secret of this installation, not a
//! plain hash of app and key.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};

/// File in `data_dir` holding the key, 64 hex characters, mode 0600.
pub const STREAM_ID_KEY_FILE: &str = "stream-id.key";
/// Prefix of derived ids; the legacy (unkeyed) ones had 16 hex characters
/// after it, keyed ones have 24, so the two never collide.
const PREFIX: &str = "ext_";
const LEGACY_BYTES: usize = 8;
const KEYED_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} does not hold 32 bytes as 64 hex characters")]
    Format { path: String },
}

#[derive(Clone)]
pub struct StreamIdKey {
    key: Arc<SecretBox<[u8; 32]>>,
    /// Unkeyed ids this installation already gave out (from before keyed
    /// ids): a reconnecting encoder keeps its stream, playback URLs stay.
    legacy: Arc<HashSet<String>>,
}

impl std::fmt::Debug for StreamIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIdKey")
            .field("legacy_ids", &self.legacy.len())
            .finish_non_exhaustive()
    }
}

impl StreamIdKey {
    pub fn new(key: [u8; 32], legacy: HashSet<String>) -> Self {
        Self {
            key: Arc::new(SecretBox::new(Box::new(key))),
            legacy: Arc::new(legacy),
        }
    }

    /// A key of this process only (tests, and callers with no data dir).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
        Self::new(key, HashSet::new())
    }

    /// Reads the installation's key from `data_dir`, creating it (mode
    /// 0600) on first start. Creation is exclusive, so two processes
    /// starting together agree on one key.
    pub fn load_or_create(data_dir: &Path, legacy: HashSet<String>) -> Result<Self, KeyFileError> {
        let path = data_dir.join(STREAM_ID_KEY_FILE);
        let key = super::read_or_create_key_file(&path)
            .map_err(|source| KeyFileError::Io {
                path: path.display().to_string(),
                source,
            })?
            .ok_or_else(|| KeyFileError::Format {
                path: path.display().to_string(),
            })?;
        Ok(Self::new(key, legacy))
    }

    /// The stream id for `key` in `app`: stable across reconnects and
    /// restarts, different on every installation.
    pub fn derive(&self, app: &str, key: &str) -> String {
        let legacy = legacy_stream_id(app, key);
        if self.legacy.contains(&legacy) {
            return legacy;
        }
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => return legacy,
        };
        mac.update(app.as_bytes());
        mac.update(b"/");
        mac.update(key.as_bytes());
        format!("{PREFIX}{}", hex::encode(&mac.finalize().into_bytes()[..KEYED_BYTES]))
    }

    /// Whether `id` has the shape of an unkeyed id of an older version.
    pub fn is_legacy_shape(id: &str) -> bool {
        id.strip_prefix(PREFIX)
            .is_some_and(|hex| hex.len() == LEGACY_BYTES * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// What versions before keyed ids derived: the start of SHA-256(app/key).
fn legacy_stream_id(app: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(app.as_bytes())
        .chain_update(b"/")
        .chain_update(key.as_bytes())
        .finalize();
    format!("{PREFIX}{}", hex::encode(&digest[..LEGACY_BYTES]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_keyed_stable_and_differ_between_installations() {
        let a = StreamIdKey::random();
        let b = StreamIdKey::random();
        let id = a.derive("live", "weak-key");
        assert_eq!(id, a.derive("live", "weak-key"));
        assert_ne!(id, a.derive("live", "weak-key2"));
        assert_ne!(id, a.derive("other", "weak-key"));
        assert_ne!(id, b.derive("live", "weak-key"));
        // Not the old unkeyed form, which anyone can recompute from a guess:
        // printf 'live/weak-key' | sha256sum | cut -c1-16
        assert_ne!(id, "ext_56ede05bcbf1ba31");
        assert_eq!(legacy_stream_id("live", "weak-key"), "ext_56ede05bcbf1ba31");
        assert!(id.starts_with("ext_") && id.len() == 4 + 24, "{id}");
        assert!(crate::control::gate::is_valid_stream_id(&id));
    }

    #[test]
    fn streams_an_older_version_named_keep_their_id() {
        let old = legacy_stream_id("live", "cam-1");
        assert!(StreamIdKey::is_legacy_shape(&old));
        let ids = StreamIdKey::new([7; 32], HashSet::from([old.clone()]));
        assert_eq!(ids.derive("live", "cam-1"), old);
        assert_ne!(ids.derive("live", "cam-2"), legacy_stream_id("live", "cam-2"));
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StreamIdKey::load_or_create(dir.path(), HashSet::new()).expect("created");
        let again = StreamIdKey::load_or_create(dir.path(), HashSet::new()).expect("read");
        assert_eq!(first.derive("live", "k"), again.derive("live", "k"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(STREAM_ID_KEY_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().expect("tempdir");
        let elsewhere = StreamIdKey::load_or_create(other.path(), HashSet::new()).expect("created");
        assert_ne!(first.derive("live", "k"), elsewhere.derive("live", "k"));
    }
}
