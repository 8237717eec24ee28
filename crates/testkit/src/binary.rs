//! The `moat` binary under test, and running it to completion.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::dir::workspace_root;

/// The `moat` binary under test: `$MOAT_BIN` when set (scripts/test builds
/// it once and sets it), otherwise built here with cargo so that a test can
/// never run a stale binary.
pub fn moat_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("MOAT_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "MOAT_BIN={} does not exist", p.display());
            return p;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "moat", "--bin", "moat"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p moat failed");
        // tests run from target/<profile>/deps/; the binary is in target/<profile>/.
        let exe = std::env::current_exe().expect("current exe");
        let bin = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("moat"))
            .expect("target dir");
        assert!(bin.is_file(), "moat binary not found at {}", bin.display());
        bin
    })
    .clone()
}

/// The result of a moat command that ran to completion.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `moat <args>` to completion (bounded to 30 s).
pub fn moat_cmd(args: &[&str]) -> Finished {
    let mut child = Command::new(moat_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("moat {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `yaml` to `dir/<name>` and runs `moat check` on it.
pub fn moat_check(dir: &Path, name: &str, yaml: &str) -> Finished {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write config");
    moat_cmd(&["check", "--config", path.to_str().expect("utf-8 path")])
}
