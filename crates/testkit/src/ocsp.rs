//! OCSP test peers: responses made by `openssl ocsp` from an
//! [`OpensslCa`]'s `index.txt`, and a loopback HTTP OCSP [`Responder`].
//!
//! Nothing here builds an OCSP response itself: openssl makes every one,
//! either offline about a certificate ([`OpensslCa::respond`]) or as a
//! responder answering a request ([`OpensslCa::answer`]). The responder
//! serves them on 127.0.0.1 only (`openssl ocsp -port` would listen on
//! every interface), so the real `moat` binary, another process, can fetch
//! from it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use moat_testkit::*;
//!
//! let dir = TestDir::new();
//! // Start the responder first: its URL goes into the certificates.
//! let mut responder = Responder::start(Behaviour::Status(503));
//! let ca = Arc::new(OpensslCa::with_options(
//!     dir.path(),
//!     "ocsp-ca",
//!     &CaOptions::ocsp(responder.url()),
//! ));
//! let server = ca.issue_server(dir.path(), "server");
//! // A real responder: openssl answers each request from index.txt.
//! responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));
//! // ... start moat with server.cert and server.key, wait for a staple ...
//! ca.revoke(&server.cert); // the next answer says "revoked"
//! responder.stop(); // connections refused
//! responder.restart(); // the same port again
//! assert!(responder.hits() > 0);
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::openssl_ca::Signer;
use crate::openssl_ca::{self_signed_ca, OpensslCa, Profile};
use crate::pki::{openssl, CertFiles, KeyAlg};

/// How `openssl ocsp` makes a response.
#[derive(Debug, Clone, Copy)]
pub struct RespOpts {
    /// Who signs it.
    pub signer: Signer,
    /// nextUpdate after thisUpdate: `-ndays` for whole days, else `-nmin`
    /// (rounded up to a minute); `None` for no nextUpdate. One day by
    /// default.
    pub next_update: Option<Duration>,
    /// A SHA-256 CertID instead of SHA-1 (only for [`OpensslCa::respond`];
    /// an answer uses the request's CertID).
    pub sha256: bool,
    /// ResponderID byKey (`-resp_key_id`) instead of byName.
    pub by_key: bool,
}

impl Default for RespOpts {
    fn default() -> Self {
        Self {
            signer: Signer::Delegated,
            next_update: Some(Duration::from_secs(86_400)),
            sha256: false,
            by_key: false,
        }
    }
}

impl RespOpts {
    /// The defaults with another signer.
    pub fn signer(signer: Signer) -> Self {
        Self {
            signer,
            ..Self::default()
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        match self.next_update {
            Some(d) if d.as_secs() % 86_400 == 0 && d.as_secs() > 0 => {
                args.extend(["-ndays".into(), (d.as_secs() / 86_400).to_string()]);
            }
            Some(d) => {
                args.extend(["-nmin".into(), d.as_secs().div_ceil(60).max(1).to_string()]);
            }
            None => {}
        }
        if self.by_key {
            args.push("-resp_key_id".into());
        }
        args
    }
}

/// Names the scratch files of responses and requests.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl OpensslCa {
    /// The certificate and key of `signer`, made now if it is the first
    /// time it is asked for (in the CA's directory).
    pub fn signer(&self, signer: Signer) -> CertFiles {
        if signer == Signer::Ca {
            return self.files();
        }
        let mut signers = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = signers.get(&signer) {
            return files.clone();
        }
        let dir = self.dir.clone();
        let files = match signer {
            Signer::Ca => unreachable!("handled above"),
            Signer::Delegated => self.issue(
                &dir,
                "ocsp-signer",
                "/CN=Moat OCSP Responder",
                Profile::OcspSigning,
            ),
            Signer::NoEku => self.issue(
                &dir,
                "not-a-responder",
                "/CN=Moat Not A Responder",
                Profile::ServerNoAia,
            ),
            Signer::Impostor => self_signed(&dir, "impostor", &self.name, self.alg),
            Signer::Other => self_signed(&dir, "other-ca", "Other Test CA", KeyAlg::EcdsaP256),
        };
        signers.insert(signer, files.clone());
        files
    }

    /// A response from `openssl ocsp` about `cert` (issued by this CA),
    /// made offline from `index.txt`: "good", "revoked" or, for a
    /// certificate it never recorded, "unknown". No nonce.
    pub fn respond(&self, cert: &Path, opts: RespOpts) -> Vec<u8> {
        let signer = self.signer(opts.signer);
        let out = self.scratch("resp");
        // The CertID digest option must come before -cert.
        let digest = if opts.sha256 { "-sha256" } else { "-sha1" };
        self.run_ocsp(
            &signer,
            &[
                "-issuer".into(),
                "ca.pem".into(),
                digest.into(),
                "-cert".into(),
                path_arg(cert),
                "-no_nonce".into(),
                "-respout".into(),
                path_arg(&out),
            ],
            &opts,
        );
        std::fs::read(&out).expect("read OCSP response")
    }

    /// The answer of `openssl ocsp` acting as a responder (`-reqin`) to a
    /// DER request, as a real responder gives it from `index.txt` (with
    /// the request's CertID and nonce). [`RespOpts::sha256`] is ignored.
    pub fn answer(&self, request: &[u8], opts: RespOpts) -> Vec<u8> {
        let signer = self.signer(opts.signer);
        let req = self.scratch("req");
        let out = self.scratch("answer");
        std::fs::write(&req, request).expect("write OCSP request");
        self.run_ocsp(
            &signer,
            &[
                "-reqin".into(),
                path_arg(&req),
                "-respout".into(),
                path_arg(&out),
            ],
            &opts,
        );
        std::fs::read(&out).expect("read OCSP response")
    }

    /// `openssl ocsp -respin ... -resp_text`, for assertion messages.
    pub fn describe(&self, response: &[u8]) -> String {
        let file = self.scratch("describe");
        std::fs::write(&file, response).expect("write OCSP response");
        openssl(
            &self.dir,
            &[
                "ocsp",
                "-respin",
                &path_arg(&file),
                "-resp_text",
                "-noverify",
            ],
        )
    }

    /// A new scratch file name in the CA's `ocsp/` directory.
    fn scratch(&self, what: &str) -> PathBuf {
        let dir = self.dir.join("ocsp");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{what}-{n}.der"))
    }

    /// Runs `openssl ocsp` from `index.txt`, signed by `signer`, with
    /// `what` (the request and the output) and then `opts`, and the
    /// database held: `openssl ca` replaces `index.txt` by renaming, and it
    /// is briefly missing.
    fn run_ocsp(&self, signer: &CertFiles, what: &[String], opts: &RespOpts) {
        let mut args = vec![
            "ocsp".to_string(),
            "-index".into(),
            "index.txt".into(),
            "-CA".into(),
            "ca.pem".into(),
            "-rsigner".into(),
            path_arg(&signer.cert),
            "-rkey".into(),
            path_arg(&signer.key),
        ];
        args.extend_from_slice(what);
        args.extend(opts.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _db = self.lock_db();
        openssl(&self.dir, &args);
    }
}

fn self_signed(dir: &Path, stem: &str, cn: &str, alg: KeyAlg) -> CertFiles {
    let cert_pem = self_signed_ca(dir, stem, cn, alg);
    CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
        cert_pem,
    }
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Computes a response body from a DER request.
pub type AnswerFn = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// What the [`Responder`] does with a request.
pub enum Behaviour {
    /// Answers 200 with these bytes (e.g. from [`OpensslCa::respond`]).
    Serve(Vec<u8>),
    /// Answers 200 with what the function computes from the DER request;
    /// 500 if it panics. See [`Behaviour::answer`].
    Answer(AnswerFn),
    /// Answers with this HTTP status and no body.
    Status(u16),
    /// Says nothing for this long, then closes the connection.
    Hang(Duration),
    /// Closes the connection without a response.
    Close,
}

impl Behaviour {
    /// A real responder: `openssl ocsp -reqin` answers each request from
    /// the CA's `index.txt` as it is at that moment.
    pub fn answer(ca: Arc<OpensslCa>, opts: RespOpts) -> Self {
        Self::Answer(Box::new(move |request| ca.answer(request, opts)))
    }
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Serve(bytes) => write!(f, "Serve({} bytes)", bytes.len()),
            Self::Answer(_) => f.write_str("Answer(..)"),
            Self::Status(code) => write!(f, "Status({code})"),
            Self::Hang(d) => write!(f, "Hang({d:?})"),
            Self::Close => f.write_str("Close"),
        }
    }
}

/// One request the [`Responder`] received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `GET` or `POST`.
    pub method: String,
    /// The request path (a GET carries the request in it).
    pub path: String,
    /// The `Content-Type` header, if any (`application/ocsp-request` for
    /// a proper POST).
    pub content_type: Option<String>,
    /// The DER OCSP request: the POST body, or decoded from a GET path;
    /// empty if the path held none.
    pub request: Vec<u8>,
}

struct State {
    behaviour: Mutex<Arc<Behaviour>>,
    hits: Mutex<Vec<Hit>>,
}

/// The accept loop of one run (between start and stop).
struct Run {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A minimal HTTP OCSP responder on 127.0.0.1, on a port of its own.
///
/// It decodes GET (base64 request in the path, percent-encoded or not)
/// and POST (`application/ocsp-request` body) requests, counts them, and
/// answers as its current [`Behaviour`] says; [`Responder::set`] changes
/// that at any time. Each connection is handled on its own thread, so a
/// hanging answer does not hold up others.
///
/// [`Responder::stop`] closes the port (connections are then refused) and
/// [`Responder::restart`] listens on the same port again, with the same
/// behaviour and hit log. Dropping it stops it.
pub struct Responder {
    port: u16,
    state: Arc<State>,
    run: Option<Run>,
}

impl Responder {
    /// Starts on a free port.
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OCSP responder");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State {
            behaviour: Mutex::new(Arc::new(behaviour)),
            hits: Mutex::new(Vec::new()),
        });
        let mut responder = Self {
            port,
            state,
            run: None,
        };
        responder.run = Some(responder.serve(listener));
        responder
    }

    fn serve(&self, listener: TcpListener) -> Run {
        let stop = Arc::new(AtomicBool::new(false));
        let state = self.state.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let state = state.clone();
                    let stopped = stopped.clone();
                    std::thread::spawn(move || handle(stream, &state, &stopped));
                }
            }
        });
        Run { stop, thread }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, for authorityInfoAccess or moat's
    /// responder URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What to do with the next requests.
    pub fn set(&self, behaviour: Behaviour) {
        *self
            .state
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(behaviour);
    }

    /// How many requests it received (while running, whatever the
    /// behaviour).
    pub fn hits(&self) -> usize {
        self.lock_hits().len()
    }

    /// Every request received, in order.
    pub fn hit_log(&self) -> Vec<Hit> {
        self.lock_hits().clone()
    }

    /// The DER requests received, in order.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.lock_hits().iter().map(|h| h.request.clone()).collect()
    }

    /// The request paths, in order.
    pub fn paths(&self) -> Vec<String> {
        self.lock_hits().iter().map(|h| h.path.clone()).collect()
    }

    /// Waits (at most `timeout`) until it has received at least `n`
    /// requests; whether it did.
    pub fn wait_for_hits(&self, n: usize, timeout: Duration) -> bool {
        crate::wait::wait_until(timeout, || self.hits() >= n)
    }

    fn lock_hits(&self) -> std::sync::MutexGuard<'_, Vec<Hit>> {
        self.state.hits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether it is listening.
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// Closes the port: connections are refused until [`restart`]. An
    /// answer in progress (a [`Behaviour::Hang`]) still ends as it would
    /// have. Does nothing if it is stopped.
    ///
    /// [`restart`]: Responder::restart
    pub fn stop(&mut self) {
        if let Some(run) = self.run.take() {
            run.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop.
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            let _ = run.thread.join();
        }
    }

    /// Listens on the same port again, with the same behaviour and hit
    /// log. Does nothing if it is running. Panics if the port cannot be
    /// bound again within 5 s (something else took it).
    pub fn restart(&mut self) {
        if self.run.is_some() {
            return;
        }
        // std sets SO_REUSEADDR, so closed connections in TIME_WAIT do not
        // hold the port.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on 127.0.0.1:{} again: {e}", self.port),
            }
        };
        self.run = Some(self.serve(listener));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("port", &self.port)
            .field("running", &self.is_running())
            .field("hits", &self.hits())
            .finish()
    }
}

/// Serves one connection: one request, one answer, then close.
fn handle(mut stream: TcpStream, state: &State, stopped: &AtomicBool) {
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
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if stopped.load(Ordering::SeqCst) {
        return;
    }
    let request = if method == "POST" {
        body
    } else {
        request_from_path(&path)
    };
    state
        .hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Hit {
            method,
            path,
            content_type: header("content-type"),
            request: request.clone(),
        });
    let behaviour = state
        .behaviour
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (status, body) = match &*behaviour {
        Behaviour::Serve(bytes) => (200, bytes.clone()),
        Behaviour::Status(code) => (*code, Vec::new()),
        Behaviour::Hang(d) => {
            std::thread::sleep(*d);
            return;
        }
        Behaviour::Close => return,
        Behaviour::Answer(f) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&request))) {
                Ok(body) => (200, body),
                Err(_) => (500, Vec::new()),
            }
        }
    };
    let reason = if status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/ocsp-response\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// The DER request at the end of a GET path: base64, perhaps
/// percent-encoded. Some clients (ocsp-stapler) append it raw, so it may
/// contain '/': take the longest run of trailing segments that decodes to
/// one whole DER SEQUENCE. Empty if there is none.
fn request_from_path(path: &str) -> Vec<u8> {
    let raw = path.trim_start_matches('/');
    let segments: Vec<&str> = raw.split('/').collect();
    (0..segments.len())
        .find_map(|i| {
            let der = b64_decode(&percent_decode(&segments[i..].join("/")))?;
            is_one_der_sequence(&der).then_some(der)
        })
        .unwrap_or_default()
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

/// Standard base64, padding optional.
fn b64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    if s.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
