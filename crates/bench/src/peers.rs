//! Finding the peer programs (nginx, HAProxy, stunnel, Mosquitto) and naming
//! the Debian packages to install when one is missing. The harness never
//! installs anything itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// nginx's stream module, which Debian ships apart.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The first of `names` found on the PATH or in the usual sbin directories.
pub fn find(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// One thing a peer needs: a command (or a file) and its Debian package.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// Command names to look for, or an absolute file path.
    pub names: &'static [&'static str],
    /// The Debian package that provides it.
    pub package: &'static str,
}

impl Need {
    fn present(&self) -> bool {
        self.names.iter().any(|n| {
            if n.starts_with('/') {
                Path::new(n).is_file()
            } else {
                find(&[n]).is_some()
            }
        })
    }
}

/// Fails, naming every missing Debian package, unless all of `needs` are
/// installed.
pub fn require(needs: &[Need]) -> Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| !n.present())
        .map(|n| n.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "missing benchmark peers: install them with `apt-get install -y {}` (moat-bench never installs anything itself)",
        missing.join(" ")
    )
}

/// Mosquitto, the backend of the reconnect storm.
pub const MOSQUITTO: Need = Need {
    names: &["mosquitto"],
    package: "mosquitto",
};
