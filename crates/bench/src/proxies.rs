//! Starting and stopping the processes under test: each proxy with
//! equivalent settings (the same certificate, TLS 1.3 only, one worker per
//! core, a deep accept queue, no per-connection logging), the echo backend
//! and Mosquitto.
//!
//! Every process is started fresh for each measurement, in its own
//! directory, with its output in a log file there; it is killed (with its
//! descendants, by pid) when its handle is dropped.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::peers::{self, Need};
use crate::pki::Pki;
use crate::procstat::{self, Sample};

/// The proxies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// moat, built in release from crates/proxy.
    Moat,
    /// nginx's stream module.
    Nginx,
    /// HAProxy in `mode tcp`.
    Haproxy,
    /// stunnel.
    Stunnel,
    /// The naive tokio-rustls proxy built into moat-bench.
    Naive,
}

impl Kind {
    /// Every proxy, in report order.
    pub const ALL: [Kind; 5] = [
        Kind::Moat,
        Kind::Nginx,
        Kind::Haproxy,
        Kind::Stunnel,
        Kind::Naive,
    ];

    /// Short name, as on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Moat => "moat",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Stunnel => "stunnel",
            Kind::Naive => "naive",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .with_context(|| {
                format!("unknown proxy {s:?}: expected moat, nginx, haproxy, stunnel or naive")
            })
    }

    /// Whether this harness can configure the proxy to spread connections
    /// over several brokers with `balance` (the `storm_cluster` scenario):
    /// moat by source or client id, HAProxy (`balance source`) and nginx
    /// (`hash $remote_addr consistent`) by source; stunnel and the naive
    /// proxy have one `connect` each.
    pub fn balances(self, balance: Balance) -> bool {
        match self {
            Kind::Moat => true,
            Kind::Haproxy | Kind::Nginx => balance == Balance::Source,
            Kind::Stunnel | Kind::Naive => false,
        }
    }

    /// The Debian packages this proxy needs.
    pub fn needs(self) -> &'static [Need] {
        match self {
            Kind::Moat | Kind::Naive => &[],
            Kind::Nginx => &[
                Need {
                    names: &["nginx"],
                    package: "nginx",
                },
                Need {
                    names: &[peers::NGINX_STREAM_MODULE],
                    package: "libnginx-mod-stream",
                },
            ],
            Kind::Haproxy => &[Need {
                names: &["haproxy"],
                package: "haproxy",
            }],
            Kind::Stunnel => &[Need {
                names: &["stunnel4", "stunnel"],
                package: "stunnel4",
            }],
        }
    }
}

/// How a proxy picks one of several brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// A hash of the client's address (HAProxy's `balance source`, moat's
    /// `balance: source`).
    Source,
    /// A hash of the MQTT client id, read from the CONNECT before the
    /// broker is dialled (moat's `balance: client_id`, MQTT-aware).
    ClientId,
}

impl Balance {
    /// The name, as in moat's configuration.
    pub fn name(self) -> &'static str {
        match self {
            Balance::Source => "source",
            Balance::ClientId => "client_id",
        }
    }
}

/// Where a proxy relays to.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// One broker (or the echo backend): every scenario but `storm_cluster`.
    One(SocketAddr),
    /// The nodes of a cluster and how to pick one.
    Cluster(&'a [SocketAddr], Balance),
}

/// What every start needs.
pub struct Env {
    /// The certificate all proxies serve.
    pub pki: Pki,
    /// The CA, for clients.
    pub ca: CertificateDer<'static>,
    /// The moat binary.
    pub moat_bin: PathBuf,
    /// This binary (echo server, naive proxy, workers).
    pub self_exe: PathBuf,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Connections one proxy process can hold within the open-file limit.
    pub max_conns: usize,
    /// Worker processes or threads per proxy.
    pub cores: usize,
    next: AtomicUsize,
}

impl Env {
    /// A new environment in `dir`.
    pub fn new(pki: Pki, moat_bin: PathBuf, dir: PathBuf, max_conns: usize) -> Result<Self> {
        Ok(Self {
            ca: crate::pki::load_ca(&pki.ca_pem)?,
            pki,
            moat_bin,
            self_exe: std::env::current_exe().context("find moat-bench's own path")?,
            dir,
            max_conns,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            next: AtomicUsize::new(0),
        })
    }

    fn subdir(&self, name: &str) -> Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let d = self.dir.join(format!("{n:04}-{name}"));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
}

/// A free TCP port on 127.0.0.1 (free a moment ago).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A started process, killed with its descendants on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Starts `cmd` (called `name` in errors) with no stdin and its stdout and
/// stderr both written to `log`.
pub(crate) fn spawn_logged(name: &str, cmd: &mut Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {name} ({cmd:?})"))
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Self> {
        let child = spawn_logged(name, cmd, &log)?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU and RSS of the process and its descendants.
    pub fn sample(&self) -> Sample {
        procstat::sample(self.pid())
    }

    /// The last lines of its output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}) during start-up; its output:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pids: Vec<String> = procstat::tree(self.pid())
                .iter()
                .map(u32::to_string)
                .collect();
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Reads the `listening ADDR` line a moat-bench server prints.
fn listening_line(log: &Path, timeout: Duration) -> Option<SocketAddr> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Ok(f) = std::fs::File::open(log) {
            for l in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                if let Some(a) = l.strip_prefix("listening ") {
                    return a.trim().parse().ok();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Starts the echo backend.
pub fn start_echo(env: &Env) -> Result<(Proc, SocketAddr)> {
    let dir = env.subdir("echo")?;
    let log = dir.join("echo.log");
    let mut p = Proc::spawn(
        "echo server",
        Command::new(&env.self_exe).args(["echo-server", "--listen", "127.0.0.1:0"]),
        log.clone(),
    )?;
    let addr = listening_line(&log, Duration::from_secs(10));
    p.check_alive()?;
    let addr = addr.context("echo server did not report its address")?;
    Ok((p, addr))
}

/// Starts Mosquitto with no connection limit, as the storm's broker.
pub async fn start_mosquitto(env: &Env) -> Result<(Proc, SocketAddr)> {
    let dir = env.subdir("mosquitto")?;
    let port = free_port()?;
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let conf = format!(
        "{user}listener {port} 127.0.0.1\nmax_connections -1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest file {log}\nlog_type error\nlog_type warning\n",
        user = if root { "user root\n" } else { "" },
        log = dir.join("mosquitto.log").display(),
    );
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, conf)?;
    let bin = peers::find(&["mosquitto"]).context("mosquitto is not installed")?;
    let mut p = Proc::spawn(
        "mosquitto",
        Command::new(bin).arg("-c").arg(&conf_path),
        dir.join("mosquitto.out"),
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        p.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((p, addr));
        }
        if Instant::now() > until {
            bail!("mosquitto did not listen on {addr}: {}", p.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running proxy.
pub struct Proxy {
    /// Where it accepts TLS.
    pub addr: SocketAddr,
    /// Where it accepts MQTT over WebSockets over TLS (moat only: the
    /// others cannot unwrap WSS for a TCP broker).
    pub ws_addr: Option<SocketAddr>,
    /// Its process (the master, for nginx).
    pub proc: Proc,
}

impl Proxy {
    /// CPU and RSS of all its processes.
    pub fn sample(&self) -> Sample {
        self.proc.sample()
    }
}

/// A moat listener's `backend:` (and, for a cluster, `balance:`, plus
/// `mqtt: {}` for `client_id`, which needs an MQTT-aware listener).
fn moat_backend(up: Upstream) -> String {
    match up {
        Upstream::One(a) => format!("    backend: {a}\n"),
        Upstream::Cluster(nodes, balance) => {
            let mut s = String::from("    backend:\n");
            for n in nodes {
                s.push_str(&format!("      - {n}\n"));
            }
            s.push_str(&format!("    balance: {}\n", balance.name()));
            if balance == Balance::ClientId {
                s.push_str("    mqtt: {}\n");
            }
            s
        }
    }
}

/// One moat listener; `websocket` adds the `websocket:` section.
fn moat_listener(env: &Env, name: &str, port: u16, up: Upstream, websocket: bool) -> String {
    format!(
        r#"  - name: {name}
    listen: 127.0.0.1:{port}
{backend}    tls:
      certificates:
        - cert: {cert}
          key: {key}
      min_version: "1.3"
    max_connections: {max}
    backlog: 4096
    limits:
      max_handshakes: {max}
      per_ip_connections: 0
      per_ip_rate: 0
{ws}"#,
        backend = moat_backend(up),
        cert = env.pki.cert.display(),
        key = env.pki.key.display(),
        max = env.max_conns + 50,
        ws = if websocket {
            "    websocket:\n      path: /mqtt\n"
        } else {
            ""
        },
    )
}

/// moat's settings: the `bench` listener every scenario uses, and a second
/// one, `bench-wss`, with the same backend and certificate plus
/// `websocket:`, for the idle WSS scenario (so that `bench` stays exactly
/// as it was).
fn moat_config(env: &Env, port: u16, ws_port: u16, up: Upstream) -> String {
    format!(
        r#"log:
  level: warn
shutdown:
  drain_timeout: 1s
reload:
  watch: false
  check_interval: 0s
listeners:
{bench}{wss}"#,
        bench = moat_listener(env, "bench", port, up, false),
        wss = moat_listener(env, "bench-wss", ws_port, up, true),
    )
}

/// nginx's `upstream` block (none for one broker: `proxy_pass` names it)
/// and what `proxy_pass` names. For a cluster, `hash $remote_addr
/// consistent`: the client's address, ketama-hashed onto the nodes.
fn nginx_upstream(up: Upstream) -> Result<(String, String)> {
    Ok(match up {
        Upstream::One(a) => (String::new(), a.to_string()),
        Upstream::Cluster(nodes, Balance::Source) => {
            let mut s =
                String::from("    upstream brokers {\n        hash $remote_addr consistent;\n");
            for n in nodes {
                s.push_str(&format!("        server {n};\n"));
            }
            s.push_str("    }\n");
            (s, "brokers".into())
        }
        Upstream::Cluster(_, b) => bail!("nginx is not configured here to balance on {}", b.name()),
    })
}

fn nginx_config(env: &Env, dir: &Path, port: u16, up: Upstream) -> Result<String> {
    let (upstream, pass) = nginx_upstream(up)?;
    Ok(format!(
        r#"daemon off;
master_process on;
worker_processes {cores};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
load_module {module};
events {{
    worker_connections {wc};
}}
stream {{
{upstream}    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_session_tickets on;
        proxy_pass {pass};
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
    }}
}}
"#,
        cores = env.cores,
        nofile = env.max_conns * 2 + 100,
        dir = dir.display(),
        module = peers::NGINX_STREAM_MODULE,
        wc = env.max_conns * 2 + 50,
        cert = env.pki.cert.display(),
        key = env.pki.key.display(),
    ))
}

/// HAProxy's `backend broker` section: one `server`, or `balance source`
/// over one `server` per node.
fn haproxy_backend(up: Upstream) -> Result<String> {
    Ok(match up {
        Upstream::One(a) => format!("backend broker\n    server broker {a}\n"),
        Upstream::Cluster(nodes, Balance::Source) => {
            let mut s = String::from("backend broker\n    balance source\n");
            for (i, n) in nodes.iter().enumerate() {
                s.push_str(&format!("    server node{} {n}\n", i + 1));
            }
            s
        }
        Upstream::Cluster(_, b) => {
            bail!("haproxy is not configured here to balance on {}", b.name())
        }
    })
}

fn haproxy_config(env: &Env, port: u16, up: Upstream) -> Result<String> {
    Ok(format!(
        r#"global
    nbthread {cores}
    maxconn {max}
    ssl-default-bind-options ssl-min-ver TLSv1.3

defaults
    mode tcp
    maxconn {max}
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend mqtts
    bind 127.0.0.1:{port} ssl crt {combined} ssl-min-ver TLSv1.3
    backlog 4096
    default_backend broker

{backend}"#,
        backend = haproxy_backend(up)?,
        cores = env.cores,
        max = env.max_conns + 10,
        combined = env.pki.combined.display(),
    ))
}

fn stunnel_config(env: &Env, dir: &Path, port: u16, backend: SocketAddr) -> String {
    format!(
        r#"foreground = yes
pid =
output = {dir}/stunnel.log
debug = warning

[mqtts]
accept = 127.0.0.1:{port}
connect = {backend}
cert = {cert}
key = {key}
sslVersionMin = TLSv1.3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
TIMEOUTidle = 3600
"#,
        dir = dir.display(),
        cert = env.pki.cert.display(),
        key = env.pki.key.display(),
    )
}

/// Starts `kind` relaying to `backend`, and waits until it completes a TLS
/// handshake (and, for nginx, until all workers are up).
pub async fn start(env: &Env, kind: Kind, backend: SocketAddr) -> Result<Proxy> {
    start_upstream(env, kind, Upstream::One(backend)).await
}

/// Starts `kind` in front of every node of `nodes`, picking one per
/// connection by `balance`; fails for a proxy that cannot
/// ([`Kind::balances`]).
pub async fn start_cluster(
    env: &Env,
    kind: Kind,
    nodes: &[SocketAddr],
    balance: Balance,
) -> Result<Proxy> {
    if !kind.balances(balance) {
        bail!("{} cannot balance on {}", kind.name(), balance.name());
    }
    start_upstream(env, kind, Upstream::Cluster(nodes, balance)).await
}

/// The single backend of a proxy that has only one `connect` setting.
fn single(kind: Kind, up: Upstream) -> Result<SocketAddr> {
    match up {
        Upstream::One(a) => Ok(a),
        Upstream::Cluster(..) => bail!("{} is not configured with several brokers", kind.name()),
    }
}

async fn start_upstream(env: &Env, kind: Kind, up: Upstream<'_>) -> Result<Proxy> {
    let dir = env.subdir(kind.name())?;
    let port = free_port()?;
    let log = dir.join(format!("{}.out", kind.name()));
    let mut cmd;
    let mut ws_addr = None;
    match kind {
        Kind::Moat => {
            let ws_port = free_port()?;
            ws_addr = Some(format!("127.0.0.1:{ws_port}").parse()?);
            let conf = dir.join("moat.yaml");
            std::fs::write(&conf, moat_config(env, port, ws_port, up))?;
            cmd = Command::new(&env.moat_bin);
            cmd.arg("run").arg("--config").arg(conf);
        }
        Kind::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_config(env, &dir, port, up)?)?;
            cmd = Command::new(peers::find(&["nginx"]).context("nginx is not installed")?);
            cmd.arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(conf);
        }
        Kind::Haproxy => {
            let conf = dir.join("haproxy.cfg");
            std::fs::write(&conf, haproxy_config(env, port, up)?)?;
            cmd = Command::new(peers::find(&["haproxy"]).context("haproxy is not installed")?);
            cmd.arg("-db").arg("-f").arg(conf);
        }
        Kind::Stunnel => {
            let conf = dir.join("stunnel.conf");
            std::fs::write(&conf, stunnel_config(env, &dir, port, single(kind, up)?))?;
            cmd = Command::new(
                peers::find(&["stunnel4", "stunnel"]).context("stunnel4 is not installed")?,
            );
            cmd.arg(conf);
        }
        Kind::Naive => {
            cmd = Command::new(&env.self_exe);
            cmd.arg("naive-proxy")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--backend")
                .arg(single(kind, up)?.to_string())
                .arg("--cert")
                .arg(&env.pki.cert)
                .arg("--key")
                .arg(&env.pki.key);
        }
    }
    cmd.current_dir(&dir);
    let mut proc = Proc::spawn(kind.name(), &mut cmd, log)?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let cfg = crate::client::config(&env.ca, false);
    let want_procs = if kind == Kind::Nginx {
        1 + env.cores
    } else {
        1
    };
    let until = Instant::now() + Duration::from_secs(15);
    let mut last_err = String::new();
    loop {
        proc.check_alive()?;
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            // moat's WSS listener must be up too.
            if let Some(ws) = ws_addr {
                crate::client::close(crate::client::connect(ws, &cfg).await?).await;
            }
            crate::client::connect(addr, &cfg).await
        })
        .await;
        match attempt {
            Ok(Ok(s)) => {
                crate::client::close(s).await;
                if procstat::tree(proc.pid()).len() >= want_procs {
                    break;
                }
            }
            Ok(Err(e)) => last_err = e.to_string(),
            Err(_) => last_err = "handshake timed out".into(),
        }
        if Instant::now() > until {
            bail!(
                "{} did not complete a TLS handshake on {addr} ({last_err}); its output:\n{}",
                kind.name(),
                proc.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(Proxy {
        addr,
        ws_addr,
        proc,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Three brokers' addresses, for the cluster tests here and in `cluster`.
    pub(crate) fn nodes() -> Vec<SocketAddr> {
        ["127.0.0.1:1883", "127.0.0.1:1884", "127.0.0.1:1885"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn haproxy_keeps_one_server_and_balances_three_by_source() {
        let one = haproxy_backend(Upstream::One("127.0.0.1:9000".parse().unwrap())).unwrap();
        assert_eq!(one, "backend broker\n    server broker 127.0.0.1:9000\n");
        let nodes = nodes();
        let three = haproxy_backend(Upstream::Cluster(&nodes, Balance::Source)).unwrap();
        assert_eq!(
            three,
            "backend broker\n    balance source\n    server node1 127.0.0.1:1883\n    server node2 127.0.0.1:1884\n    server node3 127.0.0.1:1885\n"
        );
        assert!(haproxy_backend(Upstream::Cluster(&nodes, Balance::ClientId)).is_err());
    }

    #[test]
    fn nginx_hashes_the_source_address_over_an_upstream_of_three() {
        let (block, pass) =
            nginx_upstream(Upstream::One("127.0.0.1:9000".parse().unwrap())).unwrap();
        assert_eq!((block.as_str(), pass.as_str()), ("", "127.0.0.1:9000"));
        let nodes = nodes();
        let (block, pass) = nginx_upstream(Upstream::Cluster(&nodes, Balance::Source)).unwrap();
        assert_eq!(pass, "brokers");
        assert_eq!(
            block,
            "    upstream brokers {\n        hash $remote_addr consistent;\n        server 127.0.0.1:1883;\n        server 127.0.0.1:1884;\n        server 127.0.0.1:1885;\n    }\n"
        );
        assert!(nginx_upstream(Upstream::Cluster(&nodes, Balance::ClientId)).is_err());
    }

    #[test]
    fn moat_lists_three_nodes_with_the_balance_rule() {
        let one = moat_backend(Upstream::One("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(one, "    backend: 127.0.0.1:9000\n");
        let nodes = nodes();
        let source = moat_backend(Upstream::Cluster(&nodes, Balance::Source));
        assert_eq!(
            source,
            "    backend:\n      - 127.0.0.1:1883\n      - 127.0.0.1:1884\n      - 127.0.0.1:1885\n    balance: source\n"
        );
        // client_id needs an MQTT-aware listener.
        let cid = moat_backend(Upstream::Cluster(&nodes, Balance::ClientId));
        assert!(
            cid.ends_with("    balance: client_id\n    mqtt: {}\n"),
            "{cid}"
        );
    }

    #[test]
    fn only_moat_haproxy_and_nginx_balance() {
        assert!(Kind::Moat.balances(Balance::Source));
        assert!(Kind::Moat.balances(Balance::ClientId));
        assert!(Kind::Haproxy.balances(Balance::Source));
        assert!(!Kind::Haproxy.balances(Balance::ClientId));
        assert!(Kind::Nginx.balances(Balance::Source));
        assert!(!Kind::Nginx.balances(Balance::ClientId));
        for k in [Kind::Stunnel, Kind::Naive] {
            assert!(!k.balances(Balance::Source), "{k:?}");
        }
    }
}
