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
//! `balance` gives for this connection, each once (the first choice gets
//! half the timeout, see [`connect_share`]); a node whose connect fails is
//! held down for `backend_health.hold_down` (tried last while it is), so
//! its devices go to their next node and a flapping node does not make
//! them thrash; unless it accepted another connection meanwhile: then it
//! is slow, not down, and stays in rotation.
//!
//! With `backend_health.check` (`tcp` or `mqtt`), a prober task per link
//! checks every node each `interval` (`probe` does one check, `checks`
//! counts them): a node that fails `fall` checks in a row leaves rotation
//! (tried last, like a held-down node) until it passes `rise` in a row.
//! A node is in rotation only while its checks are good and it is not
//! held down. The task holds the link weakly and ends with it.
//!
//! With entries that have `discover:` (see `discovery`), a second task
//! looks them up every `backend_dns.interval` and swaps the node set:
//! nodes that stay keep their state (counters, hold-down, checks), new
//! ones join, gone ones leave, and their metric series with them. The
//! hashing is keyed by node address, so only the devices of a gone node
//! move and a new node takes only its share; connections already open are
//! never closed by a change in the DNS. The prober checks whatever nodes
//! the link has at each round.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::balance::{self, NodeView};
use super::checks::{Checks, Transition};
use super::discovery::{self, EntryState, Event, Resolver, Wanted};
use super::metrics::ConnMetrics;
use super::probe;
pub use super::target::Backend;
use crate::config::{
    BackendDnsConfig, BackendHealthConfig, Backends, Balance, ClientAuthMode, HealthCheck,
    ListenerConfig, ProxyProtocol,
};
use crate::metrics::labels::{BackendCheckLabels, BackendLabels, DnsLabels};
use crate::metrics::Metrics;
use crate::proxy_protocol::{self, TlsDetails};

/// A listener's way to its broker: where it is, how long a connect may
/// take, what PROXY header goes first, and whether it is reachable.
#[derive(Debug)]
pub struct BackendLink {
    /// Where the broker is, as configured.
    pub backend: Backends,
    /// The nodes now: those written, and those discovered so far.
    nodes: ArcSwap<Vec<Arc<Node>>>,
    balance: Balance,
    hold_down: Duration,
    /// The active check's settings.
    checks: BackendHealthConfig,
    /// How `discover:` entries are looked up.
    dns: BackendDnsConfig,
    /// Woken after each round of discovery, for connections that came
    /// before the first answer.
    discovered: tokio::sync::Notify,
    families: NodeFamilies,
    listener: String,
    /// When the link was made: hold-downs count from it.
    base: Instant,
    turn: AtomicU64,
    timeout: Duration,
    proxy_protocol: ProxyProtocol,
    /// Failures in a row, for readiness.
    pub health: BackendHealth,
}

/// The metric families of the nodes: a node's series are made when it
/// joins and removed when it leaves.
#[derive(Debug, Clone)]
struct NodeFamilies {
    up: Family<BackendLabels, Gauge>,
    connections: Family<BackendLabels, Gauge>,
    selected: Family<BackendLabels, Counter>,
    failures: Family<BackendLabels, Counter>,
    checks: Family<BackendCheckLabels, Counter>,
    dns_nodes: Family<DnsLabels, Gauge>,
    dns_failures: Family<DnsLabels, Counter>,
}

/// Every `result` label of `moat_backend_health_checks_total`.
const CHECK_RESULTS: [&str; 5] = ["ok", "connect_failed", "timeout", "rejected", "bad_reply"];

impl NodeFamilies {
    fn of(metrics: &Metrics) -> Self {
        Self {
            up: metrics.backend_up.clone(),
            connections: metrics.backend_connections.clone(),
            selected: metrics.backend_selected.clone(),
            failures: metrics.backend_node_failures.clone(),
            checks: metrics.backend_health_checks.clone(),
            dns_nodes: metrics.backend_dns_nodes.clone(),
            dns_failures: metrics.backend_dns_failures.clone(),
        }
    }

    /// Drops the series of a node that left.
    fn remove(&self, listener: &str, address: &str) {
        let l = BackendLabels {
            listener: listener.to_string(),
            backend: address.to_string(),
        };
        self.up.remove(&l);
        self.connections.remove(&l);
        self.selected.remove(&l);
        self.failures.remove(&l);
        for result in CHECK_RESULTS {
            self.checks.remove(&BackendCheckLabels {
                listener: l.listener.clone(),
                backend: l.backend.clone(),
                result: result.to_string(),
            });
        }
    }
}

/// One node of the backend, with its hold-down and counters.
#[derive(Debug)]
struct Node {
    target: Backend,
    address: String,
    /// Its rendezvous hash key: its `name`, or its address.
    key: String,
    weight: u32,
    backup: bool,
    /// Milliseconds since `base` until which the node is held down.
    down_until: AtomicU64,
    /// Milliseconds since `base` (plus one; 0: never) of the node's last
    /// accepted connect.
    answered: AtomicU64,
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

impl Node {
    /// A node of `listener` at `w`, in rotation, with its series made.
    fn new(listener: &str, w: &Wanted, families: &NodeFamilies) -> Self {
        let l = BackendLabels {
            listener: listener.to_string(),
            backend: w.address.clone(),
        };
        let up = families.up.get_or_create_owned(&l);
        up.set(1);
        Node {
            target: Backend::parse(&w.address),
            address: w.address.clone(),
            key: w.name.clone().unwrap_or_else(|| w.address.clone()),
            weight: w.weight,
            backup: w.backup,
            down_until: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            checked_down: AtomicBool::new(false),
            open: Arc::new(Open {
                count: AtomicUsize::new(0),
                gauge: families.connections.get_or_create_owned(&l),
            }),
            up,
            selected: families.selected.get_or_create_owned(&l),
            failures: families.failures.get_or_create_owned(&l),
        }
    }
}

impl BackendLink {
    /// The link of `listener`, with its written nodes (discovered ones
    /// join at the first look-up).
    pub fn new(listener: &ListenerConfig, metrics: &Metrics) -> Self {
        let families = NodeFamilies::of(metrics);
        let nodes = discovery::wanted(listener.backend.nodes(), &[])
            .iter()
            .map(|w| Arc::new(Node::new(&listener.name, w, &families)))
            .collect();
        Self {
            backend: listener.backend.clone(),
            nodes: ArcSwap::from_pointee(nodes),
            balance: Self::balance_of(listener),
            hold_down: listener.backend_health.hold_down.0,
            checks: listener.backend_health.clone(),
            dns: listener.backend_dns.clone(),
            discovered: tokio::sync::Notify::new(),
            families,
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
    /// `backend_health.check` is on, and its discovery when an entry has
    /// `discover:` (when a runtime is there to run them).
    pub fn start(listener: &ListenerConfig, metrics: &Metrics) -> Arc<Self> {
        let link = Arc::new(Self::new(listener, metrics));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            if link.checks.check != HealthCheck::Off {
                rt.spawn(probe_loop(
                    Arc::downgrade(&link),
                    link.checks.clone(),
                    link.proxy_protocol,
                ));
            }
            if link.backend.discovers() {
                rt.spawn(discovery_loop(Arc::downgrade(&link), link.dns.clone()));
            }
        }
        link
    }

    /// The nodes now.
    fn current(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.load_full()
    }

    /// Makes the link's nodes `wanted`: nodes that stay are kept as they
    /// are, new ones join in rotation, gone ones leave with their series.
    /// Returns what changed.
    fn set_nodes(&self, wanted: &[Wanted]) -> discovery::Diff {
        let old = self.current();
        let d = discovery::diff(old.iter().map(|n| n.address.as_str()), wanted);
        if d.is_empty() {
            return d;
        }
        let by_address: HashMap<&str, &Arc<Node>> =
            old.iter().map(|n| (n.address.as_str(), n)).collect();
        let next: Vec<Arc<Node>> = wanted
            .iter()
            .map(|w| match by_address.get(w.address.as_str()) {
                Some(n) => Arc::clone(n),
                None => Arc::new(Node::new(&self.listener, w, &self.families)),
            })
            .collect();
        self.nodes.store(Arc::new(next));
        for gone in &d.removed {
            self.families.remove(&self.listener, gone);
        }
        d
    }

    /// Applies one round of check results: counts them, moves nodes in
    /// and out of rotation, logs each change once. Results for nodes that
    /// left during the round are dropped. `states` is kept per node (not
    /// per address: a node that leaves and comes back starts afresh).
    fn apply_checks(
        &self,
        states: &mut Vec<(Arc<Node>, Checks)>,
        results: Vec<(Arc<Node>, Result<(), probe::Failure>)>,
    ) {
        let now = self.current();
        states.retain(|(n, _)| now.iter().any(|m| Arc::ptr_eq(m, n)));
        for (node, r) in results {
            if !now.iter().any(|n| Arc::ptr_eq(n, &node)) {
                continue;
            }
            let at = match states.iter().position(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some(at) => at,
                None => {
                    let fresh = Checks::new(self.checks.rise, self.checks.fall);
                    states.push((Arc::clone(&node), fresh));
                    states.len() - 1
                }
            };
            let state = &mut states[at].1;
            let result = r.as_ref().map_or_else(|f| f.result, |()| "ok");
            self.families
                .checks
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
            || (a.backend.discovers() && a.backend_dns != b.backend_dns)
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
        let mut nodes = self.current();
        if nodes.is_empty() && self.backend.discovers() {
            // Before the first answer (at start, or just after a reload
            // that changed the backend): wait for it within the timeout
            // rather than refuse the device.
            let round = self.discovered.notified();
            tokio::pin!(round);
            round.as_mut().enable();
            nodes = self.current();
            if nodes.is_empty() {
                let _ = tokio::time::timeout(self.timeout, round).await;
                nodes = self.current();
            }
        }
        if nodes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no backend node yet: the discovered entries have not resolved",
            ));
        }
        if let [node] = nodes.as_slice() {
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
        let views: Vec<NodeView<'_>> = nodes
            .iter()
            .map(|n| NodeView {
                key: &n.key,
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
            let share = connect_share(left, order.len() - tried, tried == 0);
            let node = &nodes[i];
            let began = self.now_ms() + 1;
            match node.target.connect_once(share.min(left)).await {
                Ok(s) => {
                    node.answered
                        .fetch_max(self.now_ms() + 1, Ordering::Relaxed);
                    if node.down_until.swap(0, Ordering::Relaxed) > 0
                        && !node.checked_down.load(Ordering::Relaxed)
                    {
                        node.up.set(1);
                        info!(backend = %node.address, "backend node reachable again; back in rotation");
                    }
                    return Ok((s, self.took(node)));
                }
                Err(e) if node.answered.load(Ordering::Relaxed) >= began => {
                    // Slow, not down: it accepted another connection while
                    // this one waited (a broker swamped by a reconnect
                    // storm). Holding it down would move all its devices,
                    // off their sessions, for `hold_down`.
                    node.failures.inc();
                    debug!(backend = %node.address, error = %e, "backend node slow to accept but answering others; this connection goes to the next node, the node stays in rotation");
                    last = e;
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

/// Checks every node of the link each interval, all at once, until the
/// link is dropped (a reload that changed it, or the listener closed).
/// The nodes are taken afresh each round, so discovered nodes are checked
/// from the round after they join; the link is held only to take them
/// and to apply the results.
async fn probe_loop(link: Weak<BackendLink>, config: BackendHealthConfig, proxy: ProxyProtocol) {
    let pid = std::process::id();
    let mut states = Vec::new();
    let mut tick = tokio::time::interval(config.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(nodes) = link.upgrade().map(|l| l.current()) else {
            return;
        };
        let mut round = tokio::task::JoinSet::new();
        for node in nodes.iter() {
            let node = Arc::clone(node);
            // The check's own client id, the same for a node every round.
            let id = format!("moat-health-{pid}-{}", node.address);
            let (kind, timeout) = (config.check, config.timeout.0);
            round.spawn(async move {
                let r = probe::check(node.target.connect_once(timeout), kind, timeout, proxy, &id)
                    .await;
                (node, r)
            });
        }
        let mut results = Vec::with_capacity(nodes.len());
        drop(nodes);
        while let Some(r) = round.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let Some(link) = link.upgrade() else { return };
        link.apply_checks(&mut states, results);
    }
}

/// Looks the link's discovered entries up each `backend_dns.interval`
/// (the first time at once) and swaps its node set, until the link is
/// dropped. A failed or empty answer keeps the entry's last good nodes
/// and is counted; the change of state is logged once.
async fn discovery_loop(link: Weak<BackendLink>, dns: BackendDnsConfig) {
    let Some((listener, entries, families)) = link.upgrade().map(|l| {
        (
            l.listener.clone(),
            l.backend.nodes().to_vec(),
            l.families.clone(),
        )
    }) else {
        return;
    };
    let mut tick = tokio::time::interval(dns.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolver = None;
    let mut states = vec![EntryState::default(); entries.len()];
    let labels = |e: &crate::config::BackendNode| DnsLabels {
        listener: listener.clone(),
        name: e.address.clone(),
    };
    loop {
        tick.tick().await;
        if resolver.is_none() {
            match Resolver::new(&dns) {
                Ok(r) => resolver = Some(r),
                Err(e) => {
                    if let Some(link) = link.upgrade() {
                        link.discovered.notify_waiters();
                    }
                    warn!(listener = %listener, error = %e, "cannot set up the DNS resolver for discovered backends; trying again at the next interval");
                    for e in entries.iter().filter(|e| e.discover.is_some()) {
                        families.dns_failures.get_or_create(&labels(e)).inc();
                    }
                    continue;
                }
            }
        }
        let Some(r) = resolver.as_ref() else { continue };
        for (e, state) in entries.iter().zip(states.iter_mut()) {
            if e.discover.is_none() {
                continue;
            }
            let answer = r.lookup(e).await;
            match state.settle(answer) {
                Event::None => {}
                Event::Failing(why) => {
                    warn!(listener = %listener, name = %e.address, nodes = state.nodes.len(), "backend discovery: {why}; keeping the last good nodes");
                }
                Event::Recovered => {
                    info!(listener = %listener, name = %e.address, nodes = state.nodes.len(), "backend discovery answers again");
                }
            }
            if state.failing() {
                families.dns_failures.get_or_create(&labels(e)).inc();
            }
            families
                .dns_nodes
                .get_or_create(&labels(e))
                .set(state.nodes.len() as i64);
        }
        let found: Vec<Option<&[SocketAddr]>> = entries
            .iter()
            .zip(&states)
            .map(|(e, s)| e.discover.map(|_| s.nodes.as_slice()))
            .collect();
        let wanted = discovery::wanted(&entries, &found);
        let Some(link) = link.upgrade() else { return };
        let d = link.set_nodes(&wanted);
        link.discovered.notify_waiters();
        if !d.is_empty() {
            info!(listener = %listener, added = ?d.added, removed = ?d.removed, nodes = wanted.len(), "backend nodes changed in the DNS");
        }
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

/// How long one node of a cluster may take to accept, out of `left`, with
/// `remaining` nodes (this one included) still to try: the first choice,
/// the node that holds the device's session, gets half, so a node slowed
/// by a storm keeps its devices; each later one an even part, so a node
/// that does not answer leaves time for the others. At least 250 ms.
fn connect_share(left: Duration, remaining: usize, first: bool) -> Duration {
    let part = match (first, remaining) {
        (_, 0 | 1) => left,
        (true, _) => left / 2,
        (false, n) => left / n as u32,
    };
    part.max(Duration::from_millis(250))
}

#[cfg(test)]
mod tests {
    use super::connect_share;
    use std::time::Duration;

    #[test]
    fn the_first_choice_gets_half_the_connect_timeout() {
        let s = Duration::from_secs;
        assert_eq!(connect_share(s(5), 3, true), Duration::from_millis(2500));
        assert_eq!(connect_share(s(2), 2, false), s(1));
        assert_eq!(connect_share(s(2), 1, false), s(2));
        assert_eq!(connect_share(s(5), 1, true), s(5));
        assert_eq!(
            connect_share(Duration::from_millis(100), 4, false),
            Duration::from_millis(250)
        );
    }
}
