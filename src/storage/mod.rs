//! Where finished media objects go: the edge's own data dir (`fs`, the
//! embedded default) or an S3-compatible bucket (`s3`: AWS S3, Cloudflare R2,
//! MinIO…). Packaging writes through [`ObjectStore`] and never learns which
//! backend it has.

mod fs;
mod s3;
mod stores;

pub use fs::FsStore;
pub use s3::{S3Settings, S3Store};
pub use stores::Stores;

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
    /// A remote store refused or could not be reached. `location` names the
    /// bucket and endpoint, so an operator knows which of several it was.
    #[error("{op} {key:?} on {location}: {message}")]
    Remote {
        op: &'static str,
        key: String,
        location: String,
        /// Worth trying again (5xx, throttling, timeouts, connection errors).
        retryable: bool,
        message: String,
    },
}

impl StorageError {
    /// True when the same request may succeed later; a refusal (bad
    /// credentials, missing bucket, a bad key) will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Remote { retryable: true, .. })
    }
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
    /// Reads an object back (the edge serving media it no longer holds, recordings).
    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>>;
    /// Where the objects go, for logs and errors ("s3://bucket/prefix at endpoint").
    fn describe(&self) -> String;
    /// Whether LL-HLS parts are stored as objects of their own. A bucket
    /// behind a CDN needs them (players fetch parts there); the edge's own
    /// disk does not, as the edge serves parts from memory or cuts them out
    /// of their stored parent segment.
    fn stores_parts(&self) -> bool {
        false
    }
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
