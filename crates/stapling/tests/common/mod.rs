//! Test support: a PKI made with the `openssl` CLI (CA with an index.txt
//! database, delegated OCSP signers, an impostor CA with the same name and
//! an unrelated CA), OCSP responses made by `openssl ocsp`, a small HTTP
//! server on 127.0.0.1 that serves them, a recording observer and a clock
//! the tests move.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use moat_stapling::{Clock, RefreshError, StapleObserver, StapleSource, StapleStatus};

/// Installs the process-wide rustls provider and a log subscriber, as the
/// gateway does at start.
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "moat_stapling=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run `openssl` ({e}): these tests need the openssl command; \
             install the Debian package `openssl` (apt-get install openssl)"
        ),
    };
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Who signs an OCSP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The issuing CA itself.
    Ca,
    /// A delegated responder issued by the CA with OCSPSigning.
    Delegated,
    /// A certificate issued by the CA without OCSPSigning.
    NoEku,
    /// A CA with the same name as ours but another key.
    Impostor,
    /// An unrelated CA.
    Other,
}

impl Signer {
    fn files(self) -> (&'static str, &'static str) {
        match self {
            Self::Ca => ("ca.crt", "ca.key"),
            Self::Delegated => ("ocsp.crt", "ocsp.key"),
            Self::NoEku => ("noeku.crt", "noeku.key"),
            Self::Impostor => ("impostor.crt", "impostor.key"),
            Self::Other => ("other.crt", "other.key"),
        }
    }
}

/// How `openssl ocsp` makes a response.
#[derive(Debug, Clone, Copy)]
pub struct RespOpts {
    pub signer: Signer,
    /// `-ndays`; with `None`, `-nmin` from `minutes`.
    pub days: Option<u32>,
    pub minutes: u32,
    /// `-sha256` CertID instead of SHA-1.
    pub sha256: bool,
    /// `-resp_key_id`: ResponderID byKey.
    pub by_key: bool,
}

impl Default for RespOpts {
    fn default() -> Self {
        Self {
            signer: Signer::Delegated,
            days: Some(1),
            minutes: 0,
            sha256: false,
            by_key: false,
        }
    }
}

impl RespOpts {
    pub fn signer(signer: Signer) -> Self {
        Self {
            signer,
            ..Self::default()
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A CA made with `openssl req`/`openssl ca`, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

const CA_CNF: &str = r#"
[ca]
default_ca = CA_default
[CA_default]
dir = .
database = index.txt
new_certs_dir = newcerts
certificate = ca.crt
private_key = ca.key
serial = serial
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
authorityInfoAccess = OCSP;URI:@AIA@
[must_staple_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
authorityInfoAccess = OCSP;URI:@AIA@
tlsfeature = status_request
[no_aia_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
[ocsp_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,OCSPSigning
[noeku_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
"#;

const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl Pki {
    /// A CA (RSA) whose server certificates name `aia_url` as their OCSP
    /// responder, a delegated OCSP signer and a signer without OCSPSigning
    /// (EC), an impostor CA with the same name (RSA), an unrelated CA (EC),
    /// and the server certificate `server`.
    pub fn new(aia_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.cnf"), CA_CNF.replace("@AIA@", aia_url)).unwrap();
        std::fs::create_dir(d.join("newcerts")).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        let ca_ext = [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        let self_signed = |name: &str, subject: &str, key: &[&str]| {
            let mut args = vec!["req", "-x509", "-nodes", "-days", "3650"];
            args.extend_from_slice(key);
            let keyout = format!("{name}.key");
            let out = format!("{name}.crt");
            args.extend_from_slice(&["-keyout", &keyout, "-out", &out, "-subj", subject]);
            args.extend_from_slice(&ca_ext);
            openssl(d, &args);
        };
        self_signed("ca", "/CN=Moat Test CA", &["-newkey", "rsa:2048"]);
        self_signed("impostor", "/CN=Moat Test CA", &["-newkey", "rsa:2048"]);
        self_signed("other", "/CN=Other Test CA", EC);
        let pki = Self { dir };
        pki.issue("ocsp", "Moat OCSP Responder", "ocsp_ext");
        pki.issue("noeku", "Moat Not A Responder", "noeku_ext");
        pki.issue("server", "localhost", "server_ext");
        pki
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Issues `<name>.crt` with `openssl ca` and the extension section.
    pub fn issue(&self, name: &str, cn: &str, ext: &str) {
        let d = self.dir.path();
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend_from_slice(EC);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subj = format!("/CN={cn}");
        args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(d, &args);
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-extensions",
                ext,
                "-notext",
                "-in",
                &csr,
                "-out",
                &crt,
            ],
        );
    }

    /// Issues `<name>.crt` with `openssl x509 -req`, which leaves it out of
    /// index.txt: the responder answers "unknown" for it.
    pub fn issue_unrecorded(&self, name: &str) {
        let d = self.dir.path();
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend_from_slice(EC);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(d, &args);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x7777",
                "-days",
                "30",
                "-extfile",
                "ca.cnf",
                "-extensions",
                "server_ext",
                "-out",
                &crt,
            ],
        );
    }

    /// `openssl ca -revoke` with reason keyCompromise.
    pub fn revoke(&self, name: &str) {
        let crt = format!("{name}.crt");
        openssl(
            self.dir.path(),
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-revoke",
                &crt,
                "-crl_reason",
                "keyCompromise",
            ],
        );
    }

    /// DER of `<name>.crt`.
    pub fn der(&self, name: &str) -> Vec<u8> {
        let crt = format!("{name}.crt");
        let der = format!("{name}.der");
        openssl(
            self.dir.path(),
            &["x509", "-in", &crt, "-outform", "DER", "-out", &der],
        );
        std::fs::read(self.path(&der)).unwrap()
    }

    fn validity_args(opts: &RespOpts) -> Vec<String> {
        match opts.days {
            Some(days) => vec!["-ndays".into(), days.to_string()],
            None => vec!["-nmin".into(), opts.minutes.to_string()],
        }
    }

    /// A response from `openssl ocsp` about `<cert>.crt`, made offline
    /// from index.txt.
    pub fn respond(&self, cert: &str, opts: RespOpts) -> Vec<u8> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let out = format!("resp-{n}.der");
        let (rsigner, rkey) = opts.signer.files();
        let crt = format!("{cert}.crt");
        // The CertID digest option must come before -cert.
        let digest = if opts.sha256 { "-sha256" } else { "-sha1" };
        let mut args: Vec<String> = [
            "ocsp",
            "-index",
            "index.txt",
            "-CA",
            "ca.crt",
            "-rsigner",
            rsigner,
            "-rkey",
            rkey,
            "-issuer",
            "ca.crt",
            digest,
            "-cert",
            &crt,
            "-no_nonce",
            "-respout",
            &out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(Self::validity_args(&opts));
        if opts.by_key {
            args.push("-resp_key_id".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(self.dir.path(), &args);
        std::fs::read(self.path(&out)).unwrap()
    }

    /// The answer of `openssl ocsp` (as a responder, `-reqin`) to a DER
    /// request, as a real responder would give it.
    pub fn answer(&self, request: &[u8], opts: RespOpts) -> Vec<u8> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let req = format!("req-{n}.der");
        let out = format!("ans-{n}.der");
        std::fs::write(self.path(&req), request).unwrap();
        let (rsigner, rkey) = opts.signer.files();
        let mut args: Vec<String> = [
            "ocsp",
            "-index",
            "index.txt",
            "-CA",
            "ca.crt",
            "-rsigner",
            rsigner,
            "-rkey",
            rkey,
            "-reqin",
            &req,
            "-respout",
            &out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(Self::validity_args(&opts));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(self.dir.path(), &args);
        std::fs::read(self.path(&out)).unwrap()
    }

    /// `openssl ocsp -respin ... -resp_text`, for assertion messages.
    pub fn describe(&self, response: &[u8]) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file = format!("describe-{n}.der");
        std::fs::write(self.path(&file), response).unwrap();
        openssl(
            self.dir.path(),
            &["ocsp", "-respin", &file, "-resp_text", "-noverify"],
        )
    }
}

/// Computes a response from a DER request.
pub type AnswerFn = Box<dyn Fn(&[u8]) -> Vec<u8> + Send>;

/// What the test responder does with a request.
pub enum Behaviour {
    /// Answers 200 with these bytes.
    Serve(Vec<u8>),
    /// Answers with this HTTP status and no body.
    Status(u16),
    /// Computes the answer from the DER request.
    Answer(AnswerFn),
    /// Says nothing for this long, then closes the connection.
    Hang(Duration),
}

struct ResponderState {
    behaviour: Mutex<Behaviour>,
    hits: AtomicUsize,
    requests: Mutex<Vec<Vec<u8>>>,
    paths: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A minimal HTTP OCSP responder on 127.0.0.1: it decodes GET and POST
/// OCSP requests and answers as told. Dropping or shutting it down closes
/// the port (connections are then refused).
pub struct Responder {
    pub port: u16,
    state: Arc<ResponderState>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::start_on(listener, behaviour)
    }

    /// A listener bound now, so the port is known before the certificates
    /// that name it are made.
    pub fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    pub fn start_on(listener: TcpListener, behaviour: Behaviour) -> Self {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ResponderState {
            behaviour: Mutex::new(behaviour),
            hits: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            paths: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    handle(stream, &thread_state);
                }
            }
        });
        Self {
            port,
            state,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The request paths (GET carries the request in it).
    pub fn paths(&self) -> Vec<String> {
        self.state.paths.lock().unwrap().clone()
    }

    /// Closes the port.
    pub fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn handle(mut stream: TcpStream, state: &ResponderState) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if state.stop.load(Ordering::SeqCst) {
        return;
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.paths.lock().unwrap().push(path.clone());
    let request = if method == "POST" {
        body
    } else {
        // The request is the end of the path, base64, perhaps
        // percent-encoded (ocsp-stapler appends it raw, so it may contain
        // '/'): take the longest run of trailing segments that decodes to
        // one whole DER SEQUENCE.
        let raw = path.trim_start_matches('/');
        let segments: Vec<&str> = raw.split('/').collect();
        (0..segments.len())
            .find_map(|i| {
                let der = b64_decode(&percent_decode(&segments[i..].join("/"))).ok()?;
                is_one_der_sequence(&der).then_some(der)
            })
            .unwrap_or_default()
    };
    state.requests.lock().unwrap().push(request.clone());
    let hang = match &*state.behaviour.lock().unwrap() {
        Behaviour::Hang(d) => Some(*d),
        _ => None,
    };
    if let Some(d) = hang {
        std::thread::sleep(d);
        return;
    }
    let (status, body) = match &*state.behaviour.lock().unwrap() {
        Behaviour::Serve(bytes) => (200, bytes.clone()),
        Behaviour::Status(code) => (*code, Vec::new()),
        Behaviour::Hang(_) => unreachable!("handled above"),
        Behaviour::Answer(f) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&request))) {
                Ok(body) => (200, body),
                Err(_) => (500, Vec::new()),
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/ocsp-response\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Whether `der` is exactly one DER SEQUENCE.
fn is_one_der_sequence(der: &[u8]) -> bool {
    if der.len() < 2 || der[0] != 0x30 {
        return false;
    }
    let (len, header) = match der[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 if der.len() > 2 => (der[2] as usize, 3),
        0x82 if der.len() > 3 => (((der[2] as usize) << 8) | der[3] as usize, 4),
        _ => return false,
    };
    header + len == der.len()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn b64_decode(s: &str) -> Result<Vec<u8>, ()> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    if s.is_empty() {
        return Err(());
    }
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).ok_or(())? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A port with nothing listening on it.
pub fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One observed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Changed {
        stapled: bool,
        source: Option<StapleSource>,
        status: Option<&'static str>,
    },
    Refresh(Result<(), &'static str>),
    CacheWriteFailed,
    MustStapleUnmet,
}

/// Records every event.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl StapleObserver for Recorder {
    fn staple_changed(&self, status: &StapleStatus) {
        self.events.lock().unwrap().push(Event::Changed {
            stapled: status.staple.is_some(),
            source: status.source,
            status: status.staple.as_ref().map(|s| s.cert_status().label()),
        });
    }

    fn refresh_result(&self, _name: &str, result: Result<(), &RefreshError>) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Refresh(result.map_err(|e| e.reason())));
    }

    fn cache_write_failed(&self, _name: &str, _error: &std::io::Error) {
        self.events.lock().unwrap().push(Event::CacheWriteFailed);
    }

    fn must_staple_without_staple(&self, _name: &str) {
        self.events.lock().unwrap().push(Event::MustStapleUnmet);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, event: &Event) -> usize {
        self.events().iter().filter(|e| *e == event).count()
    }

    /// Waits (at most `timeout`) until `pred` holds for the events.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; events: {:#?}",
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits (at most `timeout`) until `pred` holds.
pub async fn wait_until(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The system clock plus an offset the test moves.
#[derive(Default)]
pub struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Moves the clock so that `now()` is about `t`.
    pub fn set(&self, t: SystemTime) {
        let real = SystemTime::now();
        let offset = match t.duration_since(real) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        self.offset_ms.store(offset, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let real = SystemTime::now();
        if offset >= 0 {
            real + Duration::from_millis(offset as u64)
        } else {
            real - Duration::from_millis(offset.unsigned_abs())
        }
    }
}
