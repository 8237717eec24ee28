//! The orchestrator's child processes (Mosquitto, the moat replicas, the
//! workers), each killed when its handle is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::client;
use crate::proxies::spawn_logged;
use crate::soak::pki::SoakPki;
use crate::soak::protocol::{Close, WEvent, WFinal, WStats, WorkerSpec};

pub(crate) fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A started program (moat, Mosquitto), killed when dropped.
pub(crate) struct Managed {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Managed {
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Self> {
        let child = spawn_logged(name, cmd, &log)?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`; the exit status and whether it
    /// had to be killed.
    pub(crate) async fn terminate(
        &mut self,
        grace: Duration,
    ) -> (Option<std::process::ExitStatus>, bool) {
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
pub(crate) struct Live {
    pub(crate) stats: BTreeMap<String, WStats>,
    /// Workers whose connections are all up.
    pub(crate) ups: BTreeSet<String>,
    pub(crate) finals: BTreeMap<String, WFinal>,
    pub(crate) closes: Vec<Close>,
    pub(crate) errors: Vec<String>,
}

impl Live {
    pub(crate) fn sum(&self, prefix: &str, f: impl Fn(&WStats) -> u64) -> u64 {
        self.stats
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, s)| f(s))
            .sum()
    }
}

/// A worker process, killed when dropped.
pub(crate) struct WorkerHandle {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
}

impl WorkerHandle {
    pub(crate) fn spawn(
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

    pub(crate) fn send(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    /// Closes stdin (the worker closes its connections and ends), then
    /// waits for it, killing it after `grace`.
    pub(crate) async fn quit(&mut self, grace: Duration) {
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
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `addr` accepts TCP connections.
pub(crate) async fn wait_listening(
    addr: SocketAddr,
    p: &mut Managed,
    limit: Duration,
) -> Result<()> {
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

pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Mosquitto's configuration: persistent sessions saved in `dir` (on
/// SIGTERM), no connection limit, no per-client queue limit.
pub(crate) fn mosquitto_config(dir: &Path, port: u16) -> String {
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

pub(crate) async fn start_mosquitto(dir: &Path, port: u16, run: usize) -> Result<Managed> {
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
pub(crate) fn moat_config(
    port: u16,
    admin: u16,
    backend: u16,
    pki: &SoakPki,
    max_conns: usize,
) -> String {
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
pub(crate) struct Replica {
    pub(crate) proc: Managed,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
}

pub(crate) async fn start_moat(
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
