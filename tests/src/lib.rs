//! The end-to-end test harness: real processes, real peers, real PKI.
//!
//! Every test starts what it needs on 127.0.0.1 with free ports: a real
//! Mosquitto, the real `moat` binary, and real clients (`mosquitto_pub`,
//! `mosquitto_sub`, `openssl s_client`, sslyze), and an OCSP responder
//! whose answers `openssl ocsp` makes. Certificates are generated at test
//! time with rcgen or openssl; no private key is ever committed.
//!
//! A missing peer fails the test with the Debian package to install; it is
//! never skipped. `scripts/test` installs them all.

pub mod clients;
pub mod ocsp;
pub mod pki;
pub mod procs;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use clients::*;
pub use ocsp::*;
pub use pki::*;
pub use procs::*;

/// Fails the test unless `command` is on the PATH, naming the package that
/// provides it.
pub fn require(command: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(command).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "missing test peer: `{command}` is not installed. Install it with `apt-get install -y {package}` \
         (or `pip install {package}` for Python tools), or run scripts/test, which installs every peer."
    );
}

/// Fails the test unless it runs as root (CI does), saying why `why`
/// needs it.
pub fn require_root(why: &str) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test needs root ({why}); run the suite as root, as CI and scripts/test do"
    );
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(200),
    )
    .is_ok()
}

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
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

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

/// The YAML of one listener entry (to go under `listeners:`).
/// `tls_extra` lines are indented under `tls:`, `extra` under the listener.
pub fn listener_yaml(
    name: &str,
    port: u16,
    backend: u16,
    certs: &[&CertFiles],
    tls_extra: &str,
    extra: &str,
) -> String {
    let mut y = format!(
        "  - name: {name}\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:{backend}\n    tls:\n      certificates:\n"
    );
    for c in certs {
        y.push_str(&format!(
            "        - cert: {}\n          key: {}\n",
            c.cert.display(),
            c.key.display()
        ));
    }
    for line in tls_extra.lines().filter(|l| !l.trim().is_empty()) {
        y.push_str(&format!("      {line}\n"));
    }
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        y.push_str(&format!("    {line}\n"));
    }
    y
}

/// A whole configuration: an admin endpoint on `admin` (if any) and the
/// given listener entries.
pub fn config_yaml(admin: Option<u16>, listeners: &[String]) -> String {
    let mut y = String::from("log:\n  level: debug\n");
    if let Some(a) = admin {
        y.push_str(&format!("admin:\n  listen: 127.0.0.1:{a}\n"));
    }
    y.push_str("listeners:\n");
    for l in listeners {
        y.push_str(l);
    }
    y
}
