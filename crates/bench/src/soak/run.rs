//! The orchestration: start everything, ramp, soak with its disruptions,
//! drain, stop, and account for every message.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

use crate::client;
use crate::procstat;
use crate::soak::children::{free_port, start_moat, start_mosquitto, Live, WorkerHandle};
use crate::soak::metrics::scrape;
use crate::soak::pki::SoakPki;
use crate::soak::plan::{
    Dropped, Messages, Plan, ProbeRec, RestartRec, Row, SoakRun, GARBAGE_CONCURRENCY,
    RESTART_GRACE_S,
};
use crate::soak::protocol::{DeviceSpec, FloodSpec, SubscriberSpec, WorkerSpec};
use crate::soak::tasks::{
    moat_metrics, probe_loop, reload_loop, restart_broker, round2, sampler, summarize_moat_log,
    summarize_mosquitto_log, until, Clock,
};
use crate::soak::util::unix_ms;

/// Runs the soak; everything it starts is killed when it returns or is
/// dropped.
pub(crate) async fn run(
    plan: &Plan,
    moat_bin: &Path,
    dir: &Path,
    command: String,
) -> Result<SoakRun> {
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
