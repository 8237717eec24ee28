//! `soak`: the long-running reliability test (`scripts/soak`; issue 9,
//! item 8, and the "small bound" of item 1). This module owns all of it:
//!
//! - the orchestrator: a test PKI whose CA stays in memory, Mosquitto with
//!   persistence, two moat replicas, the client worker processes, the
//!   timeline (ramp, certificate renewals every 10 s, a broker restart, a
//!   flood of garbage, half-open and slowloris handshakes), a once-a-second
//!   `/proc` sampler, a handshake-latency probe, and the verdicts;
//! - the worker roles it starts as `moat-bench soak-worker --spec JSON`:
//!   *devices* (persistent MQTT sessions publishing QoS 1 and retransmitting
//!   what was not acknowledged), *subscribers* (counting unique
//!   (publisher, sequence) pairs) and the *flood*;
//! - the report: a summary on stdout, raw data and charts under
//!   `docs/reliability/`, and the generated section of
//!   `docs/reliability.md`.
//!
//! Every wait has a deadline, every loop ends with the phase it belongs to,
//! and every child process is killed when its handle is dropped (on an
//! error, on Ctrl-C or SIGTERM too).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use plotters::style::RGBColor;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::charts::{self, Line, Mark};
use crate::client;
use crate::mqtt;
use crate::procstat;

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// Options of `soak`.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// How long the connections are held once all are up (ramp and drain
    /// come on top): `10m`, `120s`, `1h`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Device connections held through moat (split evenly over the
    /// replicas and over worker processes).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// moat replicas in front of the one Mosquitto.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Each device publishes one QoS 1 message this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub publish_interval: Duration,
    /// Subscriber connections (through moat), each on its share of the topics.
    #[arg(long, default_value_t = 4)]
    pub subscribers: usize,
    /// A new server certificate is swapped in this often.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// How long the broker stays down during the restart.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub broker_down: Duration,
    /// Length of the flood (default: 7.5 % of --duration, within 15 s..60 s).
    #[arg(long, value_parser = parse_duration)]
    pub flood: Option<Duration>,
    /// Half-open connections held during the flood (they send nothing).
    #[arg(long, default_value_t = 5000)]
    pub half_open: usize,
    /// New garbage connections per second during the flood.
    #[arg(long, default_value_t = 300.0)]
    pub garbage_rate: f64,
    /// Slowloris clients during the flood (a ClientHello, one byte a second).
    #[arg(long, default_value_t = 10)]
    pub slowloris: usize,
    /// The "small bound": the probe's p99 (TCP + TLS + CONNECT/CONNACK)
    /// during the flood may be at most this many milliseconds.
    #[arg(long, default_value_t = 250.0)]
    pub handshake_bound_ms: f64,
    /// Devices per worker process.
    #[arg(long, default_value_t = 2500)]
    pub per_worker: usize,
    /// The moat binary. Default: $MOAT_BIN, else `moat` next to this binary.
    #[arg(long)]
    pub moat_bin: Option<PathBuf>,
    /// The report to write (its generated section is replaced); charts and
    /// raw data go to the directory of the same name without `.md`.
    /// Default: docs/reliability.md for a full-size run (at least 10,000
    /// connections for at least 10 minutes), otherwise `report.md` in the
    /// scratch directory, which is kept and named at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave docs/reliability.md alone even for a full-size run (the report
    /// goes to the scratch directory).
    #[arg(long)]
    pub no_write: bool,
    /// Write the report again from a saved `soak.json`, without running.
    #[arg(long)]
    pub report_from: Option<PathBuf>,
}

/// Parses `90s`, `10m`, `1h`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10m, 90s)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift64*: jitter and garbage bytes, nothing cryptographic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * self.unit())
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// The `q` quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How an established connection ended, from the client's side.
fn close_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset => "reset".into(),
        K::UnexpectedEof => "eof without close_notify".into(),
        K::BrokenPipe => "broken pipe".into(),
        K::TimedOut => "timed out".into(),
        _ => format!("error: {e}"),
    }
}

/// Runs `f` under `limit`, as an I/O error when it runs out.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} timed out after {limit:?}"),
        )),
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// An MQTT session over TLS, with the bytes read past the last frame.
struct Session {
    s: Tls,
    buf: Vec<u8>,
}

/// Timings of one connection attempt.
#[derive(Debug, Clone, Copy)]
struct ConnectTimes {
    /// TCP connect and TLS handshake.
    handshake: Duration,
    /// Up to the CONNACK.
    total: Duration,
}

/// Connects, completes the TLS handshake, sends CONNECT and waits for a
/// successful CONNACK, all within `limit`.
async fn mqtt_session(
    target: SocketAddr,
    cfg: &Arc<ClientConfig>,
    client_id: &str,
    keep_alive: u16,
    clean: bool,
    limit: Duration,
) -> std::io::Result<(Session, ConnectTimes)> {
    let start = Instant::now();
    let deadline = start + limit;
    let left = || deadline.saturating_duration_since(Instant::now());
    let tcp = within(left(), "TCP connect", TcpStream::connect(target)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut s = within(
        left(),
        "TLS handshake",
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await?;
    let handshake = start.elapsed();
    let frame = mqtt::connect_session(client_id, keep_alive, clean);
    within(left(), "CONNECT", async {
        s.write_all(&frame).await?;
        s.flush().await
    })
    .await?;
    let mut sess = Session { s, buf: Vec::new() };
    let f = within(left(), "CONNACK", sess.next_frame()).await?;
    let body = &sess.buf[f.body_start..f.len];
    if f.kind() != mqtt::CONNACK || body.len() < 2 || body[1] != 0 {
        return Err(std::io::Error::other(format!(
            "expected a successful CONNACK, got {:02x?}",
            &sess.buf[..f.len]
        )));
    }
    sess.buf.drain(..f.len);
    Ok((
        sess,
        ConnectTimes {
            handshake,
            total: start.elapsed(),
        },
    ))
}

impl Session {
    /// Reads until one whole frame is buffered; a clean end is an
    /// `UnexpectedEof` error named "eof".
    async fn next_frame(&mut self) -> std::io::Result<mqtt::Frame> {
        loop {
            if let Some(f) = mqtt::next_frame(&self.buf).map_err(std::io::Error::other)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Reads once into the buffer; 0 bytes is an error of kind
    /// `UnexpectedEof` with the message "eof".
    async fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 2048];
        let n = self.s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        within(Duration::from_secs(10), "write", async {
            self.s.write_all(frame).await?;
            self.s.flush().await
        })
        .await
    }

    /// Sends DISCONNECT and close_notify, then closes.
    async fn goodbye(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.s.write_all(&mqtt::DISCONNECT).await;
            let _ = self.s.shutdown().await;
        })
        .await;
    }
}

/// How the other side ended an established session ("eof" for a clean
/// close, with or without close_notify).
fn ended_kind(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof && e.to_string() == "eof" {
        "eof".into()
    } else {
        close_kind(e)
    }
}

// ---------------------------------------------------------------------------
// Worker processes: specs, events, commands
// ---------------------------------------------------------------------------

/// What a soak worker process does.
///
/// Externally tagged, like every enum here that crosses a pipe: an internally
/// tagged enum is buffered through serde's `Content`, and with serde_json's
/// `arbitrary_precision` (which the e2e package turns on, and Cargo unifies
/// across the workspace) its numbers then arrive as maps and fail to parse.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerSpec {
    /// Devices `first..first + count`: persistent sessions publishing QoS 1.
    Devices(DeviceSpec),
    /// Every subscriber: one persistent session per topic group.
    Subscribers(SubscriberSpec),
    /// The flood: half-open, garbage and slowloris connections.
    Flood(FloodSpec),
}

/// A device worker's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The moat replicas.
    pub targets: Vec<SocketAddr>,
    /// The CA to trust.
    pub ca: PathBuf,
    /// The first device's global index.
    pub first: usize,
    /// How many devices.
    pub count: usize,
    /// Topic groups (one subscriber each).
    pub groups: usize,
    /// Seconds between two publishes of one device.
    pub interval_s: f64,
    /// MQTT keep-alive, seconds.
    pub keep_alive: u16,
    /// First connections in progress at once.
    pub ramp_concurrency: usize,
}

/// The subscriber worker's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberSpec {
    /// The moat replicas.
    pub targets: Vec<SocketAddr>,
    /// The CA to trust.
    pub ca: PathBuf,
    /// Topic groups, one subscriber each.
    pub groups: usize,
    /// Devices in all (for the bookkeeping).
    pub devices: usize,
    /// MQTT keep-alive, seconds.
    pub keep_alive: u16,
}

/// The flood's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodSpec {
    /// The moat replicas.
    pub targets: Vec<SocketAddr>,
    /// Seconds.
    pub duration_s: f64,
    /// Half-open connections held.
    pub half_open: usize,
    /// New garbage connections per second.
    pub garbage_rate: f64,
    /// Garbage connections open at once, at most.
    pub garbage_concurrency: usize,
    /// Slowloris clients.
    pub slowloris: usize,
    /// The CA (for a realistic ClientHello).
    pub ca: PathBuf,
}

/// A connection closed by the other side (or found dead by the client).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Close {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// `d123` (device) or `s2` (subscriber).
    pub who: String,
    /// `eof`, `reset`, `stalled` (no PUBACK for 30 s), ...
    pub kind: String,
    /// How long the session had been established, seconds.
    pub held_s: f64,
}

/// Cumulative counts of a worker, sent every second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WStats {
    /// Sessions established now.
    pub connected: usize,
    /// Sessions established, first ones included.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Messages published for the first time.
    pub published: u64,
    /// PUBACKs received.
    pub acked: u64,
    /// PUBLISH frames sent again with DUP after a reconnection.
    pub retransmits: u64,
    /// Subscribers: PUBLISH frames received.
    pub received: u64,
    /// Subscribers: unique (device, sequence) pairs.
    pub unique: u64,
    /// Subscribers: pairs received again.
    pub dups: u64,
    /// Subscribers: payloads that were not ours.
    pub malformed: u64,
    /// Devices that have nothing left to acknowledge after `stop`.
    pub flushed: usize,
    /// Flood: half-open connections open now.
    pub half_open: usize,
    /// Closes since the previous report.
    pub closes: Vec<Close>,
    /// New connection errors since the previous report (a few).
    pub errors: Vec<String>,
}

/// Per-device accounting at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WFinal {
    /// Devices: the first global index.
    pub first: usize,
    /// Devices: messages published per device (sequences 0..n).
    pub published: Vec<u32>,
    /// Devices: messages acknowledged per device.
    pub acked: Vec<u32>,
    /// Devices: (device, sequence) never acknowledged.
    pub unacked: Vec<(u32, u32)>,
    /// Subscribers: unique sequences received per device (global index).
    pub unique: Vec<u32>,
    /// Subscribers: the highest sequence received per device, or -1.
    pub max_seq: Vec<i64>,
    /// Subscribers: (device, sequence) missing below the highest (capped).
    pub gaps: Vec<(u32, u32)>,
    /// Flood: what it did.
    pub flood: Option<FloodStats>,
}

/// What the flood did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloodStats {
    /// Seconds it ran.
    pub secs: f64,
    /// Half-open connections asked for.
    pub half_open_target: usize,
    /// Half-open connections opened (moat closes each after its handshake
    /// timeout; they are opened again).
    pub half_open_opened: u64,
    /// The most open at once.
    pub half_open_peak: usize,
    /// Closed by moat.
    pub half_open_closed_by_server: u64,
    /// How long moat held them before closing: median, seconds.
    pub half_open_hold_p50_s: f64,
    /// ... and the longest.
    pub half_open_hold_max_s: f64,
    /// Half-open connects that failed.
    pub half_open_connect_errors: u64,
    /// Garbage connections made.
    pub garbage_conns: u64,
    /// Garbage bytes sent.
    pub garbage_bytes: u64,
    /// Garbage connections moat closed (it refused the bytes).
    pub garbage_closed_by_server: u64,
    /// Garbage connections still open after 5 s (closed by the flood).
    pub garbage_timeouts: u64,
    /// Garbage connects that failed.
    pub garbage_connect_errors: u64,
    /// Slowloris sessions started.
    pub slowloris_sessions: u64,
    /// Slowloris sessions moat closed.
    pub slowloris_closed_by_server: u64,
    /// How long moat let a slowloris trickle: median, seconds.
    pub slowloris_hold_p50_s: f64,
    /// ... and the longest.
    pub slowloris_hold_max_s: f64,
    /// The most ClientHello bytes one slowloris got in.
    pub slowloris_bytes_max: u64,
    /// Length of the ClientHello trickled.
    pub client_hello_len: usize,
}

/// What a worker reports on stdout, one JSON line each (externally tagged,
/// see [`WorkerSpec`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WEvent {
    /// Every connection of the worker has had its first session.
    Up,
    Stats(WStats),
    Final(Box<WFinal>),
}

fn emit(e: &WEvent) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(e).expect("event serializes")
    );
    let _ = out.flush();
}

/// The phases a worker goes through, driven by commands on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Run,
    /// Devices: publish nothing new, get the rest acknowledged.
    Stop,
    /// Close everything and end.
    Quit,
}

/// `moat-bench soak-worker --spec JSON`.
pub fn worker_main(spec: &str) -> Result<()> {
    let spec: WorkerSpec = serde_json::from_str(spec).context("soak worker spec")?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let (final_tx, final_rx) = watch::channel(false);
    // Commands on stdin: `stop`, `final`; EOF means quit.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            match l.trim() {
                "stop" => {
                    let _ = phase_tx.send(Phase::Stop);
                }
                "final" => {
                    let _ = final_tx.send(true);
                }
                _ => {}
            }
        }
        let _ = phase_tx.send(Phase::Quit);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match spec {
            WorkerSpec::Devices(s) => devices(s, phase_rx).await,
            WorkerSpec::Subscribers(s) => subscribers(s, phase_rx, final_rx).await,
            WorkerSpec::Flood(s) => flood(s, phase_rx).await,
        }
    })
}

/// Counters shared by the sessions of one worker.
#[derive(Default)]
struct Counters {
    connected: AtomicUsize,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    retransmits: AtomicU64,
    received: AtomicU64,
    unique: AtomicU64,
    dups: AtomicU64,
    malformed: AtomicU64,
    flushed: AtomicUsize,
    up: AtomicUsize,
    half_open: AtomicUsize,
    closes: Mutex<Vec<Close>>,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn close(&self, who: String, kind: String, held: Duration) {
        eprintln!("closed by the other side: {who} ({kind}) after {held:.1?}");
        self.closes.lock().expect("lock").push(Close {
            t_ms: unix_ms(),
            who,
            kind,
            held_s: held.as_secs_f64(),
        });
    }

    fn error(&self, e: String) {
        let mut errs = self.errors.lock().expect("lock");
        if errs.len() < 5 {
            errs.push(e);
        }
    }

    fn snapshot(&self) -> WStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WStats {
            connected: self.connected.load(Ordering::Relaxed),
            connects: r(&self.connects),
            connect_failures: r(&self.connect_failures),
            published: r(&self.published),
            acked: r(&self.acked),
            retransmits: r(&self.retransmits),
            received: r(&self.received),
            unique: r(&self.unique),
            dups: r(&self.dups),
            malformed: r(&self.malformed),
            flushed: self.flushed.load(Ordering::Relaxed),
            half_open: self.half_open.load(Ordering::Relaxed),
            closes: std::mem::take(&mut *self.closes.lock().expect("lock")),
            errors: std::mem::take(&mut *self.errors.lock().expect("lock")),
        }
    }
}

/// Reports the counters every second until `done` turns true.
fn spawn_reporter(c: Arc<Counters>, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            emit(&WEvent::Stats(c.snapshot()));
            if done.load(Ordering::Relaxed) {
                break;
            }
        }
    })
}

/// Sleeps `d`, or less when the phase turns to Quit; true when it did.
async fn nap(d: Duration, phase: &mut watch::Receiver<Phase>) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        if *phase.borrow() == Phase::Quit {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return false,
            r = phase.changed() => if r.is_err() { return true },
        }
    }
}

// ---------------------------------------------------------------------------
// Role: devices
// ---------------------------------------------------------------------------

/// No PUBACK for this long: the session is taken for dead.
const STALL: Duration = Duration::from_secs(30);
/// A whole connection attempt (TCP, TLS, CONNECT, CONNACK): longer than
/// moat's backend connect timeout (5 s) so that a device waiting for a
/// restarting broker is not the one giving up.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

struct Device {
    /// Its number in this worker, and in the whole soak.
    local: usize,
    d: usize,
    target: SocketAddr,
    topic: String,
    id: String,
    next_seq: u32,
    acked: u32,
    /// (packet id, sequence, last sent).
    unacked: VecDeque<(u16, u32, Instant)>,
    next_pid: u16,
    /// When the next message is due.
    next_pub: tokio::time::Instant,
    /// Nothing was left to acknowledge after `stop` (reported once).
    flushed: bool,
}

impl Device {
    fn payload(&self, seq: u32) -> Vec<u8> {
        format!("{}:{seq}", self.d).into_bytes()
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            let p = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.unacked.iter().any(|u| u.0 == p) {
                return p;
            }
        }
    }
}

/// How a session ended.
enum End {
    Quit,
    Closed(String),
}

/// Each device's accounting (published, acknowledged, sequences not
/// acknowledged), indexed by its local number; written when the device has
/// nothing left to acknowledge after `stop`, and when it ends.
type Book = Mutex<Vec<(u32, u32, Vec<u32>)>>;

fn book_device(b: &Book, dev: &Device) {
    b.lock().expect("lock")[dev.local] = (
        dev.next_seq,
        dev.acked,
        dev.unacked.iter().map(|u| u.1).collect(),
    );
}

fn final_of(spec: &DeviceSpec, b: &Book) -> WFinal {
    let b = b.lock().expect("lock");
    WFinal {
        first: spec.first,
        published: b.iter().map(|e| e.0).collect(),
        acked: b.iter().map(|e| e.1).collect(),
        unacked: b
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.2.iter().map(move |&s| ((spec.first + i) as u32, s)))
            .collect(),
        ..WFinal::default()
    }
}

async fn devices(spec: DeviceSpec, phase: watch::Receiver<Phase>) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let c = Arc::new(Counters::default());
    let book: Arc<Book> = Arc::new(Mutex::new(vec![Default::default(); spec.count]));
    let ramp = Arc::new(tokio::sync::Semaphore::new(spec.ramp_concurrency.max(1)));
    let spec = Arc::new(spec);
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for local in 0..spec.count {
        let (spec, cfg, c, book, ramp, phase) = (
            spec.clone(),
            cfg.clone(),
            c.clone(),
            book.clone(),
            ramp.clone(),
            phase.clone(),
        );
        tasks.spawn(async move { device(local, spec, cfg, c, book, ramp, phase).await });
    }
    // `up` once every device has had its first session.
    {
        let c = c.clone();
        let count = spec.count;
        let mut phase = phase.clone();
        tokio::spawn(async move {
            while c.up.load(Ordering::Relaxed) < count {
                if nap(Duration::from_millis(50), &mut phase).await {
                    return;
                }
            }
            emit(&WEvent::Up);
        });
    }
    let reporter = spawn_reporter(c.clone(), done.clone());
    // The final accounting goes out at `stop` once every device is flushed
    // (the counts are exact then), or when the devices end on quit.
    let mut reported_final = false;
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = tokio::time::sleep(Duration::from_millis(200)), if !reported_final => {
                if *phase.borrow() == Phase::Stop
                    && c.flushed.load(Ordering::Relaxed) >= spec.count
                {
                    emit(&WEvent::Stats(c.snapshot()));
                    emit(&WEvent::Final(Box::new(final_of(&spec, &book))));
                    reported_final = true;
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    if !reported_final {
        emit(&WEvent::Final(Box::new(final_of(&spec, &book))));
    }
    Ok(())
}

async fn device(
    local: usize,
    spec: Arc<DeviceSpec>,
    cfg: Arc<ClientConfig>,
    c: Arc<Counters>,
    book: Arc<Book>,
    ramp: Arc<tokio::sync::Semaphore>,
    mut phase: watch::Receiver<Phase>,
) {
    let d = spec.first + local;
    let groups = spec.groups.max(1);
    let mut rng = Rng::new(d as u64);
    let interval = Duration::from_secs_f64(spec.interval_s);
    let mut dev = Device {
        local,
        d,
        target: spec.targets[(d / groups) % spec.targets.len()],
        topic: format!("soak/{}/{d}", d % groups),
        id: format!("soak-d{d}"),
        next_seq: 0,
        acked: 0,
        unacked: VecDeque::new(),
        next_pid: 1,
        next_pub: tokio::time::Instant::now() + interval.mul_f64(rng.unit()),
        flushed: false,
    };
    let mut first = true;
    loop {
        if *phase.borrow() == Phase::Quit {
            break;
        }
        let permit = if first {
            ramp.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let attempt = mqtt_session(
            dev.target,
            &cfg,
            &dev.id,
            spec.keep_alive,
            false,
            CONNECT_LIMIT,
        )
        .await;
        drop(permit);
        let mut sess = match attempt {
            Ok((s, _)) => s,
            Err(e) => {
                c.connect_failures.fetch_add(1, Ordering::Relaxed);
                c.error(format!("d{d}: {e}"));
                if nap(rng.between(0.5, 3.0), &mut phase).await {
                    break;
                }
                continue;
            }
        };
        if first {
            first = false;
            c.up.fetch_add(1, Ordering::Relaxed);
        }
        c.connects.fetch_add(1, Ordering::Relaxed);
        c.connected.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        let end = device_session(&mut dev, &mut sess, &spec, &c, &book, &mut phase).await;
        c.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            End::Quit => {
                sess.goodbye().await;
                break;
            }
            End::Closed(kind) => {
                c.close(format!("d{d}"), kind, since.elapsed());
                if nap(rng.between(0.2, 2.0), &mut phase).await {
                    break;
                }
            }
        }
    }
    book_device(&book, &dev);
}

/// One established session of a device, until it ends or the worker quits.
async fn device_session(
    dev: &mut Device,
    sess: &mut Session,
    spec: &DeviceSpec,
    c: &Counters,
    book: &Book,
    phase: &mut watch::Receiver<Phase>,
) -> End {
    let interval = Duration::from_secs_f64(spec.interval_s);
    // Whatever was not acknowledged goes again, with DUP and its packet id.
    let resend: Vec<(u16, u32)> = dev.unacked.iter().map(|u| (u.0, u.1)).collect();
    for (pid, seq) in resend {
        let f = mqtt::publish_qos1(&dev.topic, pid, &dev.payload(seq), true);
        if let Err(e) = sess.send(&f).await {
            return End::Closed(close_kind(&e));
        }
        c.retransmits.fetch_add(1, Ordering::Relaxed);
    }
    let now = Instant::now();
    for u in dev.unacked.iter_mut() {
        u.2 = now;
    }
    let ping_every = Duration::from_secs(u64::from(spec.keep_alive.max(2)) / 2);
    let mut last_send = tokio::time::Instant::now();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        let p = *phase.borrow();
        if p == Phase::Quit {
            return End::Quit;
        }
        if p == Phase::Stop && dev.unacked.is_empty() && !dev.flushed {
            dev.flushed = true;
            book_device(book, dev);
            c.flushed.fetch_add(1, Ordering::Relaxed);
        }
        let stall_at = dev
            .unacked
            .front()
            .map_or(far, |u| tokio::time::Instant::from_std(u.2 + STALL));
        let publishing = p == Phase::Run;
        tokio::select! {
            r = sess.fill() => {
                if let Err(e) = r {
                    return End::Closed(ended_kind(&e));
                }
                loop {
                    let f = match mqtt::next_frame(&sess.buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => return End::Closed(format!("malformed frame from the broker: {e}")),
                    };
                    if f.kind() == mqtt::PUBACK {
                        if let Some(pid) = mqtt::packet_id(&sess.buf, f) {
                            if let Some(i) = dev.unacked.iter().position(|u| u.0 == pid) {
                                dev.unacked.remove(i);
                                dev.acked += 1;
                                c.acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    sess.buf.drain(..f.len);
                }
            }
            _ = tokio::time::sleep_until(dev.next_pub), if publishing => {
                let seq = dev.next_seq;
                let pid = dev.alloc_pid();
                let f = mqtt::publish_qos1(&dev.topic, pid, &dev.payload(seq), false);
                dev.next_seq += 1;
                dev.unacked.push_back((pid, seq, Instant::now()));
                c.published.fetch_add(1, Ordering::Relaxed);
                dev.next_pub += interval;
                let now = tokio::time::Instant::now();
                if dev.next_pub < now {
                    dev.next_pub = now + interval;
                }
                if let Err(e) = sess.send(&f).await {
                    return End::Closed(close_kind(&e));
                }
                last_send = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(last_send + ping_every) => {
                if let Err(e) = sess.send(&mqtt::PINGREQ).await {
                    return End::Closed(close_kind(&e));
                }
                last_send = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(stall_at) => {
                return End::Closed("stalled (no PUBACK for 30 s)".into());
            }
            r = phase.changed() => {
                if r.is_err() {
                    return End::Quit;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Role: subscribers
// ---------------------------------------------------------------------------

/// Which (device, sequence) pairs arrived: one bit set per device.
struct Seen {
    bits: Vec<Vec<u64>>,
}

impl Seen {
    /// Records a pair: `Some(true)` when new, `Some(false)` for a duplicate,
    /// `None` for a device that does not exist.
    fn record(&mut self, d: usize, seq: u32) -> Option<bool> {
        let set = self.bits.get_mut(d)?;
        let (w, b) = (seq as usize / 64, seq % 64);
        if set.len() <= w {
            set.resize(w + 1, 0);
        }
        let new = set[w] & (1 << b) == 0;
        set[w] |= 1 << b;
        Some(new)
    }

    fn final_report(&self) -> WFinal {
        let mut fin = WFinal::default();
        for (d, set) in self.bits.iter().enumerate() {
            let unique: u32 = set.iter().map(|w| w.count_ones()).sum();
            let max = set
                .iter()
                .enumerate()
                .rev()
                .find(|(_, w)| **w != 0)
                .map_or(-1, |(i, w)| {
                    (i * 64 + 63 - w.leading_zeros() as usize) as i64
                });
            fin.unique.push(unique);
            fin.max_seq.push(max);
            for seq in 0..max.max(0) as u32 {
                if set[seq as usize / 64] & (1 << (seq % 64)) == 0 && fin.gaps.len() < 1000 {
                    fin.gaps.push((d as u32, seq));
                }
            }
        }
        fin
    }
}

/// Parses a payload `device:sequence`.
fn parse_payload(p: &[u8]) -> Option<(usize, u32)> {
    let s = std::str::from_utf8(p).ok()?;
    let (d, seq) = s.split_once(':')?;
    Some((d.parse().ok()?, seq.parse().ok()?))
}

async fn subscribers(
    spec: SubscriberSpec,
    phase: watch::Receiver<Phase>,
    mut final_rx: watch::Receiver<bool>,
) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let c = Arc::new(Counters::default());
    let seen = Arc::new(Mutex::new(Seen {
        bits: vec![Vec::new(); spec.devices],
    }));
    let spec = Arc::new(spec);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..spec.groups {
        let (spec, cfg, c, seen, phase) = (
            spec.clone(),
            cfg.clone(),
            c.clone(),
            seen.clone(),
            phase.clone(),
        );
        tasks.spawn(async move { subscriber(k, spec, cfg, c, seen, phase).await });
    }
    let done = Arc::new(AtomicBool::new(false));
    let reporter = spawn_reporter(c.clone(), done.clone());
    let mut up_sent = false;
    let mut final_sent = false;
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            r = final_rx.changed(), if !final_sent => {
                if r.is_ok() && *final_rx.borrow_and_update() {
                    emit(&WEvent::Stats(c.snapshot()));
                    let fin = seen.lock().expect("lock").final_report();
                    emit(&WEvent::Final(Box::new(fin)));
                    final_sent = true;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if !up_sent => {
                if c.up.load(Ordering::Relaxed) >= spec.groups {
                    emit(&WEvent::Up);
                    up_sent = true;
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    Ok(())
}

async fn subscriber(
    k: usize,
    spec: Arc<SubscriberSpec>,
    cfg: Arc<ClientConfig>,
    c: Arc<Counters>,
    seen: Arc<Mutex<Seen>>,
    mut phase: watch::Receiver<Phase>,
) {
    let target = spec.targets[k % spec.targets.len()];
    let id = format!("soak-s{k}");
    let filter = format!("soak/{k}/#");
    let filter_base = format!("soak/{k}/");
    let mut rng = Rng::new(1_000_000 + k as u64);
    let mut first = true;
    let ping_every = Duration::from_secs(u64::from(spec.keep_alive.max(2)) / 2);
    loop {
        if *phase.borrow() == Phase::Quit {
            return;
        }
        let mut sess =
            match mqtt_session(target, &cfg, &id, spec.keep_alive, false, CONNECT_LIMIT).await {
                Ok((s, _)) => s,
                Err(e) => {
                    c.connect_failures.fetch_add(1, Ordering::Relaxed);
                    c.error(format!("s{k}: {e}"));
                    if nap(rng.between(0.5, 3.0), &mut phase).await {
                        return;
                    }
                    continue;
                }
            };
        // The session keeps the subscription; subscribing again is harmless.
        if let Err(e) = sess.send(&mqtt::subscribe(1, &filter, 1)).await {
            c.error(format!("s{k}: subscribe: {e}"));
            continue;
        }
        if first {
            first = false;
            c.up.fetch_add(1, Ordering::Relaxed);
        }
        c.connects.fetch_add(1, Ordering::Relaxed);
        c.connected.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        let mut last_send = tokio::time::Instant::now();
        let end = loop {
            if *phase.borrow() == Phase::Quit {
                break End::Quit;
            }
            tokio::select! {
                r = sess.fill() => {
                    if let Err(e) = r {
                        break End::Closed(ended_kind(&e));
                    }
                    let mut acks: Vec<u8> = Vec::new();
                    let mut bad = None;
                    loop {
                        let f = match mqtt::next_frame(&sess.buf) {
                            Ok(Some(f)) => f,
                            Ok(None) => break,
                            Err(e) => {
                                bad = Some(format!("malformed frame from the broker: {e}"));
                                break;
                            }
                        };
                        match f.kind() {
                            mqtt::PUBLISH => {
                                let Some(p) = mqtt::parse_publish(&sess.buf, f) else {
                                    bad = Some("malformed PUBLISH".into());
                                    break;
                                };
                                c.received.fetch_add(1, Ordering::Relaxed);
                                // The payload names the device; so must the topic.
                                match parse_payload(p.payload)
                                    .filter(|(d, _)| p.topic == format!("{filter_base}{d}").as_bytes())
                                    .and_then(|(d, seq)| seen.lock().expect("lock").record(d, seq))
                                {
                                    Some(true) => c.unique.fetch_add(1, Ordering::Relaxed),
                                    Some(false) => c.dups.fetch_add(1, Ordering::Relaxed),
                                    None => c.malformed.fetch_add(1, Ordering::Relaxed),
                                };
                                if let Some(pid) = p.packet_id {
                                    acks.extend_from_slice(&mqtt::puback(pid));
                                }
                            }
                            mqtt::SUBACK => {
                                let rc = sess.buf.get(f.body_start + 2).copied();
                                if rc == Some(0x80) {
                                    bad = Some("subscription refused".into());
                                    break;
                                }
                            }
                            _ => {}
                        }
                        sess.buf.drain(..f.len);
                    }
                    if let Some(b) = bad {
                        break End::Closed(b);
                    }
                    if !acks.is_empty() {
                        if let Err(e) = sess.send(&acks).await {
                            break End::Closed(close_kind(&e));
                        }
                        last_send = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(last_send + ping_every) => {
                    if let Err(e) = sess.send(&mqtt::PINGREQ).await {
                        break End::Closed(close_kind(&e));
                    }
                    last_send = tokio::time::Instant::now();
                }
                r = phase.changed() => if r.is_err() { break End::Quit },
            }
        };
        c.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            End::Quit => {
                sess.goodbye().await;
                return;
            }
            End::Closed(kind) => {
                c.close(format!("s{k}"), kind, since.elapsed());
                if nap(rng.between(0.2, 1.0), &mut phase).await {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Role: flood
// ---------------------------------------------------------------------------

/// The first flight of a TLS client (its ClientHello), from rustls.
fn client_hello(cfg: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut out = Vec::new();
    if let Ok(mut conn) = rustls::ClientConnection::new(cfg.clone(), name) {
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
    }
    out
}

/// A socket bound to a loopback source address (all of 127/8 is local), so
/// that the flood does not use up the ephemeral ports of 127.0.0.1.
async fn connect_from(src: [u8; 4], target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((src, 0)))?;
    within(Duration::from_secs(5), "connect", sock.connect(target)).await
}

#[derive(Default)]
struct FloodCounters {
    half_open_opened: AtomicU64,
    half_open_peak: AtomicUsize,
    half_open_closed: AtomicU64,
    half_open_errors: AtomicU64,
    garbage_conns: AtomicU64,
    garbage_bytes: AtomicU64,
    garbage_closed: AtomicU64,
    garbage_timeouts: AtomicU64,
    garbage_errors: AtomicU64,
    slow_sessions: AtomicU64,
    slow_closed: AtomicU64,
    slow_bytes_max: AtomicU64,
    half_open_holds: Mutex<Vec<f64>>,
    slow_holds: Mutex<Vec<f64>>,
}

fn p50_max(v: &Mutex<Vec<f64>>) -> (f64, f64) {
    let mut v = v.lock().expect("lock").clone();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    (quantile(&v, 0.5), v[v.len() - 1])
}

async fn flood(spec: FloodSpec, phase: watch::Receiver<Phase>) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let hello = client_hello(&cfg);
    let started = Instant::now();
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(spec.duration_s);
    let c = Arc::new(Counters::default());
    let f = Arc::new(FloodCounters::default());
    let targets = Arc::new(spec.targets.clone());
    let done = Arc::new(AtomicBool::new(false));
    let reporter = spawn_reporter(c.clone(), done.clone());
    let mut tasks = tokio::task::JoinSet::new();

    // Half-open: connect and say nothing; when moat closes one (its
    // handshake timeout), open it again.
    let stagger = Duration::from_secs(2).as_secs_f64() / spec.half_open.max(1) as f64;
    for i in 0..spec.half_open {
        let (c, f, targets, mut phase) = (c.clone(), f.clone(), targets.clone(), phase.clone());
        tasks.spawn(async move {
            if nap(Duration::from_secs_f64(stagger * i as f64), &mut phase).await {
                return;
            }
            let src = [127, 0, 1, 1 + (i % 50) as u8];
            let target = targets[i % targets.len()];
            while tokio::time::Instant::now() < end {
                let mut s = match connect_from(src, target).await {
                    Ok(s) => s,
                    Err(_) => {
                        f.half_open_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                f.half_open_opened.fetch_add(1, Ordering::Relaxed);
                let open = c.half_open.fetch_add(1, Ordering::Relaxed) + 1;
                f.half_open_peak.fetch_max(open, Ordering::Relaxed);
                let t = Instant::now();
                let mut b = [0u8; 64];
                let closed = tokio::select! {
                    _ = s.read(&mut b) => true,
                    _ = tokio::time::sleep_until(end) => false,
                };
                c.half_open.fetch_sub(1, Ordering::Relaxed);
                if closed {
                    f.half_open_closed.fetch_add(1, Ordering::Relaxed);
                    f.half_open_holds
                        .lock()
                        .expect("lock")
                        .push(t.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }

    // Slowloris: a real ClientHello, one byte a second.
    for i in 0..spec.slowloris {
        let (f, targets, hello) = (f.clone(), targets.clone(), hello.clone());
        tasks.spawn(async move {
            let target = targets[i % targets.len()];
            while tokio::time::Instant::now() < end {
                let Ok(s) = connect_from([127, 0, 3, 1], target).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                f.slow_sessions.fetch_add(1, Ordering::Relaxed);
                let (mut r, mut w) = s.into_split();
                let t = Instant::now();
                let mut sent = 0u64;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut b = [0u8; 256];
                let closed = loop {
                    tokio::select! {
                        _ = r.read(&mut b) => break true,
                        _ = tick.tick() => {
                            let Some(byte) = hello.get(sent as usize) else { break false };
                            if w.write_all(&[*byte]).await.is_err() {
                                break true;
                            }
                            sent += 1;
                        }
                        _ = tokio::time::sleep_until(end) => break false,
                    }
                };
                f.slow_bytes_max.fetch_max(sent, Ordering::Relaxed);
                if closed {
                    f.slow_closed.fetch_add(1, Ordering::Relaxed);
                    f.slow_holds
                        .lock()
                        .expect("lock")
                        .push(t.elapsed().as_secs_f64());
                }
            }
        });
    }

    // Garbage: random bytes on new connections, at a steady rate.
    {
        let (f, targets) = (f.clone(), targets.clone());
        let rate = spec.garbage_rate.max(0.0);
        let limit = Arc::new(tokio::sync::Semaphore::new(spec.garbage_concurrency.max(1)));
        tasks.spawn(async move {
            let mut rng = Rng::new(7);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut tokens = 0.0_f64;
            let mut n = 0usize;
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                tokens = (tokens + rate * 0.01).min(rate * 0.1 + 1.0);
                while tokens >= 1.0 {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        break;
                    };
                    tokens -= 1.0;
                    n += 1;
                    let len = 16 + (rng.next() % 1500) as usize;
                    let mut junk = vec![0u8; len];
                    rng.fill(&mut junk);
                    let (f, target) = (f.clone(), targets[n % targets.len()]);
                    let src = [127, 0, 2, 1 + (n % 50) as u8];
                    tokio::spawn(async move {
                        let _permit = permit;
                        let mut s = match connect_from(src, target).await {
                            Ok(s) => s,
                            Err(_) => {
                                f.garbage_errors.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        };
                        f.garbage_conns.fetch_add(1, Ordering::Relaxed);
                        if s.write_all(&junk).await.is_ok() {
                            f.garbage_bytes.fetch_add(len as u64, Ordering::Relaxed);
                        }
                        let mut b = [0u8; 512];
                        let r = tokio::time::timeout(Duration::from_secs(5), async {
                            loop {
                                match s.read(&mut b).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(_) => {}
                                }
                            }
                        })
                        .await;
                        match r {
                            Ok(()) => f.garbage_closed.fetch_add(1, Ordering::Relaxed),
                            Err(_) => f.garbage_timeouts.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
            }
            // Let the last ones finish (each is bounded by 5 s + 5 s).
            let _ = tokio::time::timeout(
                Duration::from_secs(12),
                limit.acquire_many(spec.garbage_concurrency.max(1) as u32),
            )
            .await;
        });
    }

    let mut phase_w = phase.clone();
    let quit = tokio::select! {
        _ = tokio::time::sleep_until(end) => false,
        _ = async { while !nap(Duration::from_secs(3600), &mut phase_w).await {} } => true,
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let (hp50, hmax) = p50_max(&f.half_open_holds);
    let (sp50, smax) = p50_max(&f.slow_holds);
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let stats = FloodStats {
        secs: started.elapsed().as_secs_f64(),
        half_open_target: spec.half_open,
        half_open_opened: r(&f.half_open_opened),
        half_open_peak: f.half_open_peak.load(Ordering::Relaxed),
        half_open_closed_by_server: r(&f.half_open_closed),
        half_open_hold_p50_s: hp50,
        half_open_hold_max_s: hmax,
        half_open_connect_errors: r(&f.half_open_errors),
        garbage_conns: r(&f.garbage_conns),
        garbage_bytes: r(&f.garbage_bytes),
        garbage_closed_by_server: r(&f.garbage_closed),
        garbage_timeouts: r(&f.garbage_timeouts),
        garbage_connect_errors: r(&f.garbage_errors),
        slowloris_sessions: r(&f.slow_sessions),
        slowloris_closed_by_server: r(&f.slow_closed),
        slowloris_hold_p50_s: sp50,
        slowloris_hold_max_s: smax,
        slowloris_bytes_max: f.slow_bytes_max.load(Ordering::Relaxed),
        client_hello_len: hello.len(),
    };
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    emit(&WEvent::Final(Box::new(WFinal {
        flood: Some(stats),
        ..WFinal::default()
    })));
    if quit {
        bail!("interrupted");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Orchestrator: the PKI whose CA stays in memory
// ---------------------------------------------------------------------------

/// The test CA, and the server certificate it renews.
struct SoakPki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    serial: u64,
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

impl SoakPki {
    fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "moat soak CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem())?;
        let mut pki = Self {
            ca_params,
            ca_key,
            ca_pem,
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            serial: 0,
        };
        pki.renew()?;
        Ok(pki)
    }

    /// Issues a new server certificate with a new key and swaps both into
    /// place the way a renewal does: written next to the live files, then
    /// renamed over them (the key first). Returns the certificate's DER.
    fn renew(&mut self) -> Result<Vec<u8>> {
        self.serial += 1;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(SerialNumber::from(1000 + self.serial));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        let tmp_key = self.key.with_extension("key.new");
        let tmp_cert = self.cert.with_extension("pem.new");
        write_private(&tmp_key, &key.serialize_pem())?;
        std::fs::write(&tmp_cert, cert.pem())?;
        std::fs::rename(&tmp_key, &self.key)?;
        std::fs::rename(&tmp_cert, &self.cert)?;
        Ok(cert.der().to_vec())
    }
}

// ---------------------------------------------------------------------------
// Orchestrator: child processes
// ---------------------------------------------------------------------------

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A started program (moat, Mosquitto), killed when dropped.
struct Managed {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Managed {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Self> {
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name} ({cmd:?})"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`; the exit status and whether it
    /// had to be killed.
    async fn terminate(&mut self, grace: Duration) -> (Option<std::process::ExitStatus>, bool) {
        if let Some(s) = self.exited() {
            return (Some(s), false);
        }
        signal(self.pid(), "TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Some(s) = self.exited() {
                return (Some(s), false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        (self.child.wait().ok(), true)
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the orchestrator knows of its workers, updated by one reader
/// thread per worker.
#[derive(Default)]
struct Live {
    stats: BTreeMap<String, WStats>,
    /// Workers whose connections are all up.
    ups: BTreeSet<String>,
    finals: BTreeMap<String, WFinal>,
    closes: Vec<Close>,
    errors: Vec<String>,
}

impl Live {
    fn sum(&self, prefix: &str, f: impl Fn(&WStats) -> u64) -> u64 {
        self.stats
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, s)| f(s))
            .sum()
    }
}

/// A worker process, killed when dropped.
struct WorkerHandle {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl WorkerHandle {
    fn spawn(
        exe: &Path,
        name: &str,
        spec: &WorkerSpec,
        log: &Path,
        live: Arc<Mutex<Live>>,
    ) -> Result<Self> {
        let err = std::fs::File::create(log)?;
        let mut child = Command::new(exe)
            .arg("soak-worker")
            .arg("--spec")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("start the {name} worker"))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let n = name.to_string();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                let Ok(ev) = serde_json::from_str::<WEvent>(&l) else {
                    eprintln!("soak: {n} said {l:?}");
                    continue;
                };
                let mut live = live.lock().expect("lock");
                match ev {
                    WEvent::Up => {
                        live.ups.insert(n.clone());
                    }
                    WEvent::Stats(mut s) => {
                        let closes = std::mem::take(&mut s.closes);
                        live.closes.extend(closes);
                        let errs = std::mem::take(&mut s.errors);
                        for e in errs {
                            if live.errors.len() < 40 {
                                live.errors.push(e);
                            }
                        }
                        live.stats.insert(n.clone(), s);
                    }
                    WEvent::Final(f) => {
                        live.finals.insert(n.clone(), *f);
                    }
                }
            }
        });
        Ok(Self {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
        })
    }

    fn send(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    /// Closes stdin (the worker closes its connections and ends), then
    /// waits for it, killing it after `grace`.
    async fn quit(&mut self, grace: Duration) {
        self.stdin.take();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "soak: the {} worker did not end in {grace:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (free a moment ago).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `addr` accepts TCP connections.
async fn wait_listening(addr: SocketAddr, p: &mut Managed, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = p.exited() {
            bail!("{} exited ({s}); its output:\n{}", p.name, p.log_tail(20));
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{} did not listen on {addr}: {}", p.name, p.log_tail(20));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Mosquitto's configuration: persistent sessions saved in `dir` (on
/// SIGTERM), no connection limit, no per-client queue limit.
fn mosquitto_config(dir: &Path, port: u16) -> String {
    format!(
        "{user}listener {port} 127.0.0.1\n\
         max_connections -1\n\
         allow_anonymous true\n\
         persistence true\n\
         persistence_location {dir}/\n\
         persistence_file mosquitto.db\n\
         autosave_interval 0\n\
         max_queued_messages 0\n\
         max_inflight_messages 20\n\
         set_tcp_nodelay true\n\
         log_dest file {dir}/mosquitto.log\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n",
        user = if running_as_root() { "user root\n" } else { "" },
        dir = dir.display(),
    )
}

async fn start_mosquitto(dir: &Path, port: u16, run: usize) -> Result<Managed> {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, mosquitto_config(dir, port))?;
    let bin = crate::peers::find(&["mosquitto"]).context("mosquitto is not installed")?;
    let mut p = Managed::spawn(
        "mosquitto",
        Command::new(bin).arg("-c").arg(&conf),
        dir.join(format!("mosquitto-{run}.out")),
    )?;
    wait_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &mut p,
        Duration::from_secs(30),
    )
    .await?;
    Ok(p)
}

/// One moat replica's configuration. The per-address limits are off: every
/// client of this test comes from 127.0.0.0/8 (see docs/reliability.md).
fn moat_config(port: u16, admin: u16, backend: u16, pki: &SoakPki, max_conns: usize) -> String {
    format!(
        r#"log:
  level: "warn,moat::reload=info"
admin:
  listen: 127.0.0.1:{admin}
shutdown:
  drain_timeout: 2s
listeners:
  - name: soak
    listen: 127.0.0.1:{port}
    backend: 127.0.0.1:{backend}
    tls:
      certificates:
        - cert: {cert}
          key: {key}
    max_connections: {max_conns}
    limits:
      per_ip_connections: 0
      per_ip_rate: 0
"#,
        cert = pki.cert.display(),
        key = pki.key.display(),
    )
}

/// A moat replica.
struct Replica {
    proc: Managed,
    addr: SocketAddr,
    admin: SocketAddr,
}

async fn start_moat(
    bin: &Path,
    dir: &Path,
    i: usize,
    backend: u16,
    pki: &SoakPki,
    cfg: &Arc<ClientConfig>,
    max_conns: usize,
) -> Result<Replica> {
    let port = free_port()?;
    let admin = free_port()?;
    let conf = dir.join(format!("moat-{i}.yaml"));
    std::fs::write(&conf, moat_config(port, admin, backend, pki, max_conns))?;
    let mut proc = Managed::spawn(
        &format!("moat #{i}"),
        Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&conf)
            .current_dir(dir),
        dir.join(format!("moat-{i}.log")),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = proc.exited() {
            bail!("moat #{i} exited ({s}); its output:\n{}", proc.log_tail(20));
        }
        let ok = tokio::time::timeout(Duration::from_secs(2), client::connect(addr, cfg)).await;
        if let Ok(Ok(s)) = ok {
            client::close(s).await;
            break;
        }
        if Instant::now() > until {
            bail!(
                "moat #{i} did not complete a handshake: {}",
                proc.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Replica {
        proc,
        addr,
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
    })
}

// ---------------------------------------------------------------------------
// Orchestrator: moat's metrics
// ---------------------------------------------------------------------------

/// GET /metrics from a moat admin endpoint.
async fn scrape(admin: SocketAddr) -> Result<String> {
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(admin).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .map_err(|_| anyhow!("GET /metrics from {admin} timed out"))??;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .context("no HTTP body")?;
    Ok(body)
}

/// Labels and value of each sample of metric `name`.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut map = BTreeMap::new();
        let mut l: &'a str = labels;
        while let Some((k, r)) = l.split_once("=\"") {
            let Some(end) = r.find('"') else { break };
            map.insert(k.trim_start_matches(',').to_string(), r[..end].to_string());
            l = &r[end + 1..];
        }
        out.push((map, v));
    }
    out
}

/// The sum of the samples of `name` whose labels include `want`.
fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `name` summed by the value of `label`, among samples matching `want`.
fn by_label(text: &str, name: &str, label: &str, want: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (l, v) in samples(text, name) {
        if want
            .iter()
            .all(|(k, w)| l.get(*k).map(String::as_str) == Some(*w))
        {
            *out.entry(l.get(label).cloned().unwrap_or_default())
                .or_insert(0.0) += v;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Orchestrator: the plan and the recorded run
// ---------------------------------------------------------------------------

/// Open files kept free in each process besides its connections.
const FD_RESERVE: u64 = 200;
/// Probes in flight at once, at most.
const PROBES_IN_FLIGHT: usize = 50;
/// Garbage connections open at once, at most.
const GARBAGE_CONCURRENCY: usize = 200;
/// Closes this long after the broker is back still count as the restart's.
const RESTART_GRACE_S: f64 = 30.0;

/// Counts and times of one soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Device connections.
    pub connections: usize,
    /// moat replicas.
    pub replicas: usize,
    /// Devices per replica (at most).
    pub per_replica: usize,
    /// Device worker processes.
    pub workers: usize,
    /// Devices per worker process (at most).
    pub per_worker: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Seconds of the soak once every connection is up.
    pub duration_s: f64,
    /// Seconds between two publishes of one device.
    pub publish_interval_s: f64,
    /// Seconds between two certificate renewals.
    pub reload_interval_s: f64,
    /// Broker restart, seconds after the soak starts.
    pub restart_at_s: f64,
    /// Seconds the broker stays down.
    pub broker_down_s: f64,
    /// Flood start, seconds after the soak starts.
    pub flood_at_s: f64,
    /// Flood length, seconds.
    pub flood_s: f64,
    /// Half-open connections during the flood.
    pub half_open: usize,
    /// Garbage connections per second during the flood.
    pub garbage_rate: f64,
    /// Slowloris clients during the flood.
    pub slowloris: usize,
    /// The probe's p99 bound during the flood, ms.
    pub handshake_bound_ms: f64,
    /// moat's `max_connections` per replica.
    pub max_connections: usize,
    /// The open-file limit of every process.
    pub nofile: u64,
    /// MQTT keep-alive of devices and subscribers, seconds.
    pub keep_alive: u16,
}

impl Plan {
    fn new(a: &SoakArgs, nofile: u64) -> Result<Self> {
        let d = a.duration.as_secs_f64();
        if d < 10.0 {
            bail!("--duration must be at least 10 s (the timeline needs room for a restart and a flood)");
        }
        if a.connections == 0 || a.replicas == 0 || a.subscribers == 0 {
            bail!("--connections, --replicas and --subscribers must be positive");
        }
        if a.per_worker == 0 || a.per_worker > crate::worker::PER_WORKER {
            bail!(
                "--per-worker must be between 1 and {}",
                crate::worker::PER_WORKER
            );
        }
        let r = a.replicas;
        let per_replica = a.connections.div_ceil(r);
        let flood_s = a
            .flood
            .map_or((d * 0.075).clamp(15.0, 60.0), |f| f.as_secs_f64());
        let max_connections = (nofile / 2).saturating_sub(FD_RESERVE) as usize;
        // Everything one replica may hold at once: devices and subscribers
        // (two descriptors each), probes, and its share of the flood (one).
        let relayed = per_replica + a.subscribers.div_ceil(r) + PROBES_IN_FLIGHT;
        let flood = a.half_open.div_ceil(r) + GARBAGE_CONCURRENCY.div_ceil(r) + a.slowloris;
        let fds = 2 * relayed + flood;
        if fds as u64 + FD_RESERVE > nofile || relayed + flood > max_connections {
            bail!(
                "{per_replica} devices per replica plus the flood need about {fds} descriptors in one moat process, over the open-file limit of {nofile}: use more --replicas"
            );
        }
        if (a.connections + a.subscribers + PROBES_IN_FLIGHT) as u64 + FD_RESERVE > nofile {
            bail!(
                "Mosquitto cannot hold {} connections under the open-file limit of {nofile}",
                a.connections
            );
        }
        let interval = a.publish_interval.as_secs_f64().max(0.1);
        Ok(Self {
            connections: a.connections,
            replicas: r,
            per_replica,
            workers: a.connections.div_ceil(a.per_worker),
            per_worker: a.per_worker,
            subscribers: a.subscribers,
            duration_s: d,
            publish_interval_s: interval,
            reload_interval_s: a.reload_interval.as_secs_f64().max(1.0),
            restart_at_s: (d * 0.3).round(),
            broker_down_s: a.broker_down.as_secs_f64(),
            flood_at_s: (d * 0.5).round(),
            flood_s,
            half_open: a.half_open,
            garbage_rate: a.garbage_rate,
            slowloris: a.slowloris,
            handshake_bound_ms: a.handshake_bound_ms,
            max_connections,
            nofile,
            keep_alive: (interval * 2.0).clamp(60.0, 600.0) as u16,
        })
    }

    /// Whether this is the full-size run whose figures go into the docs.
    fn full_size(&self) -> bool {
        self.connections >= 10_000 && self.duration_s >= 600.0
    }
}

/// One second of samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// Seconds since the start.
    pub t: f64,
    /// RSS of each moat, KiB.
    pub moat_rss_kib: Vec<u64>,
    /// Open descriptors of each moat.
    pub moat_fds: Vec<usize>,
    /// CPU seconds of each moat so far.
    pub moat_cpu_s: Vec<f64>,
    /// Mosquitto's RSS, KiB (none while it is down).
    pub mosq_rss_kib: Option<u64>,
    /// Mosquitto's open descriptors.
    pub mosq_fds: Option<usize>,
    /// Device sessions established.
    pub devices: usize,
    /// Subscriber sessions established.
    pub subscribers: usize,
    /// Messages published so far.
    pub published: u64,
    /// ... acknowledged.
    pub acked: u64,
    /// ... received by the subscribers (unique).
    pub unique: u64,
    /// Half-open flood connections open.
    pub half_open: usize,
    /// CPU seconds of the whole machine so far.
    pub sys_busy_s: f64,
    /// CPU seconds of the soak's own processes so far.
    pub ours_cpu_s: f64,
}

/// A moment of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRec {
    /// Seconds since the start.
    pub t: f64,
    /// `soak start`, `reload`, `broker stop`, `broker up`, `flood start`, ...
    pub kind: String,
    /// Details.
    pub detail: String,
}

/// How one replica took one renewal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Landing {
    /// `moat_certificate_reloads_total{result="success"}` went up.
    pub success: bool,
    /// `...{result="failure"}` went up.
    pub failure: bool,
    /// From the rename to the metric, ms.
    pub landed_ms: Option<f64>,
    /// A fresh handshake got the new certificate.
    pub serves_new: bool,
}

/// One certificate renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadRec {
    /// Seconds since the start.
    pub t: f64,
    /// The new certificate's serial.
    pub serial: u64,
    /// Per replica.
    pub replicas: Vec<Landing>,
    /// Why it could not be done, if so.
    pub error: Option<String>,
}

/// The broker restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartRec {
    /// SIGTERM sent.
    pub t_stop: f64,
    /// Mosquitto exited.
    pub t_down: f64,
    /// Mosquitto listens again.
    pub t_up: f64,
    /// Its exit status.
    pub exit: String,
    /// It had to be killed.
    pub killed: bool,
    /// Every device and subscriber was connected again.
    pub all_back: Option<f64>,
}

/// One probe: TCP + TLS + CONNECT/CONNACK, as `[t, replica, ok, handshake
/// ms, total ms]`.
pub type ProbeRec = (f64, u8, bool, f64, f64);

/// A dropped established connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dropped {
    /// Seconds since the start.
    pub t: f64,
    /// `d123` or `s2`.
    pub who: String,
    /// How it ended.
    pub kind: String,
    /// How long it had been up, seconds.
    pub held_s: f64,
}

/// Message accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Messages {
    /// Published for the first time.
    pub published: u64,
    /// Acknowledged by the broker: "sent".
    pub sent: u64,
    /// Never acknowledged, even after the wait at the end.
    pub unacked: u64,
    /// PUBLISH frames received by the subscribers.
    pub received: u64,
    /// Unique (device, sequence) pairs received.
    pub unique: u64,
    /// Received again.
    pub duplicates: u64,
    /// Not ours.
    pub malformed: u64,
    /// Sent minus unique.
    pub difference: i64,
    /// Acknowledged but never received.
    pub lost: u64,
    /// Received but never published or acknowledged.
    pub unexpected: u64,
    /// PUBLISH frames sent again (DUP) after a reconnection.
    pub retransmits: u64,
    /// Seconds the subscribers needed to catch up at the end.
    pub drain_s: f64,
}

/// Everything one soak recorded; saved as `soak.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakRun {
    /// The plan.
    pub plan: Plan,
    /// The command.
    pub command: String,
    /// When.
    pub measured_at: String,
    /// The machine.
    pub machine: Vec<(String, String)>,
    /// Uncommitted changes in crates/proxy when the run started.
    pub proxy_changes: String,
    /// Seconds the whole run took.
    pub elapsed_s: f64,
    /// Seconds until every connection was up.
    pub ramp_s: f64,
    /// Start and end of the soak proper, seconds since the start.
    pub soak: (f64, f64),
    /// Each moat's RSS before any client, KiB.
    pub baseline_rss_kib: Vec<u64>,
    /// The samples.
    pub rows: Vec<Row>,
    /// The timeline.
    pub events: Vec<EventRec>,
    /// The renewals.
    pub reloads: Vec<ReloadRec>,
    /// The restart.
    pub restart: Option<RestartRec>,
    /// The flood: start and end.
    pub flood_window: Option<(f64, f64)>,
    /// What the flood did.
    pub flood: Option<FloodStats>,
    /// The probes.
    pub probes: Vec<ProbeRec>,
    /// Closes attributed to the restart, by kind.
    pub restart_closes: BTreeMap<String, u64>,
    /// The window they were counted in.
    pub restart_window: Option<(f64, f64)>,
    /// Every other close.
    pub unexplained: Vec<Dropped>,
    /// Message accounting.
    pub messages: Messages,
    /// Devices connected at the end of the soak.
    pub devices_at_end: usize,
    /// Subscribers connected at the end of the soak.
    pub subscribers_at_end: usize,
    /// Sessions established (first ones included).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// A few of their errors.
    pub connect_errors: Vec<String>,
    /// Selected metrics of each replica at the end.
    pub moat_metrics: Vec<BTreeMap<String, f64>>,
    /// How each moat ended.
    pub moat_exit: Vec<String>,
    /// moat processes that died during the run.
    pub moat_died: Vec<String>,
    /// Each moat's log: lines by level and message.
    pub moat_log: Vec<Vec<(String, u64)>>,
    /// Mosquitto's telling log lines.
    pub mosquitto_log: Vec<String>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}

// ---------------------------------------------------------------------------
// Orchestrator: the run
// ---------------------------------------------------------------------------

/// The timeline, shared with the tasks.
#[derive(Clone)]
struct Clock {
    t0: Instant,
    t0_unix_ms: u64,
    events: Arc<Mutex<Vec<EventRec>>>,
}

impl Clock {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn event(&self, kind: &str, detail: impl Into<String>) {
        let detail = detail.into();
        let t = self.now();
        eprintln!("soak: [{t:7.1} s] {kind} {detail}");
        self.events.lock().expect("lock").push(EventRec {
            t,
            kind: kind.into(),
            detail,
        });
    }

    fn of_unix_ms(&self, ms: u64) -> f64 {
        (ms as f64 - self.t0_unix_ms as f64) / 1000.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[allow(clippy::too_many_arguments)]
async fn sampler(
    clock: Clock,
    replicas: Arc<Mutex<Vec<Replica>>>,
    mosq: Arc<Mutex<Option<Managed>>>,
    worker_pids: Arc<Mutex<Vec<u32>>>,
    live: Arc<Mutex<Live>>,
    rows: Arc<Mutex<Vec<Row>>>,
    died: Arc<Mutex<Vec<String>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu_seen: HashMap<u32, f64> = HashMap::new();
    let me = std::process::id();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let moat_pids: Vec<u32> = {
            let mut reps = replicas.lock().expect("lock");
            let mut d = died.lock().expect("lock");
            for r in reps.iter_mut() {
                if let Some(s) = r.proc.exited() {
                    if !d.iter().any(|x| x.starts_with(&r.proc.name)) {
                        let msg = format!(
                            "{} exited at {:.0} s ({s}); the end of its log:\n{}",
                            r.proc.name,
                            clock.now(),
                            r.proc.log_tail(15)
                        );
                        eprintln!("soak: {msg}");
                        d.push(msg);
                    }
                }
            }
            reps.iter().map(|r| r.proc.pid()).collect()
        };
        let mosq_pid = mosq.lock().expect("lock").as_ref().map(Managed::pid);
        let others: Vec<u32> = worker_pids.lock().expect("lock").clone();
        let t = round2(clock.now());
        let sampled = tokio::task::spawn_blocking(move || {
            let moat: Vec<(procstat::Sample, usize)> = moat_pids
                .iter()
                .map(|&p| {
                    (
                        procstat::sample_one(p).unwrap_or_default(),
                        procstat::fd_count(p).unwrap_or(0),
                    )
                })
                .collect();
            let mosq =
                mosq_pid.and_then(|p| Some((procstat::sample_one(p)?, procstat::fd_count(p)?)));
            let mut cpus: Vec<(u32, f64)> = Vec::new();
            for p in moat_pids
                .iter()
                .chain(others.iter())
                .chain(mosq_pid.iter())
                .chain([me].iter())
            {
                if let Some(s) = procstat::sample_one(*p) {
                    cpus.push((*p, s.cpu_s));
                }
            }
            (moat, mosq, cpus, procstat::system_busy_s().unwrap_or(0.0))
        })
        .await;
        let Ok((moat, mosq_s, cpus, busy)) = sampled else {
            continue;
        };
        for (p, c) in cpus {
            cpu_seen.insert(p, c);
        }
        let (devices, subscribers, published, acked, unique, half_open) = {
            let l = live.lock().expect("lock");
            (
                l.sum("devices", |s| s.connected as u64) as usize,
                l.sum("subscribers", |s| s.connected as u64) as usize,
                l.sum("devices", |s| s.published),
                l.sum("devices", |s| s.acked),
                l.sum("subscribers", |s| s.unique),
                l.sum("flood", |s| s.half_open as u64) as usize,
            )
        };
        rows.lock().expect("lock").push(Row {
            t,
            moat_rss_kib: moat.iter().map(|m| m.0.rss_kib).collect(),
            moat_fds: moat.iter().map(|m| m.1).collect(),
            moat_cpu_s: moat.iter().map(|m| round2(m.0.cpu_s)).collect(),
            mosq_rss_kib: mosq_s.map(|m| m.0.rss_kib),
            mosq_fds: mosq_s.map(|m| m.1),
            devices,
            subscribers,
            published,
            acked,
            unique,
            half_open,
            sys_busy_s: round2(busy),
            ours_cpu_s: round2(cpu_seen.values().sum()),
        });
    }
}

async fn probe_loop(
    targets: Vec<SocketAddr>,
    cfg: Arc<ClientConfig>,
    clock: Clock,
    out: Arc<Mutex<Vec<ProbeRec>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let limit = Arc::new(tokio::sync::Semaphore::new(PROBES_IN_FLIGHT));
    let mut i: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let t = round2(clock.now());
        let r = (i % targets.len() as u64) as u8;
        i += 1;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // As many probes as allowed are stuck: that is a failure too.
            out.lock().expect("lock").push((t, r, false, 0.0, 0.0));
            continue;
        };
        let (target, cfg, out) = (targets[r as usize], cfg.clone(), out.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let id = format!("soak-probe-{i}");
            match mqtt_session(target, &cfg, &id, 30, true, Duration::from_secs(10)).await {
                Ok((sess, times)) => {
                    out.lock().expect("lock").push((
                        t,
                        r,
                        true,
                        round2(times.handshake.as_secs_f64() * 1e3),
                        round2(times.total.as_secs_f64() * 1e3),
                    ));
                    sess.goodbye().await;
                }
                Err(e) => {
                    eprintln!("soak: probe {id} via moat #{r} failed: {e}");
                    out.lock().expect("lock").push((t, r, false, 0.0, 0.0));
                }
            }
        });
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        limit.acquire_many(PROBES_IN_FLIGHT as u32),
    )
    .await;
}

/// The reload counters of every replica (success, failure).
async fn reload_counts(admins: &[SocketAddr]) -> Vec<Option<(f64, f64)>> {
    let mut out = Vec::new();
    for a in admins {
        out.push(scrape(*a).await.ok().map(|t| {
            (
                metric(
                    &t,
                    "moat_certificate_reloads_total",
                    &[("result", "success")],
                ),
                metric(
                    &t,
                    "moat_certificate_reloads_total",
                    &[("result", "failure")],
                ),
            )
        }));
    }
    out
}

/// Whether a fresh handshake with `target` gets the certificate `der`.
async fn serves(target: SocketAddr, cfg: &Arc<ClientConfig>, der: &[u8]) -> bool {
    let Ok(Ok(s)) =
        tokio::time::timeout(Duration::from_secs(5), client::connect(target, cfg)).await
    else {
        return false;
    };
    let ok = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|c| c.as_ref() == der);
    client::close(s).await;
    ok
}

#[allow(clippy::too_many_arguments)]
async fn reload_loop(
    mut pki: SoakPki,
    admins: Vec<SocketAddr>,
    targets: Vec<SocketAddr>,
    cfg: Arc<ClientConfig>,
    every: Duration,
    start: tokio::time::Instant,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> Vec<ReloadRec> {
    let mut out = Vec::new();
    let mut last: Vec<(f64, f64)> = reload_counts(&admins)
        .await
        .into_iter()
        .map(|c| c.unwrap_or((0.0, 0.0)))
        .collect();
    for n in 1u32.. {
        tokio::select! {
            _ = tokio::time::sleep_until(start + every * n) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let t = round2(clock.now());
        let der = match pki.renew() {
            Ok(d) => d,
            Err(e) => {
                out.push(ReloadRec {
                    t,
                    serial: pki.serial,
                    replicas: vec![],
                    error: Some(format!("{e:#}")),
                });
                continue;
            }
        };
        let swapped = Instant::now();
        let mut rec = ReloadRec {
            t,
            serial: 1000 + pki.serial,
            replicas: vec![Landing::default(); admins.len()],
            error: None,
        };
        let deadline = swapped + Duration::from_secs(8);
        let mut pending: Vec<usize> = (0..admins.len()).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let counts = reload_counts(&admins).await;
            pending.retain(|&i| {
                let Some((s, f)) = counts[i] else { return true };
                let l = &mut rec.replicas[i];
                if s > last[i].0 {
                    l.success = true;
                    l.landed_ms = Some(round2(swapped.elapsed().as_secs_f64() * 1e3));
                }
                if f > last[i].1 {
                    l.failure = true;
                }
                last[i] = (s, f);
                !(l.success || l.failure)
            });
        }
        for (i, target) in targets.iter().enumerate() {
            for _ in 0..3 {
                if serves(*target, &cfg, &der).await {
                    rec.replicas[i].serves_new = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let ok = rec
            .replicas
            .iter()
            .all(|l| l.success && l.serves_new && !l.failure);
        clock.event(
            "reload",
            format!(
                "serial {}: {}",
                rec.serial,
                if ok {
                    "landed on every replica".to_string()
                } else {
                    format!("NOT landed everywhere: {:?}", rec.replicas)
                }
            ),
        );
        out.push(rec);
    }
    out
}

async fn restart_broker(
    mosq: Arc<Mutex<Option<Managed>>>,
    dir: PathBuf,
    port: u16,
    down: Duration,
    clock: Clock,
) -> Result<RestartRec> {
    let mut rec = RestartRec::default();
    let old = mosq.lock().expect("lock").take();
    rec.t_stop = clock.now();
    clock.event("broker stop", "SIGTERM to Mosquitto");
    if let Some(mut m) = old {
        let (status, killed) = m.terminate(Duration::from_secs(60)).await;
        rec.exit = status.map_or("unknown".into(), |s| s.to_string());
        rec.killed = killed;
    }
    rec.t_down = clock.now();
    clock.event("broker down", format!("Mosquitto exited ({})", rec.exit));
    tokio::time::sleep(down).await;
    let mut last = None;
    for attempt in 1..=5 {
        match start_mosquitto(&dir, port, attempt).await {
            Ok(m) => {
                *mosq.lock().expect("lock") = Some(m);
                rec.t_up = clock.now();
                clock.event("broker up", "Mosquitto listens again on the same port");
                return Ok(rec);
            }
            Err(e) => {
                eprintln!("soak: Mosquitto did not start again (attempt {attempt}): {e:#}");
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("Mosquitto did not start again")))
}

/// Waits until `f` holds, checking every 100 ms, for at most `limit`.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The interesting metrics of one replica, flattened.
fn moat_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (k, v) in by_label(
        text,
        "moat_tls_handshakes_total",
        "reason",
        &[("result", "failure")],
    ) {
        m.insert(format!("handshake failures: {k}"), v);
    }
    m.insert(
        "handshakes ok".into(),
        metric(text, "moat_tls_handshakes_total", &[("result", "success")]),
    );
    for (k, v) in by_label(text, "moat_connections_rejected_total", "reason", &[]) {
        m.insert(format!("rejected: {k}"), v);
    }
    for (k, v) in by_label(text, "moat_certificate_reloads_total", "result", &[]) {
        m.insert(format!("reloads: {k}"), v);
    }
    for (name, key) in [
        ("moat_connections_total", "connections accepted"),
        ("moat_connections_active", "connections active"),
        (
            "moat_backend_connect_failures_total",
            "backend connect failures",
        ),
        ("moat_idle_timeouts_total", "idle timeouts"),
        ("moat_certificate_reload_pending", "reload pending"),
    ] {
        m.insert(key.into(), metric(text, name, &[]));
    }
    for (k, v) in by_label(text, "moat_relayed_bytes_total", "direction", &[]) {
        m.insert(format!("bytes relayed: {k}"), v);
    }
    m
}

/// moat's log: lines counted by level and message (fields dropped).
fn summarize_moat_log(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let level = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
            .into_iter()
            .find(|l| line.contains(&format!(" {l} ")));
        let key = match level {
            Some(level) => {
                let rest = line.split_once(&format!(" {level} ")).map_or("", |x| x.1);
                // Skip the span and target prefixes ("conn{..}: moat::x: ").
                let msg = rest
                    .rsplit_once(": ")
                    .filter(|(head, _)| head.contains("moat"))
                    .map_or(rest, |x| x.1);
                let words: Vec<&str> = msg
                    .split(' ')
                    .take_while(|w| !w.contains('=') || w.starts_with('='))
                    .collect();
                format!("{level} {}", words.join(" "))
            }
            None => format!(
                "(not from the logger) {}",
                line.chars().take(60).collect::<String>()
            ),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.truncate(15);
    v
}

fn summarize_mosquitto_log(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| {
            [
                "Saving",
                "Restored",
                "terminating",
                "starting",
                "Error",
                "Warning",
                "Opening",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .take(30)
        .map(str::to_string)
        .collect()
}

/// Runs the soak; everything it starts is killed when it returns or is
/// dropped.
async fn run(plan: &Plan, moat_bin: &Path, dir: &Path, command: String) -> Result<SoakRun> {
    let clock = Clock {
        t0: Instant::now(),
        t0_unix_ms: unix_ms(),
        events: Arc::default(),
    };
    let self_exe = std::env::current_exe().context("find moat-bench's own path")?;
    let machine = crate::machine::describe(&crate::model::workspace_root());
    let proxy_changes = Command::new("git")
        .args(["status", "--porcelain", "crates/proxy"])
        .current_dir(crate::model::workspace_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    let pki = SoakPki::new(&dir.join("tls"))?;
    let ca = crate::pki::load_ca(&pki.ca_pem)?;
    let cfg = client::config(&ca, false);

    // The broker, then the replicas.
    let mdir = dir.join("mosquitto");
    std::fs::create_dir_all(&mdir)?;
    let mport = free_port()?;
    let mosq = Arc::new(Mutex::new(Some(start_mosquitto(&mdir, mport, 0).await?)));
    let mut reps = Vec::new();
    for i in 0..plan.replicas {
        reps.push(start_moat(moat_bin, dir, i, mport, &pki, &cfg, plan.max_connections).await?);
    }
    let targets: Vec<SocketAddr> = reps.iter().map(|r| r.addr).collect();
    let admins: Vec<SocketAddr> = reps.iter().map(|r| r.admin).collect();
    let logs: Vec<PathBuf> = reps.iter().map(|r| r.proc.log.clone()).collect();
    clock.event(
        "started",
        format!(
            "Mosquitto on 127.0.0.1:{mport}, moat on {}",
            targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_rss_kib: Vec<u64> = reps
        .iter()
        .map(|r| procstat::sample_one(r.proc.pid()).map_or(0, |s| s.rss_kib))
        .collect();
    let replicas = Arc::new(Mutex::new(reps));

    let live: Arc<Mutex<Live>> = Arc::default();
    let rows: Arc<Mutex<Vec<Row>>> = Arc::default();
    let died: Arc<Mutex<Vec<String>>> = Arc::default();
    let worker_pids: Arc<Mutex<Vec<u32>>> = Arc::default();
    let probes: Arc<Mutex<Vec<ProbeRec>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (sampler_stop_tx, sampler_stop_rx) = watch::channel(false);
    let sampler_task = tokio::spawn(sampler(
        clock.clone(),
        replicas.clone(),
        mosq.clone(),
        worker_pids.clone(),
        live.clone(),
        rows.clone(),
        died.clone(),
        sampler_stop_rx,
    ));

    // Subscribers first, so that nothing published is missed.
    let mut workers: Vec<WorkerHandle> = Vec::new();
    let sub_spec = WorkerSpec::Subscribers(SubscriberSpec {
        targets: targets.clone(),
        ca: pki.ca_pem.clone(),
        groups: plan.subscribers,
        devices: plan.connections,
        keep_alive: plan.keep_alive,
    });
    workers.push(WorkerHandle::spawn(
        &self_exe,
        "subscribers",
        &sub_spec,
        &dir.join("subscribers.log"),
        live.clone(),
    )?);
    worker_pids
        .lock()
        .expect("lock")
        .push(workers[0].child.id());
    if !until(Duration::from_secs(60), || {
        live.lock().expect("lock").ups.contains("subscribers")
    })
    .await
    {
        bail!(
            "the subscribers did not connect within 60 s: {:?}",
            live.lock().expect("lock").errors
        );
    }
    // Then the devices, over several processes.
    for w in 0..plan.workers {
        let first = w * plan.per_worker;
        let count = plan.per_worker.min(plan.connections - first);
        let spec = WorkerSpec::Devices(DeviceSpec {
            targets: targets.clone(),
            ca: pki.ca_pem.clone(),
            first,
            count,
            groups: plan.subscribers,
            interval_s: plan.publish_interval_s,
            keep_alive: plan.keep_alive,
            ramp_concurrency: 32,
        });
        let name = format!("devices-{w}");
        let h = WorkerHandle::spawn(
            &self_exe,
            &name,
            &spec,
            &dir.join(format!("{name}.log")),
            live.clone(),
        )?;
        worker_pids.lock().expect("lock").push(h.child.id());
        workers.push(h);
    }
    let ramp_limit = Duration::from_secs_f64(60.0 + plan.connections as f64 / 20.0);
    let ramped = until(ramp_limit, || {
        live.lock()
            .expect("lock")
            .ups
            .iter()
            .filter(|k| k.starts_with("devices"))
            .count()
            >= plan.workers
    })
    .await;
    if !ramped {
        let l = live.lock().expect("lock");
        bail!(
            "only {} of {} devices connected within {ramp_limit:?}; errors: {:?}",
            l.sum("devices", |s| s.connected as u64),
            plan.connections,
            l.errors
        );
    }
    if !died.lock().expect("lock").is_empty() {
        bail!(
            "moat died during the ramp: {:?}",
            died.lock().expect("lock")
        );
    }
    let ramp_s = clock.now();
    clock.event(
        "soak start",
        format!(
            "{} devices and {} subscribers connected",
            plan.connections, plan.subscribers
        ),
    );

    // The soak proper.
    let s0 = tokio::time::Instant::now();
    let soak_start = clock.now();
    let probe_task = tokio::spawn(probe_loop(
        targets.clone(),
        cfg.clone(),
        clock.clone(),
        probes.clone(),
        stop_rx.clone(),
    ));
    let reload_task = tokio::spawn(reload_loop(
        pki,
        admins.clone(),
        targets.clone(),
        cfg.clone(),
        Duration::from_secs_f64(plan.reload_interval_s),
        s0,
        clock.clone(),
        stop_rx.clone(),
    ));
    let restart_at = s0 + Duration::from_secs_f64(plan.restart_at_s);
    let flood_at = s0 + Duration::from_secs_f64(plan.flood_at_s);
    let end = s0 + Duration::from_secs_f64(plan.duration_s);
    let mut restart_task: Option<tokio::task::JoinHandle<Result<RestartRec>>> = None;
    let mut restart: Option<RestartRec> = None;
    let mut flood_started: Option<(f64, tokio::time::Instant)> = None;
    let mut flood_window = None;
    let mut all_back: Option<f64> = None;
    let mut aborted = None;
    let total = plan.connections;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = tokio::time::Instant::now();
        if !died.lock().expect("lock").is_empty() {
            aborted = Some("a moat process died".to_string());
            break;
        }
        if restart_task.is_none() && restart.is_none() && now >= restart_at {
            restart_task = Some(tokio::spawn(restart_broker(
                mosq.clone(),
                mdir.clone(),
                mport,
                Duration::from_secs_f64(plan.broker_down_s),
                clock.clone(),
            )));
        }
        if restart_task.as_ref().is_some_and(|t| t.is_finished()) {
            let t = restart_task.take().expect("checked");
            match t.await {
                Ok(Ok(r)) => restart = Some(r),
                Ok(Err(e)) => {
                    aborted = Some(format!("the broker did not come back: {e:#}"));
                    break;
                }
                Err(e) => {
                    aborted = Some(format!("the restart task failed: {e}"));
                    break;
                }
            }
        }
        if let (Some(r), None) = (&restart, all_back) {
            let l = live.lock().expect("lock");
            if l.sum("devices", |s| s.connected as u64) as usize == total
                && l.sum("subscribers", |s| s.connected as u64) as usize == plan.subscribers
                && clock.now() > r.t_up
            {
                all_back = Some(clock.now());
                drop(l);
                clock.event("all back", "every device and subscriber is connected again");
            }
        }
        if flood_started.is_none() && now >= flood_at {
            let spec = WorkerSpec::Flood(FloodSpec {
                targets: targets.clone(),
                duration_s: plan.flood_s,
                half_open: plan.half_open,
                garbage_rate: plan.garbage_rate,
                garbage_concurrency: GARBAGE_CONCURRENCY,
                slowloris: plan.slowloris,
                ca: dir.join("tls/ca.pem"),
            });
            let h = WorkerHandle::spawn(
                &self_exe,
                "flood",
                &spec,
                &dir.join("flood.log"),
                live.clone(),
            )?;
            worker_pids.lock().expect("lock").push(h.child.id());
            workers.push(h);
            flood_started = Some((clock.now(), now));
            clock.event(
                "flood start",
                format!(
                    "{} half-open, {} garbage connections/s, {} slowloris, for {:.0} s",
                    plan.half_open, plan.garbage_rate, plan.slowloris, plan.flood_s
                ),
            );
        }
        if let (Some((t, at)), None) = (flood_started, flood_window) {
            let done = live.lock().expect("lock").finals.contains_key("flood");
            if done || now > at + Duration::from_secs_f64(plan.flood_s + 30.0) {
                flood_window = Some((t, clock.now()));
                clock.event(
                    "flood end",
                    if done {
                        ""
                    } else {
                        "the flood worker did not report; killed"
                    },
                );
                if let Some(w) = workers.iter_mut().find(|w| w.name == "flood") {
                    w.quit(Duration::from_secs(5)).await;
                }
            }
        }
        if now >= end
            && restart_task.is_none()
            && (flood_started.is_none() || flood_window.is_some())
        {
            break;
        }
        if now >= end + Duration::from_secs(120) {
            aborted = Some("the restart or the flood did not finish in time".into());
            break;
        }
    }
    let soak_end = clock.now();
    let devices_at_end = live
        .lock()
        .expect("lock")
        .sum("devices", |s| s.connected as u64) as usize;
    let subscribers_at_end = live
        .lock()
        .expect("lock")
        .sum("subscribers", |s| s.connected as u64) as usize;
    clock.event(
        "soak end",
        format!("{devices_at_end} devices and {subscribers_at_end} subscribers connected"),
    );
    let _ = stop_tx.send(true);
    let reloads = match tokio::time::timeout(Duration::from_secs(30), reload_task).await {
        Ok(Ok(r)) => r,
        _ => Vec::new(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), probe_task).await;
    if let Some(t) = restart_task.take() {
        if let Ok(Ok(Ok(r))) = tokio::time::timeout(Duration::from_secs(90), t).await {
            restart = Some(r);
        }
    }
    if let Some(r) = restart.as_mut() {
        r.all_back = all_back;
    }

    // The end: every device gets its messages acknowledged, then the
    // subscribers catch up.
    let drain_from = Instant::now();
    for w in workers.iter_mut().filter(|w| w.name.starts_with("devices")) {
        w.send("stop");
    }
    let device_workers = plan.workers;
    let finals_in = |l: &Live| l.finals.keys().filter(|k| k.starts_with("devices")).count();
    if !until(Duration::from_secs(120), || {
        finals_in(&live.lock().expect("lock")) >= device_workers
    })
    .await
    {
        eprintln!(
            "soak: some devices still have unacknowledged messages after 120 s; closing them"
        );
        for w in workers.iter_mut().filter(|w| w.name.starts_with("devices")) {
            w.quit(Duration::from_secs(20)).await;
        }
        until(Duration::from_secs(10), || {
            finals_in(&live.lock().expect("lock")) >= device_workers
        })
        .await;
    }
    let sent: u64 = live
        .lock()
        .expect("lock")
        .finals
        .iter()
        .filter(|(k, _)| k.starts_with("devices"))
        .map(|(_, f)| f.acked.iter().map(|&a| u64::from(a)).sum::<u64>())
        .sum();
    let mut last = (0u64, Instant::now());
    until(Duration::from_secs(90), || {
        let u = live.lock().expect("lock").sum("subscribers", |s| s.unique);
        if u != last.0 {
            last = (u, Instant::now());
        }
        u >= sent || last.1.elapsed() > Duration::from_secs(20)
    })
    .await;
    // One more report, in case the subscribers are still receiving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let drain_s = drain_from.elapsed().as_secs_f64();
    if let Some(w) = workers.iter_mut().find(|w| w.name == "subscribers") {
        w.send("final");
    }
    until(Duration::from_secs(30), || {
        live.lock()
            .expect("lock")
            .finals
            .contains_key("subscribers")
    })
    .await;

    let mut metrics = Vec::new();
    for a in &admins {
        metrics.push(
            scrape(*a)
                .await
                .map(|t| moat_metrics(&t))
                .unwrap_or_default(),
        );
    }
    for w in workers.iter_mut() {
        w.quit(Duration::from_secs(20)).await;
    }
    let _ = sampler_stop_tx.send(true);
    let _ = sampler_task.await;
    let mut moat_exit = Vec::new();
    {
        let mut reps = std::mem::take(&mut *replicas.lock().expect("lock"));
        for r in reps.iter_mut() {
            let (s, killed) = r.proc.terminate(Duration::from_secs(15)).await;
            moat_exit.push(format!(
                "{}{}",
                s.map_or("unknown".into(), |s| s.to_string()),
                if killed { " (killed after 15 s)" } else { "" }
            ));
        }
    }
    let m = mosq.lock().expect("lock").take();
    if let Some(mut m) = m {
        m.terminate(Duration::from_secs(30)).await;
    }
    drop(workers);
    clock.event("stopped", "every process ended");

    // Accounting.
    let l = live.lock().expect("lock");
    let mut messages = Messages {
        drain_s,
        ..Messages::default()
    };
    let mut published: HashMap<usize, (u32, u32)> = HashMap::new();
    let mut unacked: HashMap<usize, Vec<u32>> = HashMap::new();
    for (_, f) in l.finals.iter().filter(|(k, _)| k.starts_with("devices")) {
        for (i, (&p, &a)) in f.published.iter().zip(&f.acked).enumerate() {
            published.insert(f.first + i, (p, a));
            messages.published += u64::from(p);
            messages.sent += u64::from(a);
        }
        for &(d, s) in &f.unacked {
            unacked.entry(d as usize).or_default().push(s);
            messages.unacked += 1;
        }
    }
    messages.retransmits = l.sum("devices", |s| s.retransmits);
    if let Some(sub) = l.stats.get("subscribers") {
        messages.received = sub.received;
        messages.duplicates = sub.dups;
        messages.malformed = sub.malformed;
    }
    if let Some(f) = l.finals.get("subscribers") {
        messages.unique = f.unique.iter().map(|&u| u64::from(u)).sum();
        let mut gaps: HashMap<usize, Vec<u32>> = HashMap::new();
        for &(d, s) in &f.gaps {
            gaps.entry(d as usize).or_default().push(s);
        }
        for (d, &(p, _)) in &published {
            let max = f.max_seq.get(*d).copied().unwrap_or(-1);
            let un = unacked.get(d).cloned().unwrap_or_default();
            let g = gaps.get(d).cloned().unwrap_or_default();
            let received = |s: u32| i64::from(s) <= max && !g.contains(&s);
            for s in 0..p {
                let acked = !un.contains(&s);
                if acked && !received(s) {
                    messages.lost += 1;
                }
                if !acked && received(s) {
                    messages.unexpected += 1;
                }
            }
            if max >= i64::from(p) {
                messages.unexpected += (max - i64::from(p) + 1) as u64;
            }
        }
    } else {
        messages.unique = l.sum("subscribers", |s| s.unique);
    }
    messages.difference = messages.sent as i64 - messages.unique as i64;

    let restart_window = restart
        .as_ref()
        .map(|r| (r.t_stop - 1.0, r.t_up + RESTART_GRACE_S));
    let mut restart_closes: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for c in &l.closes {
        let t = clock.of_unix_ms(c.t_ms);
        if restart_window.is_some_and(|(a, b)| t >= a && t <= b) {
            *restart_closes.entry(c.kind.clone()).or_insert(0) += 1;
        } else {
            unexplained.push(Dropped {
                t: round2(t),
                who: c.who.clone(),
                kind: c.kind.clone(),
                held_s: round2(c.held_s),
            });
        }
    }
    let flood = l.finals.get("flood").and_then(|f| f.flood.clone());
    let connects = l.sum("", |s| s.connects);
    let connect_failures = l.sum("", |s| s.connect_failures);
    let connect_errors = l.errors.clone();
    drop(l);

    let mut probes = std::mem::take(&mut *probes.lock().expect("lock"));
    probes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let events = clock.events.lock().expect("lock").clone();
    let rows = std::mem::take(&mut *rows.lock().expect("lock"));
    let moat_died = died.lock().expect("lock").clone();
    Ok(SoakRun {
        plan: plan.clone(),
        command,
        measured_at: crate::model::now_utc(),
        machine,
        proxy_changes,
        elapsed_s: clock.now(),
        ramp_s,
        soak: (soak_start, soak_end),
        baseline_rss_kib,
        rows,
        events,
        reloads,
        restart,
        flood_window,
        flood,
        probes,
        restart_closes,
        restart_window,
        unexplained,
        messages,
        devices_at_end,
        subscribers_at_end,
        connects,
        connect_failures,
        connect_errors,
        moat_metrics: metrics,
        moat_exit,
        moat_died,
        moat_log: logs.iter().map(|p| summarize_moat_log(p)).collect(),
        mosquitto_log: summarize_mosquitto_log(&mdir.join("mosquitto.log")),
        aborted,
    })
}

// ---------------------------------------------------------------------------
// Figures and verdicts
// ---------------------------------------------------------------------------

/// Probe latency over one window.
#[derive(Debug, Clone)]
struct Window {
    name: &'static str,
    from: f64,
    to: f64,
    n: usize,
    failures: usize,
    p50: f64,
    p99: f64,
    max: f64,
    hs_p50: f64,
    hs_p99: f64,
}

fn window(run: &SoakRun, name: &'static str, from: f64, to: f64) -> Window {
    let inside: Vec<&ProbeRec> = run
        .probes
        .iter()
        .filter(|p| p.0 >= from && p.0 < to)
        .collect();
    let mut total: Vec<f64> = inside.iter().filter(|p| p.2).map(|p| p.4).collect();
    let mut hs: Vec<f64> = inside.iter().filter(|p| p.2).map(|p| p.3).collect();
    total.sort_by(f64::total_cmp);
    hs.sort_by(f64::total_cmp);
    Window {
        name,
        from,
        to,
        n: inside.len(),
        failures: inside.iter().filter(|p| !p.2).count(),
        p50: quantile(&total, 0.5),
        p99: quantile(&total, 0.99),
        max: total.last().copied().unwrap_or(f64::NAN),
        hs_p50: quantile(&hs, 0.5),
        hs_p99: quantile(&hs, 0.99),
    }
}

/// When the soak is steady again after the broker restart (every client
/// back), or its start when there was no restart.
fn settled(run: &SoakRun) -> f64 {
    run.restart
        .as_ref()
        .map_or(run.soak.0, |r| r.all_back.unwrap_or(r.t_up + 10.0))
}

fn windows(run: &SoakRun) -> Vec<Window> {
    let mut out = Vec::new();
    let (s0, s1) = run.soak;
    if let Some(r) = &run.restart {
        out.push(window(run, "steady, before the restart", s0, r.t_stop));
    }
    if let Some((fs, fe)) = run.flood_window {
        let f = run.plan.flood_s;
        let from = (fs - f).max(settled(run)).min(fs);
        out.push(window(run, "before the flood", from, fs));
        out.push(window(run, "during the flood", fs, fe));
        out.push(window(run, "after the flood", fe, (fe + f).min(s1)));
    }
    out
}

/// The row nearest to `t`.
fn row_at(run: &SoakRun, t: f64) -> Option<&Row> {
    run.rows
        .iter()
        .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
}

/// One replica's memory, descriptor and CPU figures.
#[derive(Debug, Clone, Default)]
struct ReplicaFig {
    baseline_mib: f64,
    ramp_mib: f64,
    peak_mib: f64,
    final_mib: f64,
    kib_per_conn: f64,
    fds_ramp: usize,
    fds_peak: usize,
    fds_final: usize,
    cpu_pct: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn replica_figs(run: &SoakRun) -> Vec<ReplicaFig> {
    let (s0, s1) = run.soak;
    let (Some(a), Some(b)) = (row_at(run, s0), row_at(run, s1)) else {
        return Vec::new();
    };
    let held: Vec<&Row> = run.rows.iter().filter(|r| r.t <= s1 + 0.5).collect();
    (0..run.plan.replicas)
        .map(|i| {
            let get = |r: &Row| r.moat_rss_kib.get(i).copied().unwrap_or(0);
            let fds = |r: &Row| r.moat_fds.get(i).copied().unwrap_or(0);
            let cpu = |r: &Row| r.moat_cpu_s.get(i).copied().unwrap_or(0.0);
            let base = run.baseline_rss_kib.get(i).copied().unwrap_or(0);
            let conns = run.plan.per_replica + run.plan.subscribers.div_ceil(run.plan.replicas);
            ReplicaFig {
                baseline_mib: mib(base),
                ramp_mib: mib(get(a)),
                peak_mib: mib(held.iter().map(|r| get(r)).max().unwrap_or(0)),
                final_mib: mib(get(b)),
                kib_per_conn: get(a).saturating_sub(base) as f64 / conns.max(1) as f64,
                fds_ramp: fds(a),
                fds_peak: held.iter().map(|r| fds(r)).max().unwrap_or(0),
                fds_final: fds(b),
                cpu_pct: 100.0 * (cpu(b) - cpu(a)) / (b.t - a.t).max(1.0),
            }
        })
        .collect()
}

/// CPU of everything else on the machine during the soak, in cores.
fn other_load(run: &SoakRun) -> Option<(f64, f64)> {
    let (a, b) = (row_at(run, run.soak.0)?, row_at(run, run.soak.1)?);
    let dt = (b.t - a.t).max(1.0);
    let ours = (b.ours_cpu_s - a.ours_cpu_s) / dt;
    let all = (b.sys_busy_s - a.sys_busy_s) / dt;
    Some((ours, (all - ours).max(0.0)))
}

/// Descriptors of each replica just before the flood and 25 s after it (or
/// at the end of the soak, if sooner), and how long after the flood that is.
fn fd_around_flood(run: &SoakRun) -> Option<(Vec<(usize, usize)>, f64)> {
    let (fs, fe) = run.flood_window?;
    let before = run.rows.iter().rev().find(|r| r.t < fs)?;
    let held = || run.rows.iter().filter(|r| r.t <= run.soak.1 + 0.5);
    let after = held()
        .find(|r| r.t >= fe + 25.0)
        .or_else(|| held().next_back())?;
    let fds = before
        .moat_fds
        .iter()
        .zip(&after.moat_fds)
        .map(|(&a, &b)| (a, b))
        .collect();
    Some((fds, after.t - fe))
}

/// A criterion and its outcome.
#[derive(Debug, Clone)]
struct Verdict {
    what: String,
    pass: bool,
    detail: String,
}

fn verdicts(run: &SoakRun) -> Vec<Verdict> {
    let mut v = Vec::new();
    let m = &run.messages;
    v.push(Verdict {
        what: "QoS 1: every acknowledged message received (difference 0)".into(),
        pass: m.difference == 0 && m.lost == 0 && m.unacked == 0 && m.sent > 0,
        detail: format!(
            "sent {} · received {} unique ({} duplicates) · difference {} · lost {} · never acknowledged {}",
            m.sent, m.unique, m.duplicates, m.difference, m.lost, m.unacked
        ),
    });
    let restart_total: u64 = run.restart_closes.values().sum();
    v.push(Verdict {
        what: "No dropped established connections except the broker restart's".into(),
        pass: run.unexplained.is_empty(),
        detail: format!(
            "{} closed by the restart · {} others",
            restart_total,
            run.unexplained.len()
        ),
    });
    let expected = (run.plan.duration_s / run.plan.reload_interval_s).floor() as usize;
    let good = run
        .reloads
        .iter()
        .filter(|r| {
            r.error.is_none()
                && !r.replicas.is_empty()
                && r.replicas
                    .iter()
                    .all(|l| l.success && l.serves_new && !l.failure)
        })
        .count();
    v.push(Verdict {
        what: "Every certificate renewal landed on every replica".into(),
        pass: good == run.reloads.len()
            && run.reloads.len() + 1 >= expected
            && !run.reloads.is_empty(),
        detail: format!(
            "{good} of {} renewals succeeded everywhere and were served by a fresh handshake",
            run.reloads.len()
        ),
    });
    v.push(Verdict {
        what: "moat never died, and exited cleanly at the end".into(),
        pass: run.moat_died.is_empty()
            && run.aborted.is_none()
            && run.moat_exit.iter().all(|e| e.contains("exit status: 0")),
        detail: if run.moat_died.is_empty() {
            format!("exits: {}", run.moat_exit.join(", "))
        } else {
            run.moat_died.join("; ")
        },
    });
    v.push(Verdict {
        what:
            "Every device and subscriber connected at the end (all reconnected after the restart)"
                .into(),
        pass: run.devices_at_end == run.plan.connections
            && run.subscribers_at_end == run.plan.subscribers,
        detail: format!(
            "{} of {} devices, {} of {} subscribers",
            run.devices_at_end, run.plan.connections, run.subscribers_at_end, run.plan.subscribers
        ),
    });
    let ws = windows(run);
    if let Some(d) = ws.iter().find(|w| w.name == "during the flood") {
        v.push(Verdict {
            what: format!(
                "Well-behaved handshakes during the flood: p99 within {:.0} ms, none failed",
                run.plan.handshake_bound_ms
            ),
            pass: d.n > 0 && d.failures == 0 && d.p99 <= run.plan.handshake_bound_ms,
            detail: format!(
                "{} probes, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                d.n, d.failures, d.p50, d.p99, d.max
            ),
        });
    } else {
        v.push(Verdict {
            what: "Well-behaved handshakes during the flood".into(),
            pass: false,
            detail: "the flood did not run".into(),
        });
    }
    if let Some((f, after)) = fd_around_flood(run) {
        let ok = f.iter().all(|&(a, b)| b as f64 <= a as f64 * 1.02 + 50.0);
        v.push(Verdict {
            what: "Descriptors back to their level once the flood is over".into(),
            pass: ok,
            detail: f
                .iter()
                .enumerate()
                .map(|(i, (a, b))| format!("moat #{i}: {a} before, {b} {after:.0} s after"))
                .collect::<Vec<_>>()
                .join(" · "),
        });
    }
    v
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

const BEGIN: &str =
    "<!-- BEGIN GENERATED by moat-bench soak: everything down to END is rewritten by each run -->";
const END: &str = "<!-- END GENERATED -->";

const MOAT_COLORS: [RGBColor; 4] = [
    RGBColor(230, 120, 20),
    RGBColor(40, 100, 200),
    RGBColor(40, 150, 60),
    RGBColor(140, 70, 170),
];

fn marks(run: &SoakRun, with_reloads: bool) -> Vec<Mark> {
    let mut m = Vec::new();
    if with_reloads {
        for r in &run.reloads {
            m.push(Mark {
                label: "certificate renewal".into(),
                color: RGBColor(90, 90, 220),
                from: r.t,
                to: r.t,
            });
        }
    }
    m.push(Mark {
        label: "every connection up".into(),
        color: RGBColor(20, 140, 20),
        from: run.soak.0,
        to: run.soak.0,
    });
    if let Some(r) = &run.restart {
        m.push(Mark {
            label: "broker restart".into(),
            color: RGBColor(150, 40, 170),
            from: r.t_stop,
            to: r.t_up.max(r.t_stop + 1.0),
        });
    }
    if let Some((a, b)) = run.flood_window {
        m.push(Mark {
            label: "flood".into(),
            color: RGBColor(220, 30, 30),
            from: a,
            to: b,
        });
    }
    m
}

fn draw_charts(run: &SoakRun, dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let moat_line = |i: usize, f: &dyn Fn(&Row) -> Option<f64>| Line {
        label: format!("moat #{i}"),
        color: MOAT_COLORS[i % MOAT_COLORS.len()],
        points: run.rows.iter().filter_map(|r| Some((r.t, f(r)?))).collect(),
    };
    let rss: Vec<Line> = (0..run.plan.replicas)
        .map(|i| moat_line(i, &|r: &Row| r.moat_rss_kib.get(i).map(|&k| mib(k))))
        .collect();
    let title = format!(
        "moat RSS per replica ({} connections each)",
        run.plan.per_replica + run.plan.subscribers.div_ceil(run.plan.replicas)
    );
    charts::timeseries(&dir.join("rss.png"), &title, "MiB", &rss, &marks(run, true))?;
    out.push((title, "rss.png".to_string()));

    let mut fds: Vec<Line> = (0..run.plan.replicas)
        .map(|i| moat_line(i, &|r: &Row| r.moat_fds.get(i).map(|&k| k as f64)))
        .collect();
    fds.push(Line {
        label: "Mosquitto".into(),
        color: RGBColor(110, 110, 110),
        points: run
            .rows
            .iter()
            .filter_map(|r| Some((r.t, r.mosq_fds? as f64)))
            .collect(),
    });
    let title = "Open file descriptors".to_string();
    charts::timeseries(
        &dir.join("fds.png"),
        &title,
        "descriptors",
        &fds,
        &marks(run, false),
    )?;
    out.push((title, "fds.png".to_string()));

    if let Some((fs, fe)) = run.flood_window {
        // From after the restart's reconnections, which would dwarf the rest.
        let a = (fs - 2.0 * run.plan.flood_s).max(settled(run)).min(fs);
        let b = fe + 1.5 * run.plan.flood_s;
        let mut per_sec: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for p in run.probes.iter().filter(|p| p.2 && p.0 >= a && p.0 <= b) {
            per_sec.entry(p.0.floor() as i64).or_default().push(p.4);
        }
        let mut p50 = Vec::new();
        let mut max = Vec::new();
        for (s, mut v) in per_sec {
            v.sort_by(f64::total_cmp);
            p50.push((s as f64, quantile(&v, 0.5)));
            max.push((s as f64, *v.last().unwrap_or(&0.0)));
        }
        let lines = [
            Line {
                label: "slowest probe of each second".into(),
                color: RGBColor(220, 30, 30),
                points: max,
            },
            Line {
                label: "median probe of each second".into(),
                color: RGBColor(40, 100, 200),
                points: p50,
            },
        ];
        let ms: Vec<Mark> = marks(run, false)
            .into_iter()
            .filter(|m| m.to >= a && m.from <= b)
            .map(|mut m| {
                m.from = m.from.max(a);
                m
            })
            .collect();
        let title = "Well-behaved handshakes around the flood (TCP + TLS + CONNACK)".to_string();
        charts::timeseries(&dir.join("latency.png"), &title, "ms", &lines, &ms)?;
        out.push((title, "latency.png".to_string()));
    }
    Ok(out)
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn secs(v: f64) -> String {
    if v < 120.0 {
        format!("{v:.0} s")
    } else {
        format!("{:.1} min", v / 60.0)
    }
}

/// The generated section.
fn markdown(run: &SoakRun, charts_dir: &str, charts: &[(String, String)]) -> String {
    let mut md = String::new();
    let p = &run.plan;
    let vs = verdicts(run);
    let _ = writeln!(md, "{BEGIN}\n");
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "Measured {} with `{}`: {} devices and {} subscribers through {} moat replicas for {} after a ramp of {}, {} in all.\n",
        run.measured_at,
        run.command,
        p.connections,
        p.subscribers,
        p.replicas,
        secs(p.duration_s),
        secs(run.ramp_s),
        secs(run.elapsed_s),
    );
    if let Some(a) = &run.aborted {
        let _ = writeln!(md, "**The run stopped early: {a}.**\n");
    }
    if let Some((ours, other)) = other_load(run) {
        let _ = write!(
            md,
            "During the soak its own processes (moat, Mosquitto, the clients, the harness) used {ours:.2} cores on average; everything else on the machine used {other:.2} cores"
        );
        if other > 0.2 {
            let _ = writeln!(
                md,
                ". **The machine was shared during this run** (other engineers' builds and benchmarks run on the same 2 cores): latencies and CPU figures may be worse than on a quiet machine; memory, descriptors, message counts and drops are not affected.\n"
            );
        } else {
            let _ = writeln!(md, ": the machine was otherwise quiet.\n");
        }
    }
    if !run.proxy_changes.is_empty() {
        let _ = writeln!(
            md,
            "moat was built from a working tree with uncommitted changes in `crates/proxy` (other work in progress): `{}`.\n",
            run.proxy_changes.replace('\n', "; ")
        );
    }

    let _ = writeln!(md, "### Verdicts\n");
    let _ = writeln!(md, "| criterion | verdict | figures |\n|---|---|---|");
    for v in &vs {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            v.what,
            if v.pass { "**pass**" } else { "**FAIL**" },
            v.detail
        );
    }
    let _ = writeln!(md);

    // Memory, descriptors, CPU.
    let figs = replica_figs(run);
    let _ = writeln!(md, "### Connections, memory and descriptors\n");
    let mut head = String::from("| |");
    let mut sep = String::from("|---|");
    for i in 0..p.replicas {
        let _ = write!(head, " moat #{i} |");
        sep.push_str("---:|");
    }
    let _ = writeln!(md, "{head}\n{sep}");
    let conns = p.per_replica + p.subscribers.div_ceil(p.replicas);
    let row = |md: &mut String, name: &str, f: &dyn Fn(&ReplicaFig) -> String| {
        let _ = write!(md, "| {name} |");
        for fig in &figs {
            let _ = write!(md, " {} |", f(fig));
        }
        let _ = writeln!(md);
    };
    row(
        &mut md,
        "connections held (devices and subscribers)",
        &|_| format!("{conns}"),
    );
    row(&mut md, "RSS before any client", &|f| {
        format!("{:.1} MiB", f.baseline_mib)
    });
    row(&mut md, "RSS with every connection up", &|f| {
        format!("{:.1} MiB", f.ramp_mib)
    });
    row(&mut md, "RSS per connection (baseline subtracted)", &|f| {
        format!("{:.1} KiB", f.kib_per_conn)
    });
    row(&mut md, "peak RSS, ramp and soak", &|f| {
        format!("{:.1} MiB", f.peak_mib)
    });
    row(&mut md, "RSS at the end of the soak", &|f| {
        format!("{:.1} MiB", f.final_mib)
    });
    row(
        &mut md,
        "open descriptors: all up / peak / at the end",
        &|f| format!("{} / {} / {}", f.fds_ramp, f.fds_peak, f.fds_final),
    );
    row(&mut md, "CPU over the soak (one core = 100 %)", &|f| {
        format!("{:.1} %", f.cpu_pct)
    });
    let mosq_rss = run
        .rows
        .iter()
        .filter_map(|r| r.mosq_rss_kib)
        .max()
        .unwrap_or(0);
    let mosq_fds = run
        .rows
        .iter()
        .filter_map(|r| r.mosq_fds)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "\nMosquitto peaked at {:.1} MiB RSS and {mosq_fds} open descriptors. Every process's open-file limit: {}. moat's `max_connections`: {} per replica.\n",
        mib(mosq_rss),
        p.nofile,
        p.max_connections
    );
    for (title, file) in charts.iter().filter(|c| c.1 != "latency.png") {
        let _ = writeln!(md, "![{title}]({charts_dir}/{file})\n");
    }

    // Messages.
    let m = &run.messages;
    let _ = writeln!(md, "### Messages (QoS 1)\n");
    let _ = writeln!(
        md,
        "| published | sent (PUBACK received) | received, unique | duplicates | **difference** | lost | never acknowledged | retransmitted (DUP) | drain at the end |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | **{}** | {} | {} | {} | {:.0} s |\n",
        m.published,
        m.sent,
        m.unique,
        m.duplicates,
        m.difference,
        m.lost,
        m.unacked,
        m.retransmits,
        m.drain_s
    );
    let rate = m.published as f64 / p.duration_s;
    let _ = writeln!(
        md,
        "About {rate:.0} messages a second (each device every {:.0} s). {} PUBLISH frames reached the subscribers in all; {} payloads were not the test's.\n",
        p.publish_interval_s, m.received, m.malformed
    );

    // Reloads.
    let _ = writeln!(md, "### Certificate renewals\n");
    let mut landed: Vec<f64> = run
        .reloads
        .iter()
        .flat_map(|r| r.replicas.iter().filter_map(|l| l.landed_ms))
        .collect();
    landed.sort_by(f64::total_cmp);
    let good = run
        .reloads
        .iter()
        .filter(|r| {
            r.error.is_none()
                && r.replicas
                    .iter()
                    .all(|l| l.success && l.serves_new && !l.failure)
        })
        .count();
    let _ = writeln!(
        md,
        "{} renewals, one every {:.0} s (serials {} to {}): {good} landed on every replica, counted in `moat_certificate_reloads_total{{result=\"success\"}}` and served to a fresh handshake. From the rename to the metric: median {}, slowest {} (the watcher's 500 ms debounce included).\n",
        run.reloads.len(),
        p.reload_interval_s,
        run.reloads.first().map_or(0, |r| r.serial),
        run.reloads.last().map_or(0, |r| r.serial),
        ms(quantile(&landed, 0.5)),
        ms(landed.last().copied().unwrap_or(f64::NAN)),
    );
    for r in run.reloads.iter().filter(|r| {
        r.error.is_some()
            || !r
                .replicas
                .iter()
                .all(|l| l.success && l.serves_new && !l.failure)
    }) {
        let _ = writeln!(
            md,
            "- at {:.0} s, serial {}: {}",
            r.t,
            r.serial,
            r.error
                .clone()
                .unwrap_or_else(|| format!("{:?}", r.replicas))
        );
    }

    // Restart.
    let _ = writeln!(md, "### Broker restart\n");
    if let Some(r) = &run.restart {
        let closed: u64 = run.restart_closes.values().sum();
        let _ = writeln!(
            md,
            "SIGTERM at {:.0} s; Mosquitto saved its sessions and exited {:.1} s later ({}{}); it was down for {:.1} s and listened again at {:.0} s. {}\n",
            r.t_stop,
            r.t_down - r.t_stop,
            r.exit,
            if r.killed { ", killed" } else { "" },
            r.t_up - r.t_down,
            r.t_up,
            r.all_back.map_or("Not every client came back.".to_string(), |t| format!(
                "Every device and subscriber was connected again {:.1} s after it came back.",
                t - r.t_up
            )),
        );
        let _ = writeln!(
            md,
            "{closed} established connections were closed by the restart (closes between 1 s before the SIGTERM and {RESTART_GRACE_S:.0} s after the broker listened again):\n"
        );
        let _ = writeln!(md, "| how the client saw it | connections |\n|---|---:|");
        for (k, n) in &run.restart_closes {
            let _ = writeln!(md, "| {k} | {n} |");
        }
        let _ = writeln!(md);
        if !run.mosquitto_log.is_empty() {
            let _ = writeln!(md, "Mosquitto's log around it:\n\n```");
            for l in &run.mosquitto_log {
                let _ = writeln!(md, "{l}");
            }
            let _ = writeln!(md, "```\n");
        }
    } else {
        let _ = writeln!(md, "The restart did not happen.\n");
    }

    // Flood.
    let _ = writeln!(md, "### Flood\n");
    if let (Some(f), Some((a, b))) = (&run.flood, run.flood_window) {
        let _ = writeln!(
            md,
            "From {a:.0} s to {b:.0} s ({:.0} s), spread over the replicas:\n",
            f.secs
        );
        let _ = writeln!(
            md,
            "- **half-open:** {} connections that send nothing ({} opened in all, at most {} at once); moat closed {} of them after a median of {:.1} s (longest {:.1} s), its handshake timeout; {} could not connect;",
            f.half_open_target,
            f.half_open_opened,
            f.half_open_peak,
            f.half_open_closed_by_server,
            f.half_open_hold_p50_s,
            f.half_open_hold_max_s,
            f.half_open_connect_errors
        );
        let _ = writeln!(
            md,
            "- **garbage:** {} connections sending {:.1} MB of random bytes ({:.0} a second); moat closed {} at once, {} were still open after 5 s, {} could not connect;",
            f.garbage_conns,
            f.garbage_bytes as f64 / 1e6,
            f.garbage_conns as f64 / f.secs.max(1.0),
            f.garbage_closed_by_server,
            f.garbage_timeouts,
            f.garbage_connect_errors
        );
        let _ = writeln!(
            md,
            "- **slowloris:** {} clients trickling a real {}-byte ClientHello one byte a second ({} sessions); moat closed {} after a median of {:.1} s (longest {:.1} s), at most {} bytes in.\n",
            p.slowloris,
            f.client_hello_len,
            f.slowloris_sessions,
            f.slowloris_closed_by_server,
            f.slowloris_hold_p50_s,
            f.slowloris_hold_max_s,
            f.slowloris_bytes_max
        );
    } else {
        let _ = writeln!(md, "The flood did not run.\n");
    }

    // Latency.
    let _ = writeln!(md, "### Handshake latency of well-behaved clients\n");
    let _ = writeln!(
        md,
        "A probe opens a new connection every 100 ms, alternating between the replicas: TCP connect, a full TLS 1.3 handshake and MQTT CONNECT/CONNACK (a clean session), then DISCONNECT.\n"
    );
    let _ = writeln!(
        md,
        "| window | seconds | probes | failed | p50 | p99 | max | TCP + TLS only: p50 / p99 |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for w in windows(run) {
        let _ = writeln!(
            md,
            "| {} | {:.0}–{:.0} | {} | {} | {} | {} | {} | {} / {} |",
            w.name,
            w.from,
            w.to,
            w.n,
            w.failures,
            ms(w.p50),
            ms(w.p99),
            ms(w.max),
            ms(w.hs_p50),
            ms(w.hs_p99)
        );
    }
    let _ = writeln!(md);
    for (title, file) in charts.iter().filter(|c| c.1 == "latency.png") {
        let _ = writeln!(md, "![{title}]({charts_dir}/{file})\n");
    }

    // Dropped connections.
    let _ = writeln!(md, "### Dropped established connections\n");
    let restart_total: u64 = run.restart_closes.values().sum();
    let _ = writeln!(
        md,
        "| cause | connections |\n|---|---:|\n| the broker restart | {restart_total} |\n| anything else | **{}** |\n",
        run.unexplained.len()
    );
    for d in run.unexplained.iter().take(20) {
        let _ = writeln!(
            md,
            "- {:.1} s: {} ({}), up for {:.1} s",
            d.t, d.who, d.kind, d.held_s
        );
    }
    if !run.unexplained.is_empty() {
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "Sessions established in all (first ones and reconnections): {}; failed connection attempts: {}. Failed attempts are retried and are not a criterion; while the broker is down every attempt fails (moat completes the handshake, cannot reach the broker within its 5 s connect timeout and closes), so most of them fall in the restart. A sample of their errors is in `soak.json`.\n",
        run.connects, run.connect_failures
    );

    // moat at the end.
    let _ = writeln!(md, "### moat's own counters at the end\n");
    let keys: Vec<String> = run
        .moat_metrics
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = writeln!(md, "{head}\n{sep}");
    for k in keys {
        let _ = write!(md, "| {k} |");
        for m in &run.moat_metrics {
            let _ = write!(
                md,
                " {} |",
                m.get(&k).map_or("–".into(), |v| format!("{v:.0}"))
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
    for (i, log) in run.moat_log.iter().enumerate() {
        let _ = writeln!(
            md,
            "moat #{i}'s log (level `warn,moat::reload=info`), lines by message:\n"
        );
        let _ = writeln!(md, "| lines | message |\n|---:|---|");
        for (k, n) in log {
            let _ = writeln!(
                md,
                "| {n} | `{}` |",
                k.replace('|', "\\|").replace('`', "'")
            );
        }
        let _ = writeln!(md);
    }

    // Machine.
    let _ = writeln!(md, "### Machine\n\n| | |\n|---|---|");
    // The benchmarks' peer proxies play no part here.
    let peers = ["nginx", "haproxy", "stunnel"];
    for (k, v) in run
        .machine
        .iter()
        .filter(|(k, _)| !peers.iter().any(|p| k.contains(p)))
    {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "| open files per process | {} |", p.nofile);
    let _ = writeln!(
        md,
        "\nRaw data: [`soak.json`]({charts_dir}/soak.json): everything above, the samples of every second and every probe (`moat-bench soak --report-from` writes this section again from it).\n"
    );
    let _ = writeln!(md, "{END}");
    md
}

/// The summary printed on stdout.
fn summary(run: &SoakRun) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "moat soak: {} devices + {} subscribers over {} replicas, {} (ramp {})",
        run.plan.connections,
        run.plan.subscribers,
        run.plan.replicas,
        secs(run.plan.duration_s),
        secs(run.ramp_s)
    );
    for (i, f) in replica_figs(run).iter().enumerate() {
        let _ = writeln!(
            s,
            "  moat #{i}: RSS {:.1} MiB before clients, {:.1} all up ({:.1} KiB/conn), peak {:.1}, end {:.1}; fds {} / peak {} / end {}; CPU {:.1} %",
            f.baseline_mib, f.ramp_mib, f.kib_per_conn, f.peak_mib, f.final_mib, f.fds_ramp, f.fds_peak, f.fds_final, f.cpu_pct
        );
    }
    let m = &run.messages;
    let _ = writeln!(
        s,
        "  messages: sent {} received {} unique ({} dups), difference {}, lost {}, unacked {}",
        m.sent, m.unique, m.duplicates, m.difference, m.lost, m.unacked
    );
    for w in windows(run) {
        let _ = writeln!(
            s,
            "  probe {:<27} n={:<4} failed={:<3} p50 {} p99 {} max {}",
            w.name,
            w.n,
            w.failures,
            ms(w.p50),
            ms(w.p99),
            ms(w.max)
        );
    }
    if let Some((ours, other)) = other_load(run) {
        let _ = writeln!(
            s,
            "  CPU: soak {ours:.2} cores, everything else {other:.2} cores"
        );
    }
    for v in verdicts(run) {
        let _ = writeln!(
            s,
            "  [{}] {}: {}",
            if v.pass { "pass" } else { "FAIL" },
            v.what,
            v.detail
        );
    }
    s
}

/// Writes soak.json, the charts and the report's generated
/// section.
fn write_report(run: &SoakRun, out: &Path) -> Result<()> {
    let dir = out.with_extension("");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string(run)?;
    std::fs::write(dir.join("soak.json"), json)?;
    let charts = match draw_charts(run, &dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: no charts: {e:#}");
            Vec::new()
        }
    };
    let charts_dir = dir
        .file_name()
        .map_or("reliability".into(), |n| n.to_string_lossy().into_owned());
    let generated = markdown(run, &charts_dir, &charts);
    let existing = std::fs::read_to_string(out).unwrap_or_default();
    let text = match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &existing[..b],
            generated.trim_end(),
            &existing[e + END.len()..]
        ),
        _ if existing.is_empty() => format!("# Reliability: the soak test\n\n{generated}"),
        _ => format!("{}\n\n{generated}", existing.trim_end()),
    };
    std::fs::write(out, text)?;
    eprintln!("soak: wrote {} and {}/", out.display(), dir.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// The moat binary: --moat-bin, $MOAT_BIN, or `moat` next to this binary.
fn find_moat(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let p = match explicit.or_else(|| std::env::var_os("MOAT_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("own directory")?
            .join("moat"),
    };
    if !p.is_file() {
        bail!(
            "the moat binary {} does not exist: build it (`cargo build --release -p moat`), pass --moat-bin, or run scripts/soak",
            p.display()
        );
    }
    Ok(p.canonicalize()?)
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "Ctrl-C";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

fn rerender(from: &Path, out: Option<PathBuf>) -> Result<()> {
    let text = std::fs::read_to_string(from).with_context(|| format!("read {}", from.display()))?;
    let run: SoakRun =
        serde_json::from_str(&text).with_context(|| format!("parse {}", from.display()))?;
    println!("{}", summary(&run));
    let out = out.unwrap_or_else(|| crate::model::workspace_root().join("docs/reliability.md"));
    write_report(&run, &out)
}

/// `moat-bench soak`.
pub fn main(args: SoakArgs) -> Result<()> {
    if let Some(from) = &args.report_from {
        return rerender(from, args.out.clone());
    }
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raise the open-file limit")?;
    crate::peers::require(&[crate::peers::MOSQUITTO])?;
    let plan = Plan::new(&args, nofile)?;
    let moat_bin = find_moat(args.moat_bin.clone())?;
    let out = if args.no_write {
        None
    } else {
        args.out.clone().or_else(|| {
            plan.full_size()
                .then(|| crate::model::workspace_root().join("docs/reliability.md"))
        })
    };
    let command = std::env::var("MOAT_SOAK_COMMAND").unwrap_or_else(|_| {
        let a: Vec<String> = std::env::args().skip(1).collect();
        format!("moat-bench {}", a.join(" "))
    });
    let tmp = tempfile::Builder::new().prefix("moat-soak-").tempdir()?;
    eprintln!(
        "soak: {} devices ({} per replica, {} worker processes) and {} subscribers through {} moat replicas to one Mosquitto, for {} once all are up; moat = {}; scratch in {}",
        plan.connections,
        plan.per_replica,
        plan.workers,
        plan.subscribers,
        plan.replicas,
        secs(plan.duration_s),
        moat_bin.display(),
        tmp.path().display()
    );
    eprintln!(
        "soak: timeline: renewals every {:.0} s, broker restart at +{:.0} s ({:.0} s down), flood at +{:.0} s for {:.0} s",
        plan.reload_interval_s, plan.restart_at_s, plan.broker_down_s, plan.flood_at_s, plan.flood_s
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&plan, &moat_bin, tmp.path(), command) => r,
            s = interrupted() => Err(anyhow!("interrupted ({s}); every process it started was stopped")),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let run = match result {
        Ok(r) => r,
        Err(e) => {
            let kept = tmp.keep();
            eprintln!("soak: logs kept in {}", kept.display());
            return Err(e);
        }
    };
    println!("{}", summary(&run));
    match &out {
        Some(out) => write_report(&run, out)?,
        None => {
            let scratch = tmp.path().join("report.md");
            write_report(&run, &scratch)?;
            eprintln!(
                "soak: not a full-size run, so docs/reliability.md was left alone (use --out to write one)"
            );
        }
    }
    let failed: Vec<String> = verdicts(&run)
        .into_iter()
        .filter(|v| !v.pass)
        .map(|v| v.what)
        .collect();
    if failed.is_empty() && out.is_some() {
        return Ok(());
    }
    let kept = tmp.keep();
    eprintln!("soak: logs and scratch files kept in {}", kept.display());
    if failed.is_empty() {
        return Ok(());
    }
    bail!("soak criteria failed:\n  - {}", failed.join("\n  - "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    /// Run with the e2e package in the build (`cargo test --workspace`),
    /// this also proves the pipe formats survive `arbitrary_precision`.
    #[test]
    fn worker_messages_round_trip() {
        let spec = WorkerSpec::Devices(DeviceSpec {
            targets: vec!["127.0.0.1:8883".parse().unwrap()],
            ca: "ca.pem".into(),
            first: 2500,
            count: 2500,
            groups: 4,
            interval_s: 30.5,
            keep_alive: 61,
            ramp_concurrency: 32,
        });
        let back: WorkerSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert!(matches!(back, WorkerSpec::Devices(d) if d.interval_s == 30.5 && d.first == 2500));
        let events = [
            WEvent::Up,
            WEvent::Stats(WStats {
                published: 3,
                closes: vec![Close {
                    t_ms: 1,
                    who: "d1".into(),
                    kind: "eof".into(),
                    held_s: 2.5,
                }],
                ..WStats::default()
            }),
            WEvent::Final(Box::new(WFinal {
                flood: Some(FloodStats {
                    half_open_hold_p50_s: 10.5,
                    ..FloodStats::default()
                }),
                ..WFinal::default()
            })),
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            let back: WEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
    }

    #[test]
    fn seen_counts_unique_and_gaps() {
        let mut s = Seen {
            bits: vec![Vec::new(); 3],
        };
        assert_eq!(s.record(1, 0), Some(true));
        assert_eq!(s.record(1, 2), Some(true));
        assert_eq!(s.record(1, 2), Some(false));
        assert_eq!(s.record(1, 70), Some(true));
        assert_eq!(s.record(9, 0), None);
        let f = s.final_report();
        assert_eq!(f.unique, vec![0, 3, 0]);
        assert_eq!(f.max_seq, vec![-1, 70, -1]);
        assert_eq!(f.gaps.len(), 68);
        assert_eq!(f.gaps[0], (1, 1));
    }

    #[test]
    fn parses_metrics() {
        let text = "# HELP x\nmoat_certificate_reloads_total{listener=\"soak\",result=\"success\"} 3\nmoat_certificate_reloads_total{listener=\"soak\",result=\"failure\"} 1\nmoat_connections_active{listener=\"soak\"} 5002\nmoat_ready 1\n";
        assert_eq!(
            metric(
                text,
                "moat_certificate_reloads_total",
                &[("result", "success")]
            ),
            3.0
        );
        assert_eq!(metric(text, "moat_certificate_reloads_total", &[]), 4.0);
        assert_eq!(metric(text, "moat_connections_active", &[]), 5002.0);
        assert_eq!(metric(text, "moat_ready", &[]), 1.0);
        let by = by_label(text, "moat_certificate_reloads_total", "result", &[]);
        assert_eq!(by.get("failure"), Some(&1.0));
    }

    #[test]
    fn plan_fits_the_descriptor_limit() {
        let args = SoakArgs {
            duration: Duration::from_secs(600),
            connections: 10_000,
            replicas: 2,
            publish_interval: Duration::from_secs(30),
            subscribers: 4,
            reload_interval: Duration::from_secs(10),
            broker_down: Duration::from_secs(5),
            flood: None,
            half_open: 5000,
            garbage_rate: 300.0,
            slowloris: 10,
            handshake_bound_ms: 250.0,
            per_worker: 2500,
            moat_bin: None,
            out: None,
            no_write: false,
            report_from: None,
        };
        let p = Plan::new(&args, 20_000).unwrap();
        assert_eq!((p.per_replica, p.workers, p.flood_s), (5000, 4, 45.0));
        assert!(p.full_size());
        let one = SoakArgs {
            replicas: 1,
            ..args
        };
        assert!(Plan::new(&one, 20_000).is_err());
    }
}
