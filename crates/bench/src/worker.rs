//! Client worker processes, for the scenarios that hold thousands of
//! connections at once (idle memory, reconnect storm). Each worker holds at
//! most [`PER_WORKER`] connections so that no process nears the ~20,000
//! open-file limit of this machine.
//!
//! The orchestrator starts `moat-bench worker --spec JSON` and talks to it
//! over pipes: the worker prints JSON events on stdout (`ready`, then
//! `established`) and reads commands on stdin (`go` starts a storm; EOF
//! closes every connection and ends the worker).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client;
use crate::mqtt;
use crate::wsclient;

/// Connections per worker process, at most.
pub const PER_WORKER: usize = 5000;

/// What a worker does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Open `count` connections (handshake, one MQTT CONNECT echoed by the
    /// echo backend), report, and hold them idle.
    Idle,
    /// Like `Idle`, over MQTT over WebSockets: after the handshake, an
    /// HTTP/1.1 upgrade to `/mqtt`, then the CONNECT in one masked binary
    /// frame, echoed back in server frames.
    #[serde(rename = "idle_wss")]
    IdleWss,
    /// Wait for `go`, then connect `count` devices at once to a broker
    /// (CONNECT, wait for CONNACK), report, and hold them.
    Storm,
}

/// A worker's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// Idle or storm.
    pub mode: Mode,
    /// The proxy's address.
    pub target: SocketAddr,
    /// The CA to trust.
    pub ca: PathBuf,
    /// Connections to open.
    pub count: usize,
    /// Prefix of the MQTT client ids (unique per worker).
    pub id_prefix: String,
    /// Idle mode: connections being opened at once.
    pub concurrency: usize,
    /// Give up on a device after this many seconds.
    pub deadline_s: f64,
}

/// What a worker reports once its connections are up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Established {
    /// Connections that completed.
    pub ok: usize,
    /// Connections that never completed before the deadline.
    pub failed: usize,
    /// Attempts that failed and were retried (storm).
    pub retries: usize,
    /// From the start (idle) or `go` (storm) to the last completion.
    pub elapsed_ms: f64,
    /// The first few errors, for the report.
    pub errors: Vec<String>,
}

// Externally tagged on purpose: an internally tagged enum is buffered through
// serde's `Content`, and with serde_json's `arbitrary_precision` (which the
// e2e package turns on, and Cargo unifies across the workspace) every number
// then arrives as a map and `elapsed_ms` fails to parse.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Event {
    Ready,
    Established(Established),
}

type Conn = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn open(spec: &Spec, cfg: &Arc<rustls::ClientConfig>, i: usize) -> std::io::Result<Conn> {
    let frame = mqtt::connect(&format!("{}-{i}", spec.id_prefix), 600);
    if spec.mode == Mode::IdleWss {
        return wsclient::open(spec.target, cfg, &frame, i as u64).await;
    }
    let mut s = client::connect(spec.target, cfg).await?;
    match spec.mode {
        Mode::Idle | Mode::IdleWss => client::echo_once(&mut s, &frame).await?,
        Mode::Storm => {
            client::step(s.write_all(&frame)).await?;
            let mut ack = [0u8; 4];
            client::step(s.read_exact(&mut ack)).await?;
            if ack != mqtt::CONNACK_OK {
                return Err(std::io::Error::other(format!(
                    "unexpected CONNACK {ack:02x?}"
                )));
            }
        }
    }
    Ok(s)
}

/// Prints `e` as one JSON line on stdout, flushed at once: how a worker
/// process (this one or the soak's) speaks to its orchestrator.
pub(crate) fn emit<E: Serialize>(e: &E) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(e).expect("event serializes")
    );
    let _ = out.flush();
}

/// `moat-bench worker --spec JSON`.
pub fn main(spec: &str) -> Result<()> {
    let spec: Spec = serde_json::from_str(spec).context("worker spec")?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);

    // Commands from the orchestrator, read on a plain thread.
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => {
                    let _ = tx.send(Some(l));
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if spec.mode == Mode::Storm {
            emit(&Event::Ready);
            loop {
                match rx.recv().await {
                    Some(Some(l)) if l.trim() == "go" => break,
                    Some(Some(_)) => {}
                    _ => return Ok(()),
                }
            }
        }
        let spec = Arc::new(spec);
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::with_capacity(spec.count)));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let retries = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(Duration::ZERO));
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(spec.deadline_s);
        let limit = Arc::new(tokio::sync::Semaphore::new(match spec.mode {
            Mode::Idle | Mode::IdleWss => spec.concurrency.max(1),
            Mode::Storm => spec.count.max(1),
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..spec.count {
            let (spec, cfg, conns, errors, retries, failed, last, limit) = (
                spec.clone(),
                cfg.clone(),
                conns.clone(),
                errors.clone(),
                retries.clone(),
                failed.clone(),
                last.clone(),
                limit.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire().await;
                loop {
                    match open(&spec, &cfg, i).await {
                        Ok(c) => {
                            conns.lock().expect("lock").push(c);
                            let mut l = last.lock().expect("lock");
                            *l = (*l).max(start.elapsed());
                            return;
                        }
                        Err(e) => {
                            {
                                let mut errs = errors.lock().expect("lock");
                                if errs.len() < 5 {
                                    errs.push(e.to_string());
                                }
                            }
                            if spec.mode != Mode::Storm || Instant::now() >= deadline {
                                failed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let ok = conns.lock().expect("lock").len();
        let established = Established {
            ok,
            failed: failed.load(Ordering::Relaxed),
            retries: retries.load(Ordering::Relaxed),
            elapsed_ms: last.lock().expect("lock").as_secs_f64() * 1e3,
            errors: errors.lock().expect("lock").clone(),
        };
        emit(&Event::Established(established));
        // Hold the connections until the orchestrator closes stdin.
        while let Some(Some(_)) = rx.recv().await {}
        Ok(())
    })
}

/// The orchestrator's handle on a worker process.
pub struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    events: std::sync::mpsc::Receiver<String>,
}

impl WorkerProc {
    /// Starts `exe worker --spec ...`.
    pub fn start(exe: &std::path::Path, spec: &Spec) -> Result<Self> {
        let mut child = Command::new(exe)
            .arg("worker")
            .arg("--spec")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start a client worker")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            events: rx,
        })
    }

    async fn next_event(&mut self, timeout: Duration) -> Result<Event> {
        let until = Instant::now() + timeout;
        loop {
            match self.events.try_recv() {
                Ok(l) => {
                    return serde_json::from_str(&l).with_context(|| format!("worker said {l:?}"))
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    bail!("client worker ended early ({:?})", self.child.try_wait())
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            if Instant::now() > until {
                bail!("client worker said nothing for {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for `ready` (storm mode).
    pub async fn ready(&mut self) -> Result<()> {
        match self.next_event(Duration::from_secs(60)).await? {
            Event::Ready => Ok(()),
            Event::Established(_) => bail!("worker established before go"),
        }
    }

    /// Sends `go` (storm mode).
    pub fn go(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin closed")?;
        writeln!(stdin, "go")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the worker's report.
    pub async fn established(&mut self, timeout: Duration) -> Result<Established> {
        match self.next_event(timeout).await? {
            Event::Established(e) => Ok(e),
            Event::Ready => bail!("unexpected ready"),
        }
    }

    /// Closes every connection and waits for the worker to end.
    pub fn finish(mut self) {
        self.stdin.take();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Splits `total` connections over as few workers as [`PER_WORKER`] allows.
pub fn split(total: usize) -> Vec<usize> {
    let n = total.div_ceil(PER_WORKER).max(1);
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_evenly() {
        assert_eq!(split(9900), vec![4950, 4950]);
        assert_eq!(split(200), vec![200]);
        assert_eq!(split(10001), vec![3334, 3334, 3333]);
    }
}
