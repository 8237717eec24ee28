//! Peers a test needs: fail loudly, naming the package, never skip.

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
