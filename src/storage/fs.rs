use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{validate_key, ObjectMeta, ObjectStore, StorageError};

/// Objects as files below a root directory. Writes go to a temporary name
/// first and are renamed into place, so a reader never sees half an object.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs blocking file-system work on tokio's blocking pool. One hop per
/// operation: a fan-in edge puts a thousand small objects a second, and
/// `tokio::fs` would spend a thread hand-off on every single syscall.
async fn blocking<T: Send + 'static>(
    path: &std::path::Path,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(StorageError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

fn put_file(path: &std::path::Path, data: &[u8]) -> Result<(), StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp-write");
    // No fsync: a reader of this edge sees the renamed file at once (page
    // cache), and the media window is worthless after a crash anyway.
    std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

impl ObjectStore for FsStore {
    fn put(&self, key: String, data: Bytes, _meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let path = self.path(&key)?;
            let work_path = path.clone();
            blocking(&path, move || put_file(&work_path, &data)).await
        })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let paths = keys.iter().map(|k| self.path(k)).collect::<Result<Vec<_>, _>>()?;
            let Some(first) = paths.first().cloned() else {
                return Ok(());
            };
            blocking(&first, move || {
                for path in paths {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                }
                Ok(())
            })
            .await
        })
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
        Box::pin(async move {
            let path = self.path(&key)?;
            match tokio::fs::read(&path).await {
                Ok(data) => Ok(Some(Bytes::from(data))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&path)(e)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: ObjectMeta = ObjectMeta {
        content_type: "video/mp4",
        cache_control: "max-age=60",
    };

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::new(dir.path());
        store
            .put("s/720p/1.mp4".into(), Bytes::from_static(b"abc"), META)
            .await
            .expect("put");
        assert_eq!(
            store.get("s/720p/1.mp4".into()).await.expect("get"),
            Some(Bytes::from_static(b"abc"))
        );
        store
            .delete(vec!["s/720p/1.mp4".into(), "s/720p/missing.mp4".into()])
            .await
            .expect("delete");
        assert_eq!(store.get("s/720p/1.mp4".into()).await.expect("get"), None);
    }

    #[tokio::test]
    async fn refuses_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStore::new(dir.path());
        for key in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            let err = store.put(key.into(), Bytes::new(), META).await;
            assert!(matches!(err, Err(StorageError::InvalidKey { .. })), "{key} accepted");
        }
    }
}
