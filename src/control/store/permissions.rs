//! File modes of the data dir. The database holds webhook signing secrets
//! and HS256 playback secrets in clear, and the key files sign tokens and
//! key stream ids: other local users must not read them. New files are
//! created private; ones an older version (or a loose umask) left readable
//! are tightened at start, with a warning so the operator can check who
//! read them meanwhile.

use std::io;
use std::path::{Path, PathBuf};

/// The dir itself: only the server's user may list or enter it.
pub const DIR_MODE: u32 = 0o700;
/// The database, its WAL and shared-memory files, and key files.
pub const FILE_MODE: u32 = 0o600;

/// Files of `data_dir` that hold secrets, besides the database's own.
const KEY_FILES: [&str; 2] = ["playback-signing.key", crate::control::keys::STREAM_ID_KEY_FILE];

#[derive(Debug, thiserror::Error)]
#[error("securing {path}: {source}")]
pub struct PermissionError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Creates `data_dir` (mode 0700) or tightens it, and tightens the key
/// files in it. The database files are the store's to tighten when it opens.
pub fn secure_data_dir(data_dir: &Path) -> Result<(), PermissionError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PermissionError { path, source }
    };
    if !data_dir.exists() {
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed(parent))?;
        }
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
        match builder.create(data_dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(failed(data_dir)(e)),
            _ => {}
        }
    }
    tighten(data_dir, DIR_MODE).map_err(failed(data_dir))?;
    for name in KEY_FILES {
        let path = data_dir.join(name);
        tighten(&path, FILE_MODE).map_err(failed(&path))?;
    }
    Ok(())
}

/// The database and the files SQLite keeps beside it.
pub fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Creates an empty database file with mode 0600 if there is none, so
/// SQLite never creates it under the umask; SQLite gives the WAL and
/// shared-memory files the database file's mode.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes group and other bits from `path`, if it exists and has any.
#[cfg(unix)]
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if current & !mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{current:o}"),
        now = format!("{mode:o}"),
        "file mode was too open (it holds secrets); tightened"
    );
    Ok(())
}

#[cfg(not(unix))]
pub fn tighten(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/data");
        secure_data_dir(&dir).expect("secured");
        assert_eq!(mode(&dir), DIR_MODE);
    }

    #[test]
    fn an_open_data_dir_and_its_key_files_are_tightened() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let key = dir.join("playback-signing.key");
        std::fs::write(&key, "00").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let media = dir.join("media");
        std::fs::create_dir(&media).expect("mkdir");
        std::fs::set_permissions(&media, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        secure_data_dir(&dir).expect("secured");
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&key), FILE_MODE);
        // Media is served to anyone anyway: left as it was.
        assert_eq!(mode(&media), 0o755);
    }

    #[test]
    fn stricter_modes_are_left_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("f");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        tighten(&file, FILE_MODE).expect("tighten");
        assert_eq!(mode(&file), 0o400);
    }
}
