//! The browser peer: MQTT.js in headless Chromium over `wss://`.
//!
//! [`BrowserRun`] runs `tests/browser/roundtrip.mjs` (Node.js drives
//! Debian's Chromium through puppeteer-core) and returns its one-line JSON
//! report, parsed. The page trusts exactly one server key, by its SPKI
//! SHA-256 ([`spki_sha256_base64`]); every other certificate is verified
//! as a browser always does. The page is served from `http://127.0.0.1:<port>`,
//! so that is the `Origin` the WebSocket handshake carries.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::dir::workspace_root;
use crate::pki::CertFiles;
use crate::require::require;
use crate::wait::wait_until;

/// How long one whole run (launch, every round trip, shutdown) may take;
/// the runner bounds itself well inside this.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, in base64: what
/// Chromium's `--ignore-certificate-errors-spki-list` takes. `der` is the
/// certificate (see [`CertFiles::der`] for a PEM file's).
pub fn spki_sha256_base64(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse the certificate");
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert.tbs_certificate.subject_pki.raw,
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One MQTT message as the page sent or received it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct BrowserMessage {
    /// The QoS it was sent or delivered at.
    pub qos: u8,
    /// Its topic.
    pub topic: String,
    /// Its payload, as UTF-8 text.
    pub payload: String,
}

/// One MQTT session of the page: subscribe at QoS 2, publish at 0, 1, 2.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolRun {
    /// 4 (MQTT 3.1.1) or 5.
    pub protocol: u8,
    /// The client id it connected with.
    pub client_id: String,
    /// The topic it subscribed and published to.
    pub topic: String,
    /// What it published.
    pub sent: Vec<BrowserMessage>,
    /// What came back, in order of arrival.
    pub received: Vec<BrowserMessage>,
    /// Why the session failed, if it did.
    pub error: Option<String>,
    /// What Chromium printed meanwhile (a TLS failure names its `net::` error).
    #[serde(default)]
    pub console: String,
}

/// The connection the page was meant to refuse.
#[derive(Debug, Clone, Deserialize)]
pub struct Rejected {
    /// Where it tried.
    pub url: String,
    /// Whether the WebSocket opened anyway.
    pub connected: bool,
    /// What Chromium printed about it.
    pub console: String,
}

/// The runner's report.
#[derive(Debug, Clone, Deserialize)]
pub struct BrowserReport {
    /// The page's origin, which the WebSocket handshake sends as `Origin`.
    pub origin: Option<String>,
    /// Chromium's version.
    pub browser: Option<String>,
    /// One per protocol version, in the order asked for.
    pub runs: Vec<ProtocolRun>,
    /// The refused connection of [`BrowserRun::reject`], if asked for.
    pub rejected: Option<Rejected>,
    /// Why the run as a whole failed, if it did.
    pub error: Option<String>,
    /// The runner's stderr (empty when all went well).
    #[serde(skip)]
    pub stderr: String,
}

impl BrowserReport {
    /// Panics unless each of `protocols` ran, in that order, and got back
    /// exactly the three messages it sent (QoS 0, 1 and 2, each once, each
    /// delivered at the QoS it was sent at, payloads intact).
    pub fn assert_round_trips(&self, protocols: &[u8]) {
        assert!(self.error.is_none(), "the browser run failed: {self:#?}");
        let ran: Vec<u8> = self.runs.iter().map(|r| r.protocol).collect();
        assert_eq!(ran, protocols, "protocol runs: {self:#?}");
        for run in &self.runs {
            assert!(run.error.is_none(), "protocol {}: {run:#?}", run.protocol);
            let qos: Vec<u8> = run.sent.iter().map(|m| m.qos).collect();
            assert_eq!(qos, [0, 1, 2], "the page sends one message a QoS: {run:#?}");
            let mut sent = run.sent.clone();
            let mut received = run.received.clone();
            sent.sort();
            received.sort();
            assert_eq!(
                received, sent,
                "protocol {}: each message back exactly once, at its QoS",
                run.protocol
            );
            assert!(
                run.received.iter().all(|m| m.topic == run.topic),
                "{run:#?}"
            );
        }
    }
}

/// What the page does: build with the methods, then [`BrowserRun::run`].
#[derive(Debug, Clone)]
pub struct BrowserRun {
    url: String,
    spki: String,
    topic: String,
    client_id: String,
    protocols: Vec<u8>,
    reject_url: Option<String>,
    page_port: Option<u16>,
}

impl BrowserRun {
    /// Round trips at `url` (`wss://127.0.0.1:<port>/<path>`), trusting
    /// `server`'s key alone; MQTT 3.1.1 then 5, topic `moat/browser`.
    pub fn new(url: &str, server: &CertFiles) -> Self {
        Self {
            url: url.into(),
            spki: spki_sha256_base64(&server.der()),
            topic: "moat/browser".into(),
            client_id: "moat-browser".into(),
            protocols: vec![4, 5],
            reject_url: None,
            page_port: None,
        }
    }

    /// The topic prefix (each protocol's session uses `<topic>/v<N>`).
    pub fn topic(mut self, topic: &str) -> Self {
        self.topic = topic.into();
        self
    }

    /// The client id prefix (each session is `<id>-v<N>`).
    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = id.into();
        self
    }

    /// The protocol versions to run, in order (4 and/or 5).
    pub fn protocols(mut self, protocols: &[u8]) -> Self {
        self.protocols = protocols.to_vec();
        self
    }

    /// Also opens a WebSocket to `url`, which serves a certificate that is
    /// not pinned: the page must refuse it ([`BrowserReport::rejected`]).
    pub fn reject(mut self, url: &str) -> Self {
        self.reject_url = Some(url.into());
        self
    }

    /// Serves the page on this port, so its Origin is known beforehand
    /// (`http://127.0.0.1:<port>`); any free port otherwise.
    pub fn page_port(mut self, port: u16) -> Self {
        self.page_port = Some(port);
        self
    }

    /// Runs the page (one Chromium) and returns its report, whether or not
    /// the round trips worked; the runner's exit status is not checked
    /// here, the report's fields tell. Panics if a peer is missing or the
    /// runner prints no report within a minute.
    pub fn run(&self) -> BrowserReport {
        let runner = require_browser_peer();
        let protocols: Vec<String> = self.protocols.iter().map(u8::to_string).collect();
        let mut cmd = Command::new("node");
        cmd.arg(runner)
            .args(["--url", &self.url, "--spki", &self.spki])
            .args(["--topic", &self.topic, "--client-id", &self.client_id])
            .args(["--protocols", &protocols.join(",")]);
        if let Some(url) = &self.reject_url {
            cmd.args(["--reject-url", url]);
        }
        if let Some(port) = self.page_port {
            cmd.args(["--page-port", &port.to_string()]);
        }
        let (stdout, stderr) = run_bounded(cmd);
        let line = stdout.lines().last().unwrap_or_default();
        let mut report: BrowserReport = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("the browser runner printed no report ({e}); stdout: {stdout}\nstderr: {stderr}")
        });
        report.stderr = stderr;
        report
    }
}

/// The runner script, after checking its peers are installed: Node.js,
/// Chromium and the npm packages of `tests/browser`.
fn require_browser_peer() -> PathBuf {
    require("node", "nodejs");
    require("chromium", "chromium");
    let dir = workspace_root().join("tests/browser");
    for installed in [
        "node_modules/mqtt/dist/mqtt.min.js",
        "node_modules/puppeteer-core/package.json",
    ] {
        assert!(
            dir.join(installed).is_file(),
            "missing test peer: {} is not there. Install the browser peer's npm packages with \
             `npm ci --prefix tests/browser` (needs `apt-get install -y npm`), or run scripts/test.",
            dir.join(installed).display()
        );
    }
    dir.join("roundtrip.mjs")
}

/// Runs `cmd` for at most [`RUN_TIMEOUT`], returning its stdout and stderr.
/// Past that it gets SIGTERM (on which puppeteer kills Chromium), then
/// SIGKILL.
fn run_bounded(mut cmd: Command) -> (String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let readers = [
        read_all(child.stdout.take().expect("stdout")),
        read_all(child.stderr.take().expect("stderr")),
    ];
    let exited = wait_until(RUN_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !wait_until(Duration::from_secs(3), || {
            matches!(child.try_wait(), Ok(Some(_)))
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    let [out, err] = readers.map(|r| r.join().expect("read the runner's output"));
    assert!(
        exited,
        "the browser runner took over {RUN_TIMEOUT:?}; stdout: {out}\nstderr: {err}"
    );
    (out, err)
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Issue};

    #[test]
    fn spki_hash_matches_openssl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new(dir.path(), "ca", "Pin CA");
        let cert = ca.issue(dir.path(), "s", &Issue::server("127.0.0.1", &["127.0.0.1"]));
        // The pipeline Chromium's documentation gives for the SPKI hash.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der \
                 | openssl dgst -sha256 -binary | base64",
                cert.cert.display()
            ))
            .output()
            .expect("run openssl");
        let expected = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(spki_sha256_base64(&cert.der()), expected.trim());
    }
}
