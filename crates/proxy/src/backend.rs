//! Connecting to the backend broker.
//!
//! The backend is written as `host:port`. An IP address is parsed once; a
//! host name is resolved on every connect, so a broker that moves (a
//! Kubernetes Service, a DNS failover) is followed without a restart. Every
//! resolved address is tried in turn within the connect timeout.

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

    /// Connects within `timeout`, with `TCP_NODELAY` set.
    pub async fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
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
