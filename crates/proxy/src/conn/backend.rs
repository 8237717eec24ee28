//! Connecting to the backend broker, sending it the PROXY header, and
//! keeping count of failures in a row for readiness.
//!
//! The backend is written as `host:port`. An IP address is parsed once; a
//! host name is resolved on every connect, so a broker that moves (a
//! Kubernetes Service, a DNS failover) is followed without a restart. Every
//! resolved address is tried in turn, and failed attempts are retried with
//! a short backoff, all within the connect timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::metrics::ConnMetrics;
use crate::config::{ListenerConfig, ProxyProtocol};
use crate::proxy_protocol::{self, TlsDetails};

/// A listener's way to its broker: where it is, how long a connect may
/// take, what PROXY header goes first, and whether it is reachable.
#[derive(Debug)]
pub struct BackendLink {
    /// Where the broker is.
    pub backend: Backend,
    timeout: Duration,
    proxy_protocol: ProxyProtocol,
    /// Failures in a row, for readiness.
    pub health: BackendHealth,
}

impl BackendLink {
    /// The link of `listener`.
    pub fn new(listener: &ListenerConfig) -> Self {
        Self {
            backend: Backend::parse(&listener.backend),
            timeout: listener.timeouts.connect.0,
            proxy_protocol: listener.backend_proxy_protocol,
            health: BackendHealth::new(
                listener.name.clone(),
                listener.unready_after_backend_failures,
            ),
        }
    }

    /// Whether `a` and `b` reach the broker differently (address, connect
    /// timeout, PROXY header, readiness threshold), so that a reload needs
    /// a new link.
    pub fn settings_differ(a: &ListenerConfig, b: &ListenerConfig) -> bool {
        a.backend != b.backend
            || a.timeouts.connect != b.timeouts.connect
            || a.backend_proxy_protocol != b.backend_proxy_protocol
            || a.unready_after_backend_failures != b.unready_after_backend_failures
    }

    /// Connects to the broker and sends the PROXY header (made from `tls`
    /// when the listener sends v2). A failure is logged and counted.
    pub async fn connect(
        &self,
        metrics: &ConnMetrics,
        peer: SocketAddr,
        local: SocketAddr,
        tls: impl FnOnce() -> TlsDetails,
    ) -> Result<TcpStream, BackendError> {
        let mut backend = match self.backend.connect(self.timeout).await {
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
            return Ok(backend);
        }
        if let Some(header) = proxy_protocol::encode(self.proxy_protocol, peer, local, &tls()) {
            if let Err(e) = backend.write_all(&header).await {
                metrics.backend_failures.inc();
                warn!(error = %e, "cannot send the PROXY header to the backend");
                return Err(BackendError::Header);
            }
        }
        Ok(backend)
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

    async fn connect_once(&self, timeout: Duration) -> io::Result<TcpStream> {
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
