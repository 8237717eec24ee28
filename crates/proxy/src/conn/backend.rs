//! Connecting to the backend broker (or to a node of a cluster), sending
//! it the PROXY header, and keeping count of failures in a row for
//! readiness.
//!
//! The backend is written as `host:port`, or as a list of nodes. An IP
//! address is parsed once; a host name is resolved on every connect, so a
//! broker that moves (a Kubernetes Service, a DNS failover) is followed
//! without a restart. Every resolved address is tried in turn. One broker:
//! failed attempts are retried with a short backoff, all within the
//! connect timeout. A cluster: the nodes are tried in the order
//! `balance` gives for this connection, each once; a node whose connect
//! fails is held down for `backend_health.hold_down` (tried last while it
//! is), so its devices go to their next node and a flapping node does not
//! make them thrash.
//!
//! With `backend_health.check` (`tcp` or `mqtt`), a prober task per link
//! checks every node each `interval` (`probe` does one check, `checks`
//! counts them): a node that fails `fall` checks in a row leaves rotation
//! (tried last, like a held-down node) until it passes `rise` in a row.
//! A node is in rotation only while its checks are good and it is not
//! held down. The task holds the link weakly and ends with it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::balance::{self, NodeView};
use super::checks::{Checks, Transition};
use super::metrics::ConnMetrics;
use super::probe;
use crate::config::{
    BackendHealthConfig, Backends, Balance, ClientAuthMode, HealthCheck, ListenerConfig,
    ProxyProtocol,
};
use crate::metrics::labels::{BackendCheckLabels, BackendLabels};
use crate::metrics::Metrics;
use crate::proxy_protocol::{self, TlsDetails};

/// A listener's way to its broker: where it is, how long a connect may
/// take, what PROXY header goes first, and whether it is reachable.
#[derive(Debug)]
pub struct BackendLink {
    /// Where the broker is, as configured.
    pub backend: Backends,
    nodes: Vec<Node>,
    balance: Balance,
    hold_down: Duration,
    /// The active check's settings.
    checks: BackendHealthConfig,
    check_counts: Family<BackendCheckLabels, Counter>,
    listener: String,
    /// When the link was made: hold-downs count from it.
    base: Instant,
    turn: AtomicU64,
    timeout: Duration,
    proxy_protocol: ProxyProtocol,
    /// Failures in a row, for readiness.
    pub health: BackendHealth,
}

/// One node of the backend, with its hold-down and counters.
#[derive(Debug)]
struct Node {
    target: Backend,
    address: String,
    weight: u32,
    backup: bool,
    /// Milliseconds since `base` until which the node is held down.
    down_until: AtomicU64,
    /// Out of rotation by its active checks.
    checked_down: AtomicBool,
    open: Arc<Open>,
    up: Gauge,
    selected: Counter,
    failures: Counter,
}

/// A node's open connections.
#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    gauge: Gauge,
}

/// A connection's claim on its node: counted open until dropped.
#[derive(Debug)]
pub struct Lease(Arc<Open>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.dec();
    }
}

/// What a connection offers the hashing rules.
#[derive(Debug, Clone, Copy)]
pub struct BalanceKey<'a> {
    /// The verified certificate identity.
    pub identity: Option<&'a str>,
    /// The MQTT client id.
    pub client_id: Option<&'a str>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl BalanceKey<'_> {
    /// The bytes `balance` hashes: the identity, else the client id, else
    /// the address (a device without what the rule wants still lands
    /// somewhere stable).
    fn bytes(&self, balance: Balance) -> Vec<u8> {
        let ip = || self.peer.ip().to_string().into_bytes();
        match balance {
            Balance::Identity => self
                .identity
                .or(self.client_id)
                .map_or_else(ip, |s| s.as_bytes().to_vec()),
            Balance::ClientId => self.client_id.map_or_else(ip, |s| s.as_bytes().to_vec()),
            _ => ip(),
        }
    }
}

impl BackendLink {
    /// The link of `listener`.
    pub fn new(listener: &ListenerConfig, metrics: &Metrics) -> Self {
        let nodes = listener
            .backend
            .nodes()
            .iter()
            .map(|n| {
                let l = BackendLabels {
                    listener: listener.name.clone(),
                    backend: n.address.clone(),
                };
                let up = metrics.backend_up.get_or_create_owned(&l);
                up.set(1);
                Node {
                    target: Backend::parse(&n.address),
                    address: n.address.clone(),
                    weight: n.weight,
                    backup: n.backup,
                    down_until: AtomicU64::new(0),
                    checked_down: AtomicBool::new(false),
                    open: Arc::new(Open {
                        count: AtomicUsize::new(0),
                        gauge: metrics.backend_connections.get_or_create_owned(&l),
                    }),
                    up,
                    selected: metrics.backend_selected.get_or_create_owned(&l),
                    failures: metrics.backend_node_failures.get_or_create_owned(&l),
                }
            })
            .collect();
        Self {
            backend: listener.backend.clone(),
            nodes,
            balance: Self::balance_of(listener),
            hold_down: listener.backend_health.hold_down.0,
            checks: listener.backend_health.clone(),
            check_counts: metrics.backend_health_checks.clone(),
            listener: listener.name.clone(),
            base: Instant::now(),
            turn: AtomicU64::new(0),
            timeout: listener.timeouts.connect.0,
            proxy_protocol: listener.backend_proxy_protocol,
            health: BackendHealth::new(
                listener.name.clone(),
                listener.unready_after_backend_failures,
            ),
        }
    }

    /// The link of `listener`, with its prober running when
    /// `backend_health.check` is on (and a runtime is there to run it).
    pub fn start(listener: &ListenerConfig, metrics: &Metrics) -> Arc<Self> {
        let link = Arc::new(Self::new(listener, metrics));
        if link.checks.check != HealthCheck::Off {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(probe_loop(Arc::downgrade(&link), link.probe_plan()));
            }
        }
        link
    }

    /// What the prober needs, taken once so that it holds the link only
    /// while it applies results.
    fn probe_plan(&self) -> ProbePlan {
        let pid = std::process::id();
        ProbePlan {
            targets: self.nodes.iter().map(|n| n.target.clone()).collect(),
            ids: (0..self.nodes.len())
                .map(|i| format!("moat-health-{pid}-{i}"))
                .collect(),
            config: self.checks.clone(),
            proxy: self.proxy_protocol,
        }
    }

    /// Applies one round of check results: counts them, moves nodes in
    /// and out of rotation, logs each change once.
    fn apply_checks(
        &self,
        states: &mut [Checks],
        results: Vec<(usize, Result<(), probe::Failure>)>,
    ) {
        for (i, r) in results {
            let (node, state) = (&self.nodes[i], &mut states[i]);
            let result = r.as_ref().map_or_else(|f| f.result, |()| "ok");
            self.check_counts
                .get_or_create(&BackendCheckLabels {
                    listener: self.listener.clone(),
                    backend: node.address.clone(),
                    result: result.to_string(),
                })
                .inc();
            match state.record(r.is_ok()) {
                Transition::None => {}
                Transition::Down => {
                    node.checked_down.store(true, Ordering::Relaxed);
                    node.up.set(0);
                    let reason = r.err().map(|f| f.reason).unwrap_or_default();
                    warn!(listener = %self.listener, backend = %node.address, fall = self.checks.fall, "backend node down: {reason}; new connections go to the other nodes");
                }
                Transition::Up => {
                    node.checked_down.store(false, Ordering::Relaxed);
                    if node.down_until.load(Ordering::Relaxed) <= self.now_ms() {
                        node.up.set(1);
                    }
                    info!(listener = %self.listener, backend = %node.address, "backend node up again after {} good checks", self.checks.rise);
                }
            }
        }
    }

    /// The listener's balancing rule: as configured, else `identity` with
    /// client certificates, `client_id` when MQTT-aware, `source` otherwise.
    pub fn balance_of(listener: &ListenerConfig) -> Balance {
        listener
            .balance
            .unwrap_or(if listener.tls.client_auth.mode != ClientAuthMode::None {
                Balance::Identity
            } else if listener.mqtt.is_some() {
                Balance::ClientId
            } else {
                Balance::Source
            })
    }

    /// Whether `a` and `b` reach the broker differently (nodes, balancing,
    /// connect timeout, PROXY header, readiness threshold), so that a
    /// reload needs a new link.
    pub fn settings_differ(a: &ListenerConfig, b: &ListenerConfig) -> bool {
        a.backend != b.backend
            || Self::balance_of(a) != Self::balance_of(b)
            || a.backend_health != b.backend_health
            || a.timeouts.connect != b.timeouts.connect
            || a.backend_proxy_protocol != b.backend_proxy_protocol
            || a.unready_after_backend_failures != b.unready_after_backend_failures
    }

    /// Connects to the broker (the node `key` selects) and sends the PROXY
    /// header (made from `tls` when the listener sends v2). A failure is
    /// logged and counted.
    pub async fn connect(
        &self,
        metrics: &ConnMetrics,
        (peer, local): (SocketAddr, SocketAddr),
        key: BalanceKey<'_>,
        tls: impl FnOnce() -> TlsDetails,
    ) -> Result<(TcpStream, Lease), BackendError> {
        let (mut backend, lease) = match self.connect_node(key).await {
            Ok(b) => {
                self.health.result(true);
                b
            }
            Err(e) => {
                metrics.backend_failures.inc();
                self.health.result(false);
                warn!(backend = %self.backend, error = %e, "cannot reach the backend broker; closing the client connection");
                return Err(BackendError::Unreachable);
            }
        };
        if self.proxy_protocol == ProxyProtocol::None {
            return Ok((backend, lease));
        }
        if let Some(header) = proxy_protocol::encode(self.proxy_protocol, peer, local, &tls()) {
            if let Err(e) = backend.write_all(&header).await {
                metrics.backend_failures.inc();
                warn!(error = %e, "cannot send the PROXY header to the backend");
                return Err(BackendError::Header);
            }
        }
        Ok((backend, lease))
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// One broker: with retries until the timeout. A cluster: each node
    /// once, in this connection's order, within the timeout.
    async fn connect_node(&self, key: BalanceKey<'_>) -> io::Result<(TcpStream, Lease)> {
        if let [node] = self.nodes.as_slice() {
            return match node.target.connect(self.timeout).await {
                Ok(s) => {
                    if !node.checked_down.load(Ordering::Relaxed) {
                        node.up.set(1);
                    }
                    Ok((s, self.took(node)))
                }
                Err(e) => {
                    node.failures.inc();
                    node.up.set(0);
                    Err(e)
                }
            };
        }
        let now = self.now_ms();
        let views: Vec<NodeView<'_>> = self
            .nodes
            .iter()
            .map(|n| NodeView {
                address: &n.address,
                weight: n.weight,
                backup: n.backup,
                down: n.down_until.load(Ordering::Relaxed) > now
                    || n.checked_down.load(Ordering::Relaxed),
                active: n.open.count.load(Ordering::Relaxed),
            })
            .collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let order = balance::order(self.balance, &key.bytes(self.balance), &views, turn);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = io::Error::new(io::ErrorKind::TimedOut, "no node was tried in time");
        for (tried, &i) in order.iter().enumerate() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // A node that does not answer must leave time for the others.
            let share = (left / (order.len() - tried) as u32).max(Duration::from_millis(250));
            let node = &self.nodes[i];
            match node.target.connect_once(share.min(left)).await {
                Ok(s) => {
                    if node.down_until.swap(0, Ordering::Relaxed) > 0
                        && !node.checked_down.load(Ordering::Relaxed)
                    {
                        node.up.set(1);
                        info!(backend = %node.address, "backend node reachable again; back in rotation");
                    }
                    return Ok((s, self.took(node)));
                }
                Err(e) => {
                    node.failures.inc();
                    let until = self.now_ms() + self.hold_down.as_millis() as u64;
                    if node.down_until.swap(until, Ordering::Relaxed) <= now {
                        node.up.set(0);
                        warn!(backend = %node.address, error = %e, hold_down = %humantime::format_duration(self.hold_down), "backend node unreachable; its connections go to the next node");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Counts a connection to `node`.
    fn took(&self, node: &Node) -> Lease {
        node.selected.inc();
        node.open.count.fetch_add(1, Ordering::Relaxed);
        node.open.gauge.inc();
        Lease(node.open.clone())
    }
}

/// The nodes to check and how, for [`probe_loop`].
struct ProbePlan {
    targets: Vec<Backend>,
    ids: Vec<String>,
    config: BackendHealthConfig,
    proxy: ProxyProtocol,
}

/// Checks every node of the link each interval, all at once, until the
/// link is dropped (a reload that changed it, or the listener closed).
async fn probe_loop(link: Weak<BackendLink>, plan: ProbePlan) {
    let mut states = vec![Checks::new(plan.config.rise, plan.config.fall); plan.targets.len()];
    let mut tick = tokio::time::interval(plan.config.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut round = tokio::task::JoinSet::new();
        for (i, (target, id)) in plan.targets.iter().zip(&plan.ids).enumerate() {
            let (target, id) = (target.clone(), id.clone());
            let (kind, timeout, proxy) = (plan.config.check, plan.config.timeout.0, plan.proxy);
            round.spawn(async move {
                (
                    i,
                    probe::check(target.connect_once(timeout), kind, timeout, proxy, &id).await,
                )
            });
        }
        let mut results = Vec::with_capacity(plan.targets.len());
        while let Some(r) = round.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let Some(link) = link.upgrade() else { return };
        link.apply_checks(&mut states, results);
    }
}

/// Why no backend connection came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The broker could not be reached.
    Unreachable,
    /// It was reached, but the PROXY header could not be sent.
    Header,
}

/// Backend failures in a row, and whether they reached the listener's
/// `unready_after_backend_failures` (then the process reports not ready
/// until a connect succeeds again).
#[derive(Debug)]
pub struct BackendHealth {
    listener: String,
    threshold: u32,
    failures: AtomicU32,
    down: AtomicBool,
}

impl BackendHealth {
    fn new(listener: String, threshold: u32) -> Self {
        Self {
            listener,
            threshold,
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// Whether the backend counts as down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Counts a connection attempt's result.
    fn result(&self, ok: bool) {
        if self.threshold == 0 {
            return;
        }
        if ok {
            if self.failures.swap(0, Ordering::SeqCst) >= self.threshold {
                self.down.store(false, Ordering::SeqCst);
                info!(listener = %self.listener, "backend reachable again; ready");
            }
        } else {
            let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.threshold {
                self.down.store(true, Ordering::SeqCst);
                warn!(listener = %self.listener, failures = n, "backend unreachable; reporting not ready");
            }
        }
    }
}

/// Where the backend broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A fixed address.
    Addr(SocketAddr),
    /// A name resolved at connect time.
    Name(String),
}

impl Backend {
    /// Parses `host:port` (already validated by the config loader).
    pub fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(a) => Self::Addr(a),
            Err(_) => Self::Name(s.to_string()),
        }
    }

    /// Connects within `timeout`, with `TCP_NODELAY` set. Refused or failed
    /// attempts are retried with a short backoff (25 ms doubling to 400 ms)
    /// until the timeout, so a broker that is restarting is reached as soon
    /// as it listens again.
    pub async fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(25);
        let mut last_error;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.connect_once(left).await {
                Ok(s) => return Ok(s),
                Err(e) => last_error = e,
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(400));
        }
    }

    /// One attempt: every resolved address in turn, within `timeout`.
    pub(super) async fn connect_once(&self, timeout: Duration) -> io::Result<TcpStream> {
        let attempt = async {
            let stream = match self {
                Self::Addr(a) => TcpStream::connect(a).await?,
                Self::Name(n) => {
                    let mut last = None;
                    let mut found = None;
                    for addr in tokio::net::lookup_host(n.as_str()).await? {
                        match TcpStream::connect(addr).await {
                            Ok(s) => {
                                found = Some(s);
                                break;
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    match found {
                        Some(s) => s,
                        None => {
                            return Err(last.unwrap_or_else(|| {
                                io::Error::new(
                                    io::ErrorKind::NotFound,
                                    format!("{n} resolved to no address"),
                                )
                            }))
                        }
                    }
                }
            };
            stream.set_nodelay(true)?;
            Ok(stream)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within {}",
                    humantime::format_duration(timeout)
                ),
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => write!(f, "{a}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}
