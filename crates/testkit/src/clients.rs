//! Real clients: `mosquitto_pub`, `mosquitto_sub`, `openssl s_client`, and
//! a rustls client for what the command-line tools cannot show (the
//! negotiated post-quantum group, a clean close_notify).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::{free_port, port_open};
use crate::require::require;
use crate::wait::wait_until;

/// TLS options for the mosquitto clients.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `--cafile`.
    pub cafile: Option<PathBuf>,
    /// `--cert` and `--key`.
    pub client: Option<(PathBuf, PathBuf)>,
    /// `--tls-version`.
    pub version: Option<&'static str>,
    /// `--insecure`: skip only the host name check (the clients always ask
    /// for `localhost`; a certificate for another name still verifies).
    pub insecure: bool,
}

impl Tls {
    /// Trust `ca`.
    pub fn ca(ca: &Path) -> Self {
        Self {
            cafile: Some(ca.to_path_buf()),
            ..Self::default()
        }
    }

    /// Present a client certificate.
    pub fn with_client(mut self, cert: &Path, key: &Path) -> Self {
        self.client = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Skip the host name check (see [`Tls::insecure`]).
    pub fn with_insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Force a TLS version (`tlsv1.2`, `tlsv1.3`).
    pub fn with_version(mut self, v: &'static str) -> Self {
        self.version = Some(v);
        self
    }

    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(ca) = &self.cafile {
            a.push("--cafile".into());
            a.push(ca.display().to_string());
        }
        if let Some((c, k)) = &self.client {
            a.extend([
                "--cert".into(),
                c.display().to_string(),
                "--key".into(),
                k.display().to_string(),
            ]);
        }
        if let Some(v) = self.version {
            a.extend(["--tls-version".into(), v.into()]);
        }
        if self.insecure {
            a.push("--insecure".into());
        }
        a
    }
}

/// Runs `mosquitto_pub` once (bounded to 15 s).
pub fn mosquitto_pub(
    host: &str,
    port: u16,
    tls: Option<&Tls>,
    topic: &str,
    message: &str,
) -> Output {
    require("mosquitto_pub", "mosquitto-clients");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "15",
        "mosquitto_pub",
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-m",
        message,
        "-q",
        "1",
    ]);
    if let Some(t) = tls {
        cmd.args(t.args());
    }
    cmd.output().expect("run mosquitto_pub")
}

/// A running `mosquitto_pub -l`: each line written is one QoS 1 message.
pub struct LinePub {
    child: Child,
}

impl LinePub {
    /// Connects as `id` to `localhost:port` and publishes to `topic`.
    pub fn spawn(id: &str, port: u16, tls: Option<&Tls>, topic: &str) -> Self {
        require("mosquitto_pub", "mosquitto-clients");
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "localhost", "-p", &port.to_string(), "-t", topic])
            .args(["-q", "1", "-l", "-i", id]);
        if let Some(t) = tls {
            cmd.args(t.args());
        }
        let child = cmd
            .stdin(Stdio::piped())
            .spawn()
            .expect("start mosquitto_pub -l");
        Self { child }
    }

    /// Publishes `message` (one line).
    pub fn send(&mut self, message: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{message}").expect("mosquitto_pub -l is gone");
        stdin.flush().expect("flush");
    }

    /// Ends the input and waits (up to 15 s) for every message to be sent;
    /// the exit code, `None` on a timeout.
    pub fn finish(mut self) -> Option<i32> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for LinePub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mosquitto_sub`.
pub struct Sub {
    child: Child,
    out: PathBuf,
}

impl Sub {
    /// Subscribes to `topic`, exiting after `count` messages or `secs`
    /// seconds. Output goes to `dir/<name>.out`.
    pub fn spawn(
        dir: &Path,
        name: &str,
        port: u16,
        tls: Option<&Tls>,
        topic: &str,
        count: u32,
        secs: u32,
    ) -> Self {
        let (count, secs) = (count.to_string(), secs.to_string());
        Self::start(
            dir,
            name,
            port,
            topic,
            &["-q", "1", "-C", &count, "-W", &secs],
            tls,
        )
    }

    /// Subscribes to `topic` with `-v` (each line: topic, then payload),
    /// for up to 100 messages or 30 seconds.
    pub fn watch(dir: &Path, name: &str, port: u16, topic: &str) -> Self {
        Self::start(
            dir,
            name,
            port,
            topic,
            &["-v", "-C", "100", "-W", "30"],
            None,
        )
    }

    /// `mosquitto_sub` on `topic` with client id `name` and `args`, its
    /// output in `dir/<name>.out`.
    fn start(
        dir: &Path,
        name: &str,
        port: u16,
        topic: &str,
        args: &[&str],
        tls: Option<&Tls>,
    ) -> Self {
        require("mosquitto_sub", "mosquitto-clients");
        let out = dir.join(format!("{name}.out"));
        let file = std::fs::File::create(&out).expect("create sub output");
        let err = file.try_clone().expect("clone");
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "localhost", "-p", &port.to_string(), "-t", topic])
            .args(args)
            .args(["-i", name]);
        if let Some(t) = tls {
            cmd.args(t.args());
        }
        let child = cmd
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start mosquitto_sub");
        Self { child, out }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Whether it has exited, and with which code.
    pub fn try_exit(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .expect("try_wait")
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.try_exit() {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Subscribes through `sub_port` and publishes through `pub_port` until the
/// message arrives (up to about 10 s). Returns what the subscriber printed.
pub fn round_trip(
    dir: &Path,
    sub_port: u16,
    sub_tls: Option<&Tls>,
    pub_port: u16,
    pub_tls: Option<&Tls>,
) -> String {
    let topic = format!("moat/test/{}", std::process::id());
    let message = format!("hello-{}", Instant::now().elapsed().as_nanos());
    let mut sub = Sub::spawn(dir, "round-trip", sub_port, sub_tls, &topic, 1, 12);
    // The subscription may not be in place yet: publish until it arrives.
    for _ in 0..40 {
        let out = mosquitto_pub("localhost", pub_port, pub_tls, &topic, &message);
        if let Some(code) = sub.try_exit() {
            let got = sub.output();
            assert_eq!(code, 0, "mosquitto_sub failed: {got}");
            return got.trim().to_string();
        }
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let code = sub.wait(Duration::from_secs(3));
    let got = sub.output();
    assert_eq!(
        code,
        Some(0),
        "no message arrived; subscriber printed: {got}"
    );
    got.trim().to_string()
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with extra arguments,
/// sending `stdin` and closing. Returns (success, stdout + stderr).
pub fn s_client(port: u16, args: &[&str], stdin: &str) -> (bool, String) {
    require("openssl", "openssl");
    let mut child = Command::new("timeout")
        .args([
            "15",
            "openssl",
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("s_client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Whether `s_client` output shows an established session.
pub fn handshake_ok(output: &str) -> bool {
    output.contains("Verify return code: 0 (ok)") && !output.contains("Cipher is (NONE)")
}

/// A running `openssl s_server`, as a control peer: it proves a client
/// option works against a server that allows it.
pub struct SServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl SServer {
    /// Starts `openssl s_server` with a certificate and extra arguments.
    pub fn start(cert: &Path, key: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        assert!(
            wait_until(Duration::from_secs(10), || port_open(port)),
            "s_server did not start"
        );
        Self { child, port }
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rustls client configuration trusting `ca`, with the default
/// (post-quantum-first) groups and TLS 1.2 and 1.3.
pub fn rustls_client(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    rustls_client_with(ca, client, rustls::DEFAULT_VERSIONS)
}

/// A rustls client configuration for the given protocol versions.
pub fn rustls_client_with(
    ca: &Path,
    client: Option<(&Path, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("read cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("read key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(16);
    Arc::new(cfg)
}

/// A TLS connection made with rustls, over a blocking socket.
pub struct RustlsConn {
    /// The rustls connection.
    pub conn: rustls::ClientConnection,
    /// The socket.
    pub sock: TcpStream,
}

impl RustlsConn {
    /// Connects and completes the handshake.
    pub fn connect(
        port: u16,
        server_name: &str,
        cfg: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut conn = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let mut sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Self { conn, sock })
    }

    /// Writes all of `data`.
    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        s.write_all(data)?;
        s.flush()
    }

    /// Reads until EOF; an error if the peer closed without close_notify.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Reads until the peer closes, or an error: what came before it, and
    /// the error if there was one.
    pub fn read_until_close(&mut self) -> (Vec<u8>, Option<std::io::Error>) {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Reads up to `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let mut out = vec![0; n];
        s.read_exact(&mut out)?;
        Ok(out)
    }
}

/// An MQTT 3.1.1 CONNECT packet with a client id and clean session.
pub fn mqtt_connect_v311(client_id: &str) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// The serial number (upper-case hex, as openssl prints it) of the
/// certificate served on 127.0.0.1:`port` for `server_name`, or an empty
/// string when the handshake fails.
pub fn served_serial(port: u16, server_name: &str) -> String {
    let script = format!(
        "timeout 10 openssl s_client -connect 127.0.0.1:{port} -servername {server_name} </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

/// Normalises a hex serial for comparison: lower case, no leading zeros.
pub fn norm_serial(s: &str) -> String {
    let t = s.trim().to_ascii_lowercase().replace(':', "");
    let t = t.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// `openssl s_client` to 127.0.0.1:`port` trusting `ca`, asking for
/// `localhost`, presenting `client` if given, sending `x` and waiting for
/// the server to close (`-ign_eof`): the output shows the alert it sent.
pub fn s_client_alert(port: u16, ca: &Path, client: Option<&crate::pki::CertFiles>) -> String {
    let ca = ca.display().to_string();
    let mut args = vec!["-CAfile", &ca, "-servername", "localhost", "-ign_eof"];
    let files = client.map(|c| (c.cert.display().to_string(), c.key.display().to_string()));
    if let Some((cert, key)) = &files {
        args.extend(["-cert", cert, "-key", key]);
    }
    s_client(port, &args, "x").1
}

/// `openssl s_client` to 127.0.0.1:`port` trusting `ca`, with `args`
/// after (`-servername ...`); asserts the handshake completed and returns
/// the output.
pub fn s_client_ok(port: u16, ca: &Path, args: &[&str]) -> String {
    let ca = ca.display().to_string();
    let mut all = vec!["-CAfile", &ca];
    all.extend_from_slice(args);
    let (ok, out) = s_client(port, &all, "");
    assert!(ok && handshake_ok(&out), "{args:?}: {out}");
    out
}

/// A TLS connection to 127.0.0.1:`port` (name `localhost`) that has sent
/// an MQTT 3.1.1 CONNECT as `client_id` and read back an accepting
/// CONNACK (asserted); an error if the handshake or the exchange failed.
pub fn mqtt_session(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    client_id: &str,
) -> std::io::Result<RustlsConn> {
    let mut c = RustlsConn::connect(port, "localhost", cfg)?;
    c.write_all(&mqtt_connect_v311(client_id))?;
    let ack = c.read_exact(4)?;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK of {client_id}");
    Ok(c)
}
