//! A connect target: one node's address as configured, a fixed socket
//! address or a host name resolved by the system at every connect (so a
//! broker that moves is followed), and one bounded connect to it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

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
                    // A written name goes through the system's resolver
                    // (getaddrinfo), not hickory as `discover:` entries do:
                    // that honours /etc/hosts, nsswitch and the libc's
                    // search rules, which configurations written before
                    // discovery rely on. Discovered nodes are addresses.
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
