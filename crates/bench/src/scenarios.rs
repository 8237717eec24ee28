//! The scenarios (six, and idle memory over WSS). Each measures what the proxy spends (CPU and RSS of
//! its processes, from `/proc`, before and after), not the rate the client
//! reaches: the client shares the two cores and a TLS client spends about
//! three times what the server does on a handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client;
use crate::mqtt;
use crate::proxies::{Env, Proxy};
use crate::worker::{self, Mode, Spec, WorkerProc};

/// Why only moat runs `idle_wss`.
pub const WSS_ONLY_MOAT: &str = "measured for moat only: nginx (stream), HAProxy (mode tcp), stunnel and the naive proxy cannot unwrap MQTT over WebSockets for a TCP broker (they would hand the broker HTTP and WebSocket frames)";

/// What one scenario against one proxy produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Metric key and value.
    pub values: Vec<(String, f64)>,
    /// What went wrong or looks wrong (failed connections, no resumption,
    /// zero CPU). Smoke mode fails on any; `compare` reports them.
    pub problems: Vec<String>,
    /// Context for the progress log (counts, rates).
    pub info: String,
}

impl Outcome {
    pub(crate) fn value(&mut self, key: impl Into<String>, v: f64) {
        self.values.push((key.into(), v));
    }

    pub(crate) fn cpu_must_be_positive(&mut self, what: &str, cpu_s: f64) {
        if cpu_s <= 0.0 {
            self.problems
                .push(format!("{what}: the proxy used no measurable CPU"));
        }
    }
}

/// Counts kept while many connections run.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    resumed: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, e: impl std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().expect("lock");
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }

    fn problems(&self, what: &str) -> Vec<String> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return vec![];
        }
        vec![format!(
            "{what}: {failed} connections failed (first: {})",
            self.first_error
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default()
        )]
    }
}

/// One short connection: handshake, one small MQTT frame echoed by the
/// backend (so the proxy really connects and relays), close_notify, close.
async fn one_handshake(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    msg: &[u8],
    tally: &Tally,
) {
    match client::connect(addr, cfg).await {
        Ok(mut s) => {
            let resumed = client::resumed(&s);
            match client::echo_once(&mut s, msg).await {
                Ok(()) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    if resumed {
                        tally.resumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => tally.fail(e),
            }
            client::close(s).await;
        }
        Err(e) => tally.fail(e),
    }
}

/// `total` handshakes over `concurrency` tasks; each task has its own
/// client settings (and so its own ticket store when `resume`).
async fn handshake_batch(
    addr: SocketAddr,
    cfgs: &[Arc<rustls::ClientConfig>],
    total: usize,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let msg = Arc::new(mqtt::connect("bench-handshake", 60));
    let mut tasks = tokio::task::JoinSet::new();
    for cfg in cfgs {
        let (cfg, tally, next, msg) = (cfg.clone(), tally.clone(), next.clone(), msg.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                one_handshake(addr, &cfg, &msg, &tally).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    tally
}

/// Scenarios 1 and 2: proxy CPU per full (or resumed) TLS 1.3 handshake.
pub async fn handshakes(
    proxy: &Proxy,
    ca: &CertificateDer<'static>,
    total: usize,
    concurrency: usize,
    resume: bool,
) -> Result<Outcome> {
    let cfgs: Vec<_> = (0..concurrency)
        .map(|_| client::config(ca, resume))
        .collect();
    // Warm up (and, when resuming, give every task a ticket).
    let warm = handshake_batch(proxy.addr, &cfgs, concurrency * 2).await;
    if warm.ok.load(Ordering::Relaxed) == 0 {
        bail!(
            "no warm-up handshake succeeded: {:?}",
            warm.first_error.lock().expect("lock")
        );
    }
    let before = proxy.sample();
    let started = Instant::now();
    let tally = handshake_batch(proxy.addr, &cfgs, total).await;
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = proxy.sample();
    let cpu = after.cpu_s - before.cpu_s;
    let sys = after.sys_s - before.sys_s;

    let what = if resume {
        "resumed handshakes"
    } else {
        "full handshakes"
    };
    let mut o = Outcome::default();
    let ok = tally.ok.load(Ordering::Relaxed);
    let resumed = tally.resumed.load(Ordering::Relaxed);
    o.problems = tally.problems(what);
    o.cpu_must_be_positive(what, cpu);
    if ok == 0 {
        bail!("{what}: none succeeded");
    }
    let us = cpu * 1e6 / ok as f64;
    let sys_us = sys * 1e6 / ok as f64;
    let pct = 100.0 * resumed as f64 / ok as f64;
    if resume {
        o.value("resumed_hs_us", us);
        o.value("resumed_hs_sys_us", sys_us);
        o.value("resumed_pct", pct);
        if pct < 90.0 {
            o.problems.push(format!(
                "resumed handshakes: only {resumed} of {ok} resumed ({pct:.0}%)"
            ));
        }
    } else {
        o.value("full_hs_us", us);
        o.value("full_hs_sys_us", sys_us);
        if resumed > 0 {
            o.problems
                .push(format!("full handshakes: {resumed} resumed unexpectedly"));
        }
    }
    o.info = format!(
        "{us:.0} µs/handshake, {sys_us:.0} of it system ({ok} ok, {resumed} resumed, {} failed, client at {:.0}/s)",
        tally.failed.load(Ordering::Relaxed),
        ok as f64 / secs
    );
    Ok(o)
}

/// Scenario 3: proxy RSS per established idle connection, baseline
/// subtracted. Connections are opened by worker processes, each does a
/// handshake and sends one MQTT CONNECT that the echo backend returns.
///
/// With `wss` (scenario `idle_wss`, moat only), the same over MQTT over
/// WebSockets on moat's second listener: each connection upgrades, sends
/// the CONNECT in one masked binary frame and reads the echo back in
/// frames; the warm-up does a few such sessions too.
pub async fn idle(
    env: &Env,
    proxy: &Proxy,
    level: usize,
    settle: Duration,
    wss: bool,
) -> Result<Outcome> {
    let (mode, target, what, key) = if wss {
        let ws = proxy
            .ws_addr
            .context("this proxy has no WSS listener (only moat unwraps WSS)")?;
        (Mode::IdleWss, ws, "idle WSS", "idle_wss_kib")
    } else {
        (Mode::Idle, proxy.addr, "idle", "idle_kib")
    };
    let cfgs: Vec<_> = (0..16).map(|_| client::config(&env.ca, false)).collect();
    handshake_batch(proxy.addr, &cfgs, 64).await;
    if wss {
        let msg = mqtt::connect("bench-wss-warm", 60);
        for i in 0..16 {
            let s = crate::wsclient::open(target, &cfgs[0], &msg, i)
                .await
                .context("warm-up WSS session")?;
            client::close(s).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = proxy.sample();

    let mut workers = Vec::new();
    for (i, n) in worker::split(level).into_iter().enumerate() {
        let spec = Spec {
            mode,
            target,
            ca: env.pki.ca_pem.clone(),
            count: n,
            id_prefix: format!("{key}{i}"),
            concurrency: 32,
            deadline_s: 120.0,
        };
        workers.push(WorkerProc::start(&env.self_exe, &spec)?);
    }
    let mut ok = 0;
    let mut failed = 0;
    let mut errors = Vec::new();
    for w in &mut workers {
        let e = w.established(Duration::from_secs(600)).await?;
        ok += e.ok;
        failed += e.failed;
        errors.extend(e.errors);
    }
    tokio::time::sleep(settle).await;
    let after = proxy.sample();
    for w in workers {
        w.finish();
    }

    let mut o = Outcome::default();
    if failed > 0 {
        o.problems.push(format!(
            "{what} {level}: {failed} connections failed ({})",
            errors.first().cloned().unwrap_or_default()
        ));
    }
    if ok == 0 {
        bail!("{what} {level}: no connection was established: {errors:?}");
    }
    let per = (after.rss_kib as f64 - base.rss_kib as f64) / ok as f64;
    o.value(format!("{key}_{level}"), per);
    if after.rss_kib == 0 {
        o.problems.push(format!("{what} {level}: no RSS read"));
    }
    o.info = format!(
        "{per:.1} KiB/connection ({ok} idle, RSS {:.1} → {:.1} MiB over {} process(es))",
        base.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        after.procs
    );
    Ok(o)
}

/// Scenario 4: proxy CPU seconds per GiB echoed through it (each byte
/// crosses the proxy twice: decrypted on the way to the backend, encrypted
/// on the way back).
pub async fn bulk(
    proxy: &Proxy,
    ca: &CertificateDer<'static>,
    total: u64,
    conns: usize,
) -> Result<Outcome> {
    let cfg = client::config(ca, false);
    let mut streams = Vec::new();
    for _ in 0..conns {
        let mut s = client::connect(proxy.addr, &cfg).await?;
        client::echo_once(&mut s, b"warm").await?;
        streams.push(s);
    }
    let per = total / conns as u64;
    let before = proxy.sample();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in streams {
        tasks.spawn(async move {
            let (mut r, mut w) = tokio::io::split(s);
            let writer = async move {
                let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                let mut left = per;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    w.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                }
                w.flush().await?;
                Ok::<_, std::io::Error>(w)
            };
            let reader = async move {
                let mut buf = vec![0u8; 65536];
                let mut got = 0u64;
                while got < per {
                    let n = r.read(&mut buf).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("echo ended after {got} of {per} bytes"),
                        ));
                    }
                    got += n as u64;
                }
                Ok(r)
            };
            let (w, r) = tokio::time::timeout(Duration::from_secs(300), async {
                tokio::try_join!(writer, reader)
            })
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "bulk timed out"))??;
            Ok::<_, std::io::Error>(r.unsplit(w))
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.context("bulk task")??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = proxy.sample().cpu_s - before.cpu_s;
    for s in done {
        client::close(s).await;
    }
    let gib = (per * conns as u64) as f64 / (1u64 << 30) as f64;
    let mut o = Outcome::default();
    o.cpu_must_be_positive("bulk", cpu);
    o.value("bulk_s_per_gib", cpu / gib);
    o.info = format!(
        "{:.2} CPU s/GiB ({:.2} GiB echoed over {conns} connections in {secs:.2} s, {:.0} MiB/s each way)",
        cpu / gib,
        gib,
        gib * 1024.0 / secs
    );
    Ok(o)
}

/// Sends `n` messages on `s` at `interval`, starting at `start`; returns
/// each round trip in nanoseconds.
async fn paced<S>(
    mut s: S,
    msg: Arc<Vec<u8>>,
    start: tokio::time::Instant,
    interval: Duration,
    n: usize,
) -> std::io::Result<(S, Vec<u64>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rtts = Vec::with_capacity(n);
    let mut back = vec![0u8; msg.len()];
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        rtts.push(t.elapsed().as_nanos() as u64);
    }
    Ok((s, rtts))
}

/// Settings of the small-message scenario.
#[derive(Debug, Clone, Copy)]
pub struct SmallPlan {
    /// Messages per second across all connections.
    pub rate: f64,
    /// Connections.
    pub conns: usize,
    /// Seconds of measurement.
    pub secs: f64,
    /// Bytes per message (a whole MQTT PUBLISH frame).
    pub size: usize,
}

/// The `q` quantile of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

async fn small_run<S>(streams: Vec<S>, plan: SmallPlan) -> Result<(Vec<S>, Vec<u64>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let msg = Arc::new(mqtt::publish("bench/small", plan.size));
    let interval = Duration::from_secs_f64(plan.conns as f64 / plan.rate);
    let n = ((plan.secs * plan.rate) as usize / plan.conns).max(1);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for (k, s) in streams.into_iter().enumerate() {
        let offset = interval * k as u32 / plan.conns as u32;
        tasks.spawn(paced(s, msg.clone(), start + offset, interval, n));
    }
    let mut all = Vec::new();
    let mut back = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (s, rtts) = r.context("small-message task")??;
        all.extend(rtts);
        back.push(s);
    }
    all.sort_unstable();
    Ok((back, all))
}

fn latency_values(o: &mut Outcome, sorted: &[u64]) {
    for (key, q) in [
        ("rtt_p50_us", 0.5),
        ("rtt_p99_us", 0.99),
        ("rtt_p999_us", 0.999),
    ] {
        o.value(key, quantile(sorted, q) / 1e3);
    }
}

/// Scenario 5, the baseline: the same load straight to the echo backend in
/// plaintext.
pub async fn small_direct(backend: SocketAddr, plan: SmallPlan) -> Result<Outcome> {
    on_own_thread(move || small_direct_client(backend, plan)).await
}

/// Runs the future `f` makes on a thread of its own, in a single-threaded
/// runtime: the latency client's tasks are then never handed between the
/// orchestrator's worker threads, each hand-off being a wake-up that adds
/// tens of microseconds of noise on this machine.
async fn on_own_thread<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(f())
    })
    .await
    .context("latency client thread")?
}

async fn small_direct_client(backend: SocketAddr, plan: SmallPlan) -> Result<Outcome> {
    let mut streams = Vec::new();
    for _ in 0..plan.conns {
        let s = TcpStream::connect(backend).await?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let warm = SmallPlan { secs: 0.05, ..plan };
    let (streams, _) = small_run(streams, warm).await?;
    let (_, sorted) = small_run(streams, plan).await?;
    let mut o = Outcome::default();
    latency_values(&mut o, &sorted);
    o.info = format!(
        "p50 {:.0} µs, p99 {:.0} µs ({} messages)",
        quantile(&sorted, 0.5) / 1e3,
        quantile(&sorted, 0.99) / 1e3,
        sorted.len()
    );
    Ok(o)
}

/// Scenario 5: round-trip latency of small messages at a fixed rate, and
/// proxy CPU per 1000 messages.
pub async fn small(
    proxy: &Proxy,
    ca: &CertificateDer<'static>,
    plan: SmallPlan,
) -> Result<Outcome> {
    let (addr, pid, ca) = (proxy.addr, proxy.proc.pid(), ca.clone());
    on_own_thread(move || small_client(addr, pid, ca, plan)).await
}

async fn small_client(
    addr: SocketAddr,
    pid: u32,
    ca: CertificateDer<'static>,
    plan: SmallPlan,
) -> Result<Outcome> {
    let cfg = client::config(&ca, false);
    let mut streams = Vec::new();
    for _ in 0..plan.conns {
        streams.push(client::connect(addr, &cfg).await?);
    }
    let warm = SmallPlan { secs: 0.05, ..plan };
    let (streams, _) = small_run(streams, warm).await?;
    let before = crate::procstat::sample(pid);
    let (streams, sorted) = small_run(streams, plan).await?;
    let cpu = crate::procstat::sample(pid).cpu_s - before.cpu_s;
    for s in streams {
        client::close(s).await;
    }
    let mut o = Outcome::default();
    o.cpu_must_be_positive("small messages", cpu);
    latency_values(&mut o, &sorted);
    let per_1000 = cpu * 1e3 / sorted.len() as f64 * 1000.0;
    o.value("small_cpu_ms_per_1000", per_1000);
    o.info = format!(
        "p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, {per_1000:.1} ms CPU/1000 messages ({} messages)",
        quantile(&sorted, 0.5) / 1e3,
        quantile(&sorted, 0.99) / 1e3,
        quantile(&sorted, 0.999) / 1e3,
        sorted.len()
    );
    Ok(o)
}

/// One MQTT session through the proxy to the broker, for warming up.
async fn mqtt_session(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    id: &str,
) -> std::io::Result<()> {
    let mut s = client::connect(addr, cfg).await?;
    client::step(s.write_all(&mqtt::connect(id, 60))).await?;
    let mut ack = [0u8; 4];
    client::step(s.read_exact(&mut ack)).await?;
    if ack != mqtt::CONNACK_OK {
        return Err(std::io::Error::other(format!("CONNACK {ack:02x?}")));
    }
    s.write_all(&mqtt::DISCONNECT).await?;
    client::close(s).await;
    Ok(())
}

/// A storm's devices, each with its CONNACK (or given up), still held by
/// their workers until [`Storm::finish`].
pub struct Storm {
    /// Devices that got their CONNACK.
    pub ok: usize,
    /// Devices that gave up.
    pub failed: usize,
    /// Attempts that failed and were retried.
    pub retries: usize,
    /// From `go` to the last CONNACK, in milliseconds.
    pub elapsed_ms: f64,
    /// The proxy's CPU seconds from `go` to the last CONNACK.
    pub cpu_s: f64,
    /// The first errors.
    pub errors: Vec<String>,
    workers: Vec<WorkerProc>,
}

impl Storm {
    /// Closes every device's connection.
    pub fn finish(self) {
        for w in self.workers {
            w.finish();
        }
    }

    /// The problem to report when not every device got its CONNACK.
    pub fn problem(&self, what: &str, devices: usize) -> Option<String> {
        (self.failed > 0 || self.ok != devices).then(|| {
            format!(
                "{what}: only {} of {devices} devices got their CONNACK ({} gave up; first error: {})",
                self.ok,
                self.failed,
                self.errors.first().cloned().unwrap_or_default()
            )
        })
    }
}

/// `devices` connect at once through the proxy (after a few warm-up
/// sessions), client ids `{id_prefix}{worker}-{n}`; returns once every one
/// has its CONNACK or has given up, the connections still open.
pub async fn storm_run(env: &Env, proxy: &Proxy, devices: usize, id_prefix: &str) -> Result<Storm> {
    let cfg = client::config(&env.ca, false);
    for i in 0..8 {
        mqtt_session(proxy.addr, &cfg, &format!("warm-{id_prefix}{i}"))
            .await
            .context("warm-up MQTT session through the proxy")?;
    }
    let mut workers = Vec::new();
    for (i, n) in worker::split(devices).into_iter().enumerate() {
        let spec = Spec {
            mode: Mode::Storm,
            target: proxy.addr,
            ca: env.pki.ca_pem.clone(),
            count: n,
            id_prefix: format!("{id_prefix}{i}"),
            concurrency: n,
            deadline_s: 120.0,
        };
        workers.push(WorkerProc::start(&env.self_exe, &spec)?);
    }
    for w in &mut workers {
        w.ready().await?;
    }
    let before = proxy.sample();
    for w in &mut workers {
        w.go()?;
    }
    let mut storm = Storm {
        ok: 0,
        failed: 0,
        retries: 0,
        elapsed_ms: 0.0,
        cpu_s: 0.0,
        errors: Vec::new(),
        workers: Vec::new(),
    };
    for w in &mut workers {
        let e = w.established(Duration::from_secs(600)).await?;
        storm.ok += e.ok;
        storm.failed += e.failed;
        storm.retries += e.retries;
        storm.elapsed_ms = storm.elapsed_ms.max(e.elapsed_ms);
        storm.errors.extend(e.errors);
    }
    storm.cpu_s = proxy.sample().cpu_s - before.cpu_s;
    storm.workers = workers;
    Ok(storm)
}

/// Scenario 6: `devices` connect at once through the proxy to Mosquitto;
/// the time until every one has its CONNACK, and the proxy's CPU for it.
pub async fn storm(env: &Env, proxy: &Proxy, devices: usize) -> Result<Outcome> {
    let st = storm_run(env, proxy, devices, "dev").await?;
    let mut o = Outcome::default();
    o.cpu_must_be_positive("storm", st.cpu_s);
    o.problems.extend(st.problem("storm", devices));
    o.value("storm_s", st.elapsed_ms / 1e3);
    o.value("storm_cpu_s", st.cpu_s);
    o.value(
        "storm_cpu_us_per_device",
        st.cpu_s * 1e6 / st.ok.max(1) as f64,
    );
    o.info = format!(
        "{}/{devices} CONNACKs in {:.2} s, proxy CPU {:.2} s, {} retried attempts",
        st.ok,
        st.elapsed_ms / 1e3,
        st.cpu_s,
        st.retries
    );
    st.finish();
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&[7], 0.999), 7.0);
    }
}
