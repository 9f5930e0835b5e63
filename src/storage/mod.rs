//! Where finished media objects go: the edge's own data dir (`fs`) today,
//! S3/R2 later. Packaging writes through [`ObjectStore`] and never learns
//! which backend it has.

mod fs;

pub use fs::FsStore;

use bytes::Bytes;
use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// HTTP metadata stored with an object, so a bucket behind a CDN serves it
/// exactly as the edge would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `data` under `key` (a relative `/`-separated path), replacing any old object.
    fn put(&self, key: String, data: Bytes, meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Deletes the objects; keys that do not exist are not an error.
    fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Reads an object back (used by tests and by recordings).
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>>;
}

/// Rejects keys that could escape the store's root or that a bucket would
/// treat differently from a file system.
pub(crate) fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') || key.contains('\\') || key.contains('\0') {
        return bad("must be a relative path with '/' separators");
    }
    if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}
