//! moat configuration YAML for tests: listener entries and whole files.

use crate::pki::CertFiles;

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
