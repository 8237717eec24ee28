//! A real ACME CA: Debian's `pebble`, with `pebble-challtestsrv` as the
//! DNS stub that resolves every name to 127.0.0.1, on free ports, its
//! HTTPS certificate from a test CA made here. Challenges are really
//! validated (`PEBBLE_VA_ALWAYS_VALID=0`): HTTP-01 against `http_port`,
//! TLS-ALPN-01 against `tls_port` (a moat listener's, to test it).

use std::path::PathBuf;
use std::process::Command;

use crate::dir::TestDir;
use crate::pki::{Ca, Issue};
use crate::ports::free_port;
use crate::procs::Daemon;
use crate::require::require;

/// A running pebble and its DNS stub.
pub struct Pebble {
    _chall: Daemon,
    /// The pebble process; drop it (see [`Pebble::stop`]) to take the CA down.
    pebble: Option<Daemon>,
    /// The CA that signed pebble's HTTPS certificate: what ACME clients trust.
    pub ca_bundle: PathBuf,
    /// The ACME port (`https://127.0.0.1:<acme_port>/dir`).
    pub acme_port: u16,
    /// The management port (`/roots/0`).
    pub mgmt_port: u16,
    /// Where pebble validates HTTP-01 challenges.
    pub http_port: u16,
    /// Where pebble validates TLS-ALPN-01 challenges.
    pub tls_port: u16,
}

impl Pebble {
    /// Starts the DNS stub and pebble; `validity_secs` sets
    /// `certificateValidityPeriod` (pebble's default: about five years).
    pub fn start(dir: &TestDir, validity_secs: Option<u64>) -> Self {
        Self::start_with(dir, validity_secs, free_port(), "")
    }

    /// As [`Pebble::start`], validating TLS-ALPN-01 on 127.0.0.1:`tls_port`;
    /// `extra` is more of pebble's JSON settings, each after a comma (e.g.
    /// `, "domainBlocklist": ["x.test"]`; a key given again wins).
    pub fn start_with(
        dir: &TestDir,
        validity_secs: Option<u64>,
        tls_port: u16,
        extra: &str,
    ) -> Self {
        require("pebble", "pebble");
        require("pebble-challtestsrv", "pebble");
        let tls_ca = Ca::new(dir.path(), "pebble-tls-ca", "Pebble TLS CA");
        let tls = tls_ca.issue(
            dir.path(),
            "pebble-tls",
            &Issue::server("localhost", &["localhost", "127.0.0.1"]),
        );
        let (acme_port, mgmt_port, http_port, dns_port, chall_mgmt) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let chall = Daemon::start(
            dir.path(),
            "challtestsrv",
            "pebble-challtestsrv",
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{chall_mgmt}"),
            ],
            &[],
        );
        chall.wait_port(chall_mgmt);
        let validity = validity_secs
            .map(|s| format!(r#", "certificateValidityPeriod": {s}"#))
            .unwrap_or_default();
        let config = dir.write(
            "pebble.json",
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}", "managementListenAddress": "127.0.0.1:{mgmt_port}", "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": {}, "ocspResponderURL": "", "externalAccountBindingRequired": false{validity}{extra}}}}}"#,
                tls.cert.display(),
                tls.key.display(),
                tls_port
            ),
        );
        let pebble = Daemon::start(
            dir.path(),
            "pebble",
            "pebble",
            &[
                "-config",
                config.to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            &[
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_VA_ALWAYS_VALID", "0"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
            ],
        );
        pebble.wait_port(acme_port);
        Self {
            _chall: chall,
            pebble: Some(pebble),
            ca_bundle: tls_ca.cert,
            acme_port,
            mgmt_port,
            http_port,
            tls_port,
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// pebble's output so far.
    pub fn logs(&self) -> String {
        self.pebble.as_ref().map(Daemon::logs).unwrap_or_default()
    }

    /// Takes the CA down (the DNS stub stays).
    pub fn stop(&mut self) {
        self.pebble = None;
    }

    /// pebble's issuing root (new at every start), from its management
    /// endpoint, written to `dir/pebble-root.pem`.
    pub fn root(&self, dir: &TestDir) -> PathBuf {
        let path = dir.join("pebble-root.pem");
        let script = format!(
            "import ssl, urllib.request; ctx = ssl.create_default_context(cafile={:?}); open({:?}, 'wb').write(urllib.request.urlopen('https://127.0.0.1:{}/roots/0', context=ctx).read())",
            self.ca_bundle.display().to_string(),
            path.display().to_string(),
            self.mgmt_port
        );
        let st = Command::new("python3")
            .args(["-c", &script])
            .status()
            .expect("python3");
        assert!(st.success(), "cannot fetch pebble's root");
        path
    }
}
