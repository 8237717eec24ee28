//! The *flood* role: half-open handshakes, garbage connections and
//! slowloris clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client;
use crate::soak::protocol::{
    emit, nap, spawn_reporter, Counters, FloodSpec, FloodStats, Phase, WEvent, WFinal,
};
use crate::soak::util::{quantile, within, Rng};

/// The first flight of a TLS client (its ClientHello), from rustls.
pub(crate) fn client_hello(cfg: &Arc<ClientConfig>) -> Vec<u8> {
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
pub(crate) async fn connect_from(src: [u8; 4], target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((src, 0)))?;
    within(Duration::from_secs(5), "connect", sock.connect(target)).await
}

#[derive(Default)]
pub(crate) struct FloodCounters {
    pub(crate) half_open_opened: AtomicU64,
    pub(crate) half_open_peak: AtomicUsize,
    pub(crate) half_open_closed: AtomicU64,
    pub(crate) half_open_errors: AtomicU64,
    pub(crate) garbage_conns: AtomicU64,
    pub(crate) garbage_bytes: AtomicU64,
    pub(crate) garbage_closed: AtomicU64,
    pub(crate) garbage_timeouts: AtomicU64,
    pub(crate) garbage_errors: AtomicU64,
    pub(crate) slow_sessions: AtomicU64,
    pub(crate) slow_closed: AtomicU64,
    pub(crate) slow_bytes_max: AtomicU64,
    pub(crate) half_open_holds: Mutex<Vec<f64>>,
    pub(crate) slow_holds: Mutex<Vec<f64>>,
}

pub(crate) fn p50_max(v: &Mutex<Vec<f64>>) -> (f64, f64) {
    let mut v = v.lock().expect("lock").clone();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    (quantile(&v, 0.5), v[v.len() - 1])
}

/// What every flood task shares: the counters, the targets and the end.
struct Flood {
    c: Arc<Counters>,
    f: Arc<FloodCounters>,
    targets: Arc<Vec<SocketAddr>>,
    end: tokio::time::Instant,
}

/// The flood role: all three kinds at once, until its time is up or it is
/// told to quit; then its figures as the final report.
pub(crate) async fn flood(spec: FloodSpec, phase: watch::Receiver<Phase>) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let hello = client_hello(&cfg);
    let started = Instant::now();
    let fl = Flood {
        end: tokio::time::Instant::now() + Duration::from_secs_f64(spec.duration_s),
        c: Arc::new(Counters::default()),
        f: Arc::new(FloodCounters::default()),
        targets: Arc::new(spec.targets.clone()),
    };
    let done = Arc::new(AtomicBool::new(false));
    let reporter = spawn_reporter(fl.c.clone(), done.clone());
    let mut tasks = tokio::task::JoinSet::new();
    fl.spawn_half_open(&mut tasks, &spec, &phase);
    fl.spawn_slowloris(&mut tasks, &spec, &hello);
    fl.spawn_garbage(&mut tasks, &spec);

    let mut phase_w = phase.clone();
    let quit = tokio::select! {
    _ = tokio::time::sleep_until(fl.end) => false,
    _ = async { while !nap(Duration::from_secs(3600), &mut phase_w).await {} } => true};
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let stats = flood_stats(&fl.f, &spec, started, hello.len());
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

impl Flood {
    /// Half-open: connect and say nothing; when moat closes one (its
    /// handshake timeout), open it again.
    fn spawn_half_open(
        &self,
        tasks: &mut JoinSet<()>,
        spec: &FloodSpec,
        phase: &watch::Receiver<Phase>,
    ) {
        let end = self.end;
        let stagger = Duration::from_secs(2).as_secs_f64() / spec.half_open.max(1) as f64;
        for i in 0..spec.half_open {
            let (c, f, targets, mut phase) = (
                self.c.clone(),
                self.f.clone(),
                self.targets.clone(),
                phase.clone(),
            );
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
                    _ = tokio::time::sleep_until(end) => false};
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
    }

    /// Slowloris: a real ClientHello, one byte a second.
    fn spawn_slowloris(&self, tasks: &mut JoinSet<()>, spec: &FloodSpec, hello: &[u8]) {
        let end = self.end;
        for i in 0..spec.slowloris {
            let (f, targets, hello) = (self.f.clone(), self.targets.clone(), hello.to_vec());
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
                        _ = tokio::time::sleep_until(end) => break false}
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
    }

    /// Garbage: random bytes on new connections, at a steady rate.
    fn spawn_garbage(&self, tasks: &mut JoinSet<()>, spec: &FloodSpec) {
        let (f, targets, end) = (self.f.clone(), self.targets.clone(), self.end);
        let rate = spec.garbage_rate.max(0.0);
        let concurrency = spec.garbage_concurrency.max(1);
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
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
                        garbage_conn(&f, src, target, &junk).await;
                    });
                }
            }
            // Let the last ones finish (each is bounded by 5 s + 5 s).
            let _ = tokio::time::timeout(
                Duration::from_secs(12),
                limit.acquire_many(concurrency as u32),
            )
            .await;
        });
    }
}

/// One garbage connection: send `junk`, then wait up to 5 s for moat to
/// close it.
async fn garbage_conn(f: &FloodCounters, src: [u8; 4], target: SocketAddr, junk: &[u8]) {
    let mut s = match connect_from(src, target).await {
        Ok(s) => s,
        Err(_) => {
            f.garbage_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    f.garbage_conns.fetch_add(1, Ordering::Relaxed);
    if s.write_all(junk).await.is_ok() {
        f.garbage_bytes
            .fetch_add(junk.len() as u64, Ordering::Relaxed);
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
}

/// The flood's figures, from its counters.
fn flood_stats(
    f: &FloodCounters,
    spec: &FloodSpec,
    started: Instant,
    client_hello_len: usize,
) -> FloodStats {
    let (hp50, hmax) = p50_max(&f.half_open_holds);
    let (sp50, smax) = p50_max(&f.slow_holds);
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    FloodStats {
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
        client_hello_len,
    }
}
