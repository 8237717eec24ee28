//! Files: the disk cache of last good responses (one file per leaf, named
//! by the SHA-256 of the leaf's DER, written atomically), and bounded reads
//! of cache and static staple files. Blocking; [`in_background`] runs them
//! off the async runtime's worker threads.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;

/// OCSP responses are a few kilobytes; anything far larger is not one.
pub(crate) const MAX_RESPONSE_SIZE: u64 = 1 << 20;

/// Runs blocking file work on `path` on Tokio's blocking pool.
pub async fn in_background<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = path.to_path_buf();
    match tokio::task::spawn_blocking(move || work(&path)).await {
        Ok(result) => result,
        Err(e) => Err(io::Error::other(format!("file task failed: {e}"))),
    }
}

/// The cache file of a leaf: `<dir>/<sha256 of the leaf DER>.ocsp`.
pub fn cache_path(dir: &Path, leaf_der: &[u8]) -> PathBuf {
    let hash = digest::digest(&digest::SHA256, leaf_der);
    let name: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.ocsp"))
}

/// Reads a whole file of at most [`MAX_RESPONSE_SIZE`] bytes.
pub(crate) fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_RESPONSE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RESPONSE_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_RESPONSE_SIZE} bytes, not an OCSP response"),
        ));
    }
    Ok(bytes)
}

/// Reads a cache file; a missing file is `Ok(None)`.
pub fn read_cached(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match read_capped(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// directory is written, flushed to disk and renamed over it, then the
/// directory is flushed. Readers see the old or the new file, never a mix.
/// The directory is created if needed. On failure the temporary file is
/// removed and the old file is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::options().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_keyed_by_leaf_hash() {
        let p = cache_path(Path::new("/c"), b"leaf");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 64 + 5);
        assert!(name.ends_with(".ocsp"));
        assert_ne!(p, cache_path(Path::new("/c"), b"other leaf"));
    }

    #[test]
    fn write_then_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(&dir.path().join("sub"), b"leaf");
        assert_eq!(read_cached(&path).unwrap(), None);
        write_atomic(&path, b"one").unwrap();
        assert_eq!(read_cached(&path).unwrap().unwrap(), b"one");
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_cached(&path).unwrap().unwrap(), b"two");
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_write_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ocsp");
        write_atomic(&path, b"old").unwrap();
        // A directory where the file should go makes the rename fail.
        let blocked = dir.path().join("blocked.ocsp");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"k").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let temps = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temps, 0);
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![0u8; (MAX_RESPONSE_SIZE + 1) as usize]).unwrap();
        assert_eq!(
            read_capped(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
