//! `moat healthcheck`: asks a running moat's admin endpoint whether it is
//! healthy, for container HEALTHCHECKs, which have no curl. A plain HTTP/1.1
//! GET over a std socket: no runtime, no dependency.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{EXIT_BAD_INPUT, EXIT_RUNTIME};
use crate::config;

/// Where `moat healthcheck` asks: an address and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTarget {
    /// The admin endpoint's address.
    pub addr: SocketAddr,
    /// The path to GET.
    pub path: String,
}

impl HealthTarget {
    /// `/healthz` on the admin listener; a wildcard address is asked on
    /// loopback.
    pub fn for_listen(listen: SocketAddr) -> Self {
        let ip = match listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        Self {
            addr: SocketAddr::new(ip, listen.port()),
            path: "/healthz".into(),
        }
    }

    /// Parses `http://HOST:PORT/PATH` (an IP address; no TLS, no names).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/healthz"),
        };
        let addr = authority.parse().map_err(|_| {
            format!("{url:?}: the host must be an IP address and port, e.g. 127.0.0.1:9090")
        })?;
        Ok(Self {
            addr,
            path: path.to_string(),
        })
    }

    /// GETs the path; `Ok` on a 2xx answer.
    pub fn check(&self, timeout: std::time::Duration) -> Result<(), String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.addr, timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = s.set_read_timeout(Some(timeout));
        let _ = s.set_write_timeout(Some(timeout));
        write!(
            s,
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        )
        .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head).map_err(|e| format!("no answer: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status = line.split(' ').nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "{} answered {:?}",
                self.path,
                line.lines().next().unwrap_or("")
            ))
        }
    }
}

/// Runs `moat healthcheck`.
pub fn run(config: Option<PathBuf>, url: Option<String>, timeout: &str) -> ExitCode {
    let timeout = match humantime::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --timeout {timeout:?}: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let target = match (config, url) {
        (_, Some(u)) => HealthTarget::parse(&u),
        (Some(path), None) => match config::load(&path) {
            Ok(c) => match &c.config.admin {
                Some(a) => Ok(HealthTarget::for_listen(a.listen)),
                None => Err(format!(
                    "{} has no admin.listen; the health check needs the admin endpoint",
                    path.display()
                )),
            },
            Err(e) => Err(e.to_string()),
        },
        (None, None) => Err("give --config FILE or --url URL".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match target.check(timeout) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
