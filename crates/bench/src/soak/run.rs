//! The orchestration: start everything, ramp, soak with its disruptions,
//! drain, stop, and account for every message. One function per phase;
//! the accounting itself is in `accounting`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client;
use crate::procstat;
use crate::soak::accounting::{count_messages, sort_closes};
use crate::soak::children::{
    free_port, start_moat, start_mosquitto, Live, Managed, Replica, WorkerHandle,
};
use crate::soak::metrics::scrape;
use crate::soak::pki::SoakPki;
use crate::soak::plan::{Plan, ProbeRec, ReloadRec, RestartRec, Row, SoakRun, GARBAGE_CONCURRENCY};
use crate::soak::protocol::{DeviceSpec, FloodSpec, SubscriberSpec, WorkerSpec};
use crate::soak::tasks::{
    moat_metrics, probe_loop, reload_loop, restart_broker, sampler, summarize_moat_log,
    summarize_mosquitto_log, until, Clock,
};
use crate::soak::util::unix_ms;

/// What every phase shares: the plan, the timeline, and what the workers
/// and the sampler report.
struct Ctx<'a> {
    plan: &'a Plan,
    dir: &'a Path,
    self_exe: PathBuf,
    clock: Clock,
    live: Arc<Mutex<Live>>,
    rows: Arc<Mutex<Vec<Row>>>,
    died: Arc<Mutex<Vec<String>>>,
    worker_pids: Arc<Mutex<Vec<u32>>>,
    probes: Arc<Mutex<Vec<ProbeRec>>>,
}

/// The broker and the replicas, as started.
struct Started {
    mdir: PathBuf,
    mport: u16,
    mosq: Arc<Mutex<Option<Managed>>>,
    replicas: Arc<Mutex<Vec<Replica>>>,
    targets: Vec<SocketAddr>,
    admins: Vec<SocketAddr>,
    logs: Vec<PathBuf>,
    baseline_rss_kib: Vec<u64>,
}

/// The `/proc` sampler task and its stop signal.
struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the soak proper recorded.
struct Soaked {
    soak: (f64, f64),
    reloads: Vec<ReloadRec>,
    restart: Option<RestartRec>,
    flood_window: Option<(f64, f64)>,
    devices_at_end: usize,
    subscribers_at_end: usize,
    aborted: Option<String>,
}

/// How the replicas ended: their last metrics and their exit.
struct Stopped {
    metrics: Vec<BTreeMap<String, f64>>,
    moat_exit: Vec<String>,
}

/// The rest of the record: the command, the machine, and two durations.
struct RunFacts {
    command: String,
    machine: Vec<(String, String)>,
    proxy_changes: String,
    ramp_s: f64,
    drain_s: f64,
}

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
    let proxy_changes = proxy_changes();

    let pki = SoakPki::new(&dir.join("tls"))?;
    let ca = crate::pki::load_ca(&pki.ca_pem)?;
    let cfg = client::config(&ca, false);
    let ctx = Ctx {
        plan,
        dir,
        self_exe,
        clock,
        live: Arc::default(),
        rows: Arc::default(),
        died: Arc::default(),
        worker_pids: Arc::default(),
        probes: Arc::default(),
    };

    let st = start_servers(&ctx, moat_bin, &pki, &cfg).await?;
    let sampler = spawn_sampler(&ctx, &st);
    let mut workers: Vec<WorkerHandle> = Vec::new();
    let ramp_s = ramp(&ctx, &st, &pki, &mut workers).await?;
    let soaked = soak(&ctx, &st, pki, &cfg, &mut workers).await?;
    let drain_s = drain(&ctx, &mut workers).await;
    let stopped = stop(&ctx, &st, workers, sampler).await;
    let facts = RunFacts {
        command,
        machine,
        proxy_changes,
        ramp_s,
        drain_s,
    };
    Ok(assemble(ctx, st, facts, soaked, stopped))
}

/// Uncommitted changes in crates/proxy, as `git status --porcelain` lists them.
fn proxy_changes() -> String {
    Command::new("git")
        .args(["status", "--porcelain", "crates/proxy"])
        .current_dir(crate::model::workspace_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Ctx<'_> {
    /// Starts a worker process logging to `<dir>/<name>.log`; the sampler
    /// watches it from then on.
    fn spawn_worker(
        &self,
        workers: &mut Vec<WorkerHandle>,
        name: &str,
        spec: &WorkerSpec,
    ) -> Result<()> {
        let h = WorkerHandle::spawn(
            &self.self_exe,
            name,
            spec,
            &self.dir.join(format!("{name}.log")),
            self.live.clone(),
        )?;
        self.worker_pids.lock().expect("lock").push(h.child.id());
        workers.push(h);
        Ok(())
    }
}

/// The broker, then the replicas; each replica's memory before any client.
async fn start_servers(
    ctx: &Ctx<'_>,
    moat_bin: &Path,
    pki: &SoakPki,
    cfg: &Arc<ClientConfig>,
) -> Result<Started> {
    let (plan, dir) = (ctx.plan, ctx.dir);
    let mdir = dir.join("mosquitto");
    std::fs::create_dir_all(&mdir)?;
    let mport = free_port()?;
    let mosq = Arc::new(Mutex::new(Some(start_mosquitto(&mdir, mport, 0).await?)));
    let mut reps = Vec::new();
    for i in 0..plan.replicas {
        reps.push(start_moat(moat_bin, dir, i, mport, pki, cfg, plan.max_connections).await?);
    }
    let targets: Vec<SocketAddr> = reps.iter().map(|r| r.addr).collect();
    let admins: Vec<SocketAddr> = reps.iter().map(|r| r.admin).collect();
    let logs: Vec<PathBuf> = reps.iter().map(|r| r.proc.log.clone()).collect();
    ctx.clock.event(
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
    Ok(Started {
        mdir,
        mport,
        mosq,
        replicas: Arc::new(Mutex::new(reps)),
        targets,
        admins,
        logs,
        baseline_rss_kib,
    })
}

/// Starts the once-a-second `/proc` sampler.
fn spawn_sampler(ctx: &Ctx<'_>, st: &Started) -> Sampler {
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(sampler(
        ctx.clock.clone(),
        st.replicas.clone(),
        st.mosq.clone(),
        ctx.worker_pids.clone(),
        ctx.live.clone(),
        ctx.rows.clone(),
        ctx.died.clone(),
        stop_rx,
    ));
    Sampler { stop, task }
}

/// The ramp: the subscribers, then the devices over several processes,
/// until every one is connected; the seconds since the start.
async fn ramp(
    ctx: &Ctx<'_>,
    st: &Started,
    pki: &SoakPki,
    workers: &mut Vec<WorkerHandle>,
) -> Result<f64> {
    let (plan, live) = (ctx.plan, &ctx.live);
    // Subscribers first, so that nothing published is missed.
    let sub_spec = WorkerSpec::Subscribers(SubscriberSpec {
        targets: st.targets.clone(),
        ca: pki.ca_pem.clone(),
        groups: plan.subscribers,
        devices: plan.connections,
        keep_alive: plan.keep_alive,
    });
    ctx.spawn_worker(workers, "subscribers", &sub_spec)?;
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
            targets: st.targets.clone(),
            ca: pki.ca_pem.clone(),
            first,
            count,
            groups: plan.subscribers,
            interval_s: plan.publish_interval_s,
            keep_alive: plan.keep_alive,
            ramp_concurrency: 32,
        });
        ctx.spawn_worker(workers, &format!("devices-{w}"), &spec)?;
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
    if !ctx.died.lock().expect("lock").is_empty() {
        bail!(
            "moat died during the ramp: {:?}",
            ctx.died.lock().expect("lock")
        );
    }
    let ramp_s = ctx.clock.now();
    ctx.clock.event(
        "soak start",
        format!(
            "{} devices and {} subscribers connected",
            plan.connections, plan.subscribers
        ),
    );
    Ok(ramp_s)
}

/// The soak proper: probes and renewals throughout, the broker restart and
/// the flood on the timeline; then the tasks' results.
async fn soak(
    ctx: &Ctx<'_>,
    st: &Started,
    pki: SoakPki,
    cfg: &Arc<ClientConfig>,
    workers: &mut Vec<WorkerHandle>,
) -> Result<Soaked> {
    let plan = ctx.plan;
    let (stop_tx, stop_rx) = watch::channel(false);
    let s0 = tokio::time::Instant::now();
    let soak_start = ctx.clock.now();
    let probe_task = tokio::spawn(probe_loop(
        st.targets.clone(),
        cfg.clone(),
        ctx.clock.clone(),
        ctx.probes.clone(),
        stop_rx.clone(),
    ));
    let reload_task = tokio::spawn(reload_loop(
        pki,
        st.admins.clone(),
        st.targets.clone(),
        cfg.clone(),
        Duration::from_secs_f64(plan.reload_interval_s),
        s0,
        ctx.clock.clone(),
        stop_rx.clone(),
    ));
    let mut tl = Timeline {
        ctx,
        st,
        workers,
        restart_at: s0 + Duration::from_secs_f64(plan.restart_at_s),
        flood_at: s0 + Duration::from_secs_f64(plan.flood_at_s),
        end: s0 + Duration::from_secs_f64(plan.duration_s),
        restart_task: None,
        restart: None,
        flood_started: None,
        flood_window: None,
        all_back: None,
    };
    let aborted = tl.run_until_end().await?;
    let Timeline {
        mut restart_task,
        mut restart,
        flood_window,
        all_back,
        ..
    } = tl;
    let soak_end = ctx.clock.now();
    let connected = |prefix: &str| {
        ctx.live
            .lock()
            .expect("lock")
            .sum(prefix, |s| s.connected as u64) as usize
    };
    let devices_at_end = connected("devices");
    let subscribers_at_end = connected("subscribers");
    ctx.clock.event(
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
    Ok(Soaked {
        soak: (soak_start, soak_end),
        reloads,
        restart,
        flood_window,
        devices_at_end,
        subscribers_at_end,
        aborted,
    })
}

/// The soak's timeline: when the disruptions are due and how far each got.
struct Timeline<'a, 'p> {
    ctx: &'a Ctx<'p>,
    st: &'a Started,
    workers: &'a mut Vec<WorkerHandle>,
    restart_at: tokio::time::Instant,
    flood_at: tokio::time::Instant,
    end: tokio::time::Instant,
    restart_task: Option<JoinHandle<Result<RestartRec>>>,
    restart: Option<RestartRec>,
    flood_started: Option<(f64, tokio::time::Instant)>,
    flood_window: Option<(f64, f64)>,
    all_back: Option<f64>,
}

impl Timeline<'_, '_> {
    /// Follows the timeline until the soak is over; why it stopped early,
    /// if it did.
    async fn run_until_end(&mut self) -> Result<Option<String>> {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = tokio::time::Instant::now();
            if !self.ctx.died.lock().expect("lock").is_empty() {
                return Ok(Some("a moat process died".to_string()));
            }
            if let Some(why) = self.poll_restart(now).await {
                return Ok(Some(why));
            }
            self.poll_all_back();
            self.poll_flood_start(now)?;
            self.poll_flood_end(now).await;
            if now >= self.end
                && self.restart_task.is_none()
                && (self.flood_started.is_none() || self.flood_window.is_some())
            {
                return Ok(None);
            }
            if now >= self.end + Duration::from_secs(120) {
                return Ok(Some(
                    "the restart or the flood did not finish in time".into(),
                ));
            }
        }
    }

    /// Starts the broker restart when it is due, and collects it when it is
    /// done; why to abort, if it failed.
    async fn poll_restart(&mut self, now: tokio::time::Instant) -> Option<String> {
        if self.restart_task.is_none() && self.restart.is_none() && now >= self.restart_at {
            self.restart_task = Some(tokio::spawn(restart_broker(
                self.st.mosq.clone(),
                self.st.mdir.clone(),
                self.st.mport,
                Duration::from_secs_f64(self.ctx.plan.broker_down_s),
                self.ctx.clock.clone(),
            )));
        }
        if self.restart_task.as_ref().is_some_and(|t| t.is_finished()) {
            let t = self.restart_task.take().expect("checked");
            match t.await {
                Ok(Ok(r)) => self.restart = Some(r),
                Ok(Err(e)) => return Some(format!("the broker did not come back: {e:#}")),
                Err(e) => return Some(format!("the restart task failed: {e}")),
            }
        }
        None
    }

    /// Notes when every device and subscriber is back after the restart.
    fn poll_all_back(&mut self) {
        let plan = self.ctx.plan;
        if let (Some(r), None) = (&self.restart, self.all_back) {
            let l = self.ctx.live.lock().expect("lock");
            if l.sum("devices", |s| s.connected as u64) as usize == plan.connections
                && l.sum("subscribers", |s| s.connected as u64) as usize == plan.subscribers
                && self.ctx.clock.now() > r.t_up
            {
                self.all_back = Some(self.ctx.clock.now());
                drop(l);
                self.ctx
                    .clock
                    .event("all back", "every device and subscriber is connected again");
            }
        }
    }

    /// Starts the flood worker when it is due.
    fn poll_flood_start(&mut self, now: tokio::time::Instant) -> Result<()> {
        let plan = self.ctx.plan;
        if self.flood_started.is_none() && now >= self.flood_at {
            let spec = WorkerSpec::Flood(FloodSpec {
                targets: self.st.targets.clone(),
                duration_s: plan.flood_s,
                half_open: plan.half_open,
                garbage_rate: plan.garbage_rate,
                garbage_concurrency: GARBAGE_CONCURRENCY,
                slowloris: plan.slowloris,
                ca: self.ctx.dir.join("tls/ca.pem"),
            });
            self.ctx.spawn_worker(self.workers, "flood", &spec)?;
            self.flood_started = Some((self.ctx.clock.now(), now));
            self.ctx.clock.event(
                "flood start",
                format!(
                    "{} half-open, {} garbage connections/s, {} slowloris, for {:.0} s",
                    plan.half_open, plan.garbage_rate, plan.slowloris, plan.flood_s
                ),
            );
        }
        Ok(())
    }

    /// Ends the flood window when the flood worker reports, or kills it
    /// when it is 30 s late.
    async fn poll_flood_end(&mut self, now: tokio::time::Instant) {
        if let (Some((t, at)), None) = (self.flood_started, self.flood_window) {
            let done = self
                .ctx
                .live
                .lock()
                .expect("lock")
                .finals
                .contains_key("flood");
            if done || now > at + Duration::from_secs_f64(self.ctx.plan.flood_s + 30.0) {
                self.flood_window = Some((t, self.ctx.clock.now()));
                self.ctx.clock.event(
                    "flood end",
                    if done {
                        ""
                    } else {
                        "the flood worker did not report; killed"
                    },
                );
                if let Some(w) = self.workers.iter_mut().find(|w| w.name == "flood") {
                    w.quit(Duration::from_secs(5)).await;
                }
            }
        }
    }
}

/// The end: every device gets its messages acknowledged, then the
/// subscribers catch up and send their final report; the seconds the
/// catching up took.
async fn drain(ctx: &Ctx<'_>, workers: &mut [WorkerHandle]) -> f64 {
    let live = &ctx.live;
    let drain_from = Instant::now();
    for w in workers.iter_mut().filter(|w| w.name.starts_with("devices")) {
        w.send("stop");
    }
    let device_workers = ctx.plan.workers;
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
    drain_s
}

/// Scrapes each replica's metrics, then stops every process: the workers,
/// the sampler, the replicas, Mosquitto.
async fn stop(
    ctx: &Ctx<'_>,
    st: &Started,
    mut workers: Vec<WorkerHandle>,
    sampler: Sampler,
) -> Stopped {
    let mut metrics = Vec::new();
    for a in &st.admins {
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
    let _ = sampler.stop.send(true);
    let _ = sampler.task.await;
    let mut moat_exit = Vec::new();
    {
        let mut reps = std::mem::take(&mut *st.replicas.lock().expect("lock"));
        for r in reps.iter_mut() {
            let (s, killed) = r.proc.terminate(Duration::from_secs(15)).await;
            moat_exit.push(format!(
                "{}{}",
                s.map_or("unknown".into(), |s| s.to_string()),
                if killed { " (killed after 15 s)" } else { "" }
            ));
        }
    }
    let m = st.mosq.lock().expect("lock").take();
    if let Some(mut m) = m {
        m.terminate(Duration::from_secs(30)).await;
    }
    drop(workers);
    ctx.clock.event("stopped", "every process ended");
    Stopped { metrics, moat_exit }
}

/// Accounts for every message and every dropped connection, and puts the
/// record together.
fn assemble(
    ctx: Ctx<'_>,
    st: Started,
    facts: RunFacts,
    soaked: Soaked,
    stopped: Stopped,
) -> SoakRun {
    let l = ctx.live.lock().expect("lock");
    let messages = count_messages(&l, facts.drain_s);
    let closes = sort_closes(&l, &ctx.clock, soaked.restart.as_ref());
    let flood = l.finals.get("flood").and_then(|f| f.flood.clone());
    let connects = l.sum("", |s| s.connects);
    let connect_failures = l.sum("", |s| s.connect_failures);
    let connect_errors = l.errors.clone();
    drop(l);

    let mut probes = std::mem::take(&mut *ctx.probes.lock().expect("lock"));
    probes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let events = ctx.clock.events.lock().expect("lock").clone();
    let rows = std::mem::take(&mut *ctx.rows.lock().expect("lock"));
    let moat_died = ctx.died.lock().expect("lock").clone();
    SoakRun {
        plan: ctx.plan.clone(),
        command: facts.command,
        measured_at: crate::model::now_utc(),
        machine: facts.machine,
        proxy_changes: facts.proxy_changes,
        elapsed_s: ctx.clock.now(),
        ramp_s: facts.ramp_s,
        soak: soaked.soak,
        baseline_rss_kib: st.baseline_rss_kib,
        rows,
        events,
        reloads: soaked.reloads,
        restart: soaked.restart,
        flood_window: soaked.flood_window,
        flood,
        probes,
        restart_closes: closes.restart_closes,
        restart_window: closes.restart_window,
        unexplained: closes.unexplained,
        messages,
        devices_at_end: soaked.devices_at_end,
        subscribers_at_end: soaked.subscribers_at_end,
        connects,
        connect_failures,
        connect_errors,
        moat_metrics: stopped.metrics,
        moat_exit: stopped.moat_exit,
        moat_died,
        moat_log: st.logs.iter().map(|p| summarize_moat_log(p)).collect(),
        mosquitto_log: summarize_mosquitto_log(&st.mdir.join("mosquitto.log")),
        aborted: soaked.aborted,
    }
}
