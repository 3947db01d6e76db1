//! Writing files so that a crash or an error never leaves a half-written one behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under before being renamed into place: hidden, unique
/// to the process, and ending in `path`'s own extension, so writers that pick a format from the
/// extension (image encoders) write the right one.
pub fn temp_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let pid = std::process::id();
    match path.extension() {
        Some(ext) => path.with_file_name(format!(".{stem}.{pid}.tmp.{}", ext.to_string_lossy())),
        None => path.with_file_name(format!(".{stem}.{pid}.tmp")),
    }
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder, synced, then
/// renamed over `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })
}

/// Like [`write_atomic`], but `write` produces the temporary file itself (for writers that
/// want a path, such as image encoders).
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<std::io::Error>,
{
    let tmp = temp_path(path);
    match write(&tmp) {
        Ok(()) => fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            E::from(e)
        }),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates `dir` (and parents) and checks that a file can be written in it, so a job fails
/// before training rather than after.
pub fn ensure_writable_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".strata-write-test.{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        let err: std::io::Result<()> = write_atomic_with(&path, |tmp| {
            fs::write(tmp, b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_name_keeps_the_extension() {
        let tmp = temp_path(Path::new("/a/curves.png"));
        assert_eq!(tmp.parent(), Some(Path::new("/a")));
        assert_eq!(tmp.extension().unwrap(), "png");
        assert!(
            tmp.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".curves.")
        );
    }

    #[test]
    fn unwritable_dir_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(ensure_writable_dir(&file.join("sub")).is_err());
    }
}
