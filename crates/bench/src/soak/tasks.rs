//! The timeline and the tasks that run beside the soak: the `/proc`
//! sampler, the handshake probe, the certificate renewals, the broker
//! restart, and the summaries of the logs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rustls::ClientConfig;
use tokio::sync::watch;

use crate::client;
use crate::procstat;
use crate::soak::children::{start_mosquitto, Live, Managed, Replica};
use crate::soak::metrics::{by_label, metric, scrape};
use crate::soak::pki::SoakPki;
use crate::soak::plan::{
    EventRec, Landing, ProbeRec, ReloadRec, RestartRec, Row, PROBES_IN_FLIGHT,
};
use crate::soak::util::mqtt_session;

/// The timeline, shared with the tasks.
#[derive(Clone)]
pub(crate) struct Clock {
    pub(crate) t0: Instant,
    pub(crate) t0_unix_ms: u64,
    pub(crate) events: Arc<Mutex<Vec<EventRec>>>,
}

impl Clock {
    pub(crate) fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub(crate) fn event(&self, kind: &str, detail: impl Into<String>) {
        let detail = detail.into();
        let t = self.now();
        eprintln!("soak: [{t:7.1} s] {kind} {detail}");
        self.events.lock().expect("lock").push(EventRec {
            t,
            kind: kind.into(),
            detail,
        });
    }

    pub(crate) fn of_unix_ms(&self, ms: u64) -> f64 {
        (ms as f64 - self.t0_unix_ms as f64) / 1000.0
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn sampler(
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
        _ = stop.changed() => break}
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

pub(crate) async fn probe_loop(
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
        _ = stop.changed() => break}
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
pub(crate) async fn reload_counts(admins: &[SocketAddr]) -> Vec<Option<(f64, f64)>> {
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
pub(crate) async fn serves(target: SocketAddr, cfg: &Arc<ClientConfig>, der: &[u8]) -> bool {
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
pub(crate) async fn reload_loop(
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
        _ = stop.changed() => break}
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

pub(crate) async fn restart_broker(
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
pub(crate) async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
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
pub(crate) fn moat_metrics(text: &str) -> BTreeMap<String, f64> {
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
pub(crate) fn summarize_moat_log(path: &Path) -> Vec<(String, u64)> {
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

pub(crate) fn summarize_mosquitto_log(path: &Path) -> Vec<String> {
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
