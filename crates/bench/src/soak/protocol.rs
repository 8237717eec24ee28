//! What the orchestrator and its worker processes say to each other: the
//! worker specs, the events on stdout, the phases set from stdin, and the
//! counters a worker reports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::soak::util::unix_ms;

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
pub(crate) enum WEvent {
    /// Every connection of the worker has had its first session.
    Up,
    Stats(WStats),
    Final(Box<WFinal>),
}

pub(crate) fn emit(e: &WEvent) {
    crate::worker::emit(e);
}

/// The phases a worker goes through, driven by commands on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Run,
    /// Devices: publish nothing new, get the rest acknowledged.
    Stop,
    /// Close everything and end.
    Quit,
}

/// Counters shared by the sessions of one worker.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicUsize,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retransmits: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) unique: AtomicU64,
    pub(crate) dups: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) flushed: AtomicUsize,
    pub(crate) up: AtomicUsize,
    pub(crate) half_open: AtomicUsize,
    pub(crate) closes: Mutex<Vec<Close>>,
    pub(crate) errors: Mutex<Vec<String>>,
}

impl Counters {
    pub(crate) fn close(&self, who: String, kind: String, held: Duration) {
        eprintln!("closed by the other side: {who} ({kind}) after {held:.1?}");
        self.closes.lock().expect("lock").push(Close {
            t_ms: unix_ms(),
            who,
            kind,
            held_s: held.as_secs_f64(),
        });
    }

    /// A session is established: counts the connect and the live session,
    /// and the connection as up when it is its `first` session (clearing
    /// `first`). The session's start, for how long it was held.
    pub(crate) fn session_up(&self, first: &mut bool) -> Instant {
        if std::mem::take(first) {
            self.up.fetch_add(1, Ordering::Relaxed);
        }
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.connected.fetch_add(1, Ordering::Relaxed);
        Instant::now()
    }

    /// A connect attempt failed with `e`.
    pub(crate) fn connect_failed(&self, e: String) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        self.error(e);
    }

    pub(crate) fn error(&self, e: String) {
        let mut errs = self.errors.lock().expect("lock");
        if errs.len() < 5 {
            errs.push(e);
        }
    }

    pub(crate) fn snapshot(&self) -> WStats {
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
pub(crate) fn spawn_reporter(
    c: Arc<Counters>,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
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
pub(crate) async fn nap(d: Duration, phase: &mut watch::Receiver<Phase>) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        if *phase.borrow() == Phase::Quit {
            return true;
        }
        tokio::select! {
        _ = tokio::time::sleep_until(until) => return false,
        r = phase.changed() => if r.is_err() { return true }}
    }
}
