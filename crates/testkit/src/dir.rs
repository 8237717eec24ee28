//! Scratch directories and the workspace's own files.

use std::path::{Path, PathBuf};

/// A scratch directory removed at the end of the test.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new empty directory.
    pub fn new() -> Self {
        Self(
            tempfile::Builder::new()
                .prefix("moat-e2e-")
                .tempdir()
                .expect("tempdir"),
        )
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes a file inside it and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    // This crate is crates/testkit.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}
