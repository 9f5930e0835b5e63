//! The server's store and the apps' own: an app may name its own bucket and
//! key prefix, reached with the server's S3 endpoint and credentials.

use std::path::PathBuf;
use std::sync::Arc;

use super::{FsStore, ObjectStore, S3Store};

#[derive(Clone)]
pub struct Stores {
    default: Arc<dyn ObjectStore>,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Fs(PathBuf),
    S3 { base: S3Store, prefix: String },
}

impl Stores {
    pub fn fs(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            default: Arc::new(FsStore::new(root.clone())),
            backend: Backend::Fs(root),
        }
    }

    /// `store` is the server's bucket; `prefix` its default key prefix.
    pub fn s3(store: S3Store, prefix: &str) -> Self {
        Self {
            default: Arc::new(store.clone()),
            backend: Backend::S3 {
                base: store,
                prefix: prefix.to_string(),
            },
        }
    }

    pub fn default_store(&self) -> Arc<dyn ObjectStore> {
        self.default.clone()
    }

    /// The store for an app's overrides; `None` when it has none (the server's).
    /// On the file-system backend a bucket means nothing; a prefix is a sub-directory.
    pub fn for_app(&self, bucket: Option<&str>, prefix: Option<&str>) -> Option<Arc<dyn ObjectStore>> {
        if bucket.is_none() && prefix.is_none() {
            return None;
        }
        match &self.backend {
            Backend::S3 { base, prefix: default } => {
                let store = base.with_target(bucket.unwrap_or_else(|| base.bucket()), prefix.unwrap_or(default));
                Some(Arc::new(store))
            }
            Backend::Fs(root) => {
                if let Some(bucket) = bucket {
                    tracing::warn!(
                        bucket,
                        "an app names a bucket but the server stores media on its own disk; ignored"
                    );
                }
                let prefix = prefix?.trim_matches('/');
                if prefix.is_empty() || super::validate_key(prefix).is_err() {
                    return None;
                }
                Some(Arc::new(FsStore::new(root.join(prefix))))
            }
        }
    }
}
