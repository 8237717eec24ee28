//! `moat healthcheck`: asks a running moat's admin endpoint whether it is
//! healthy, for container HEALTHCHECKs, which have no curl. One HTTP/1.1
//! GET over a std socket (`admin_client`): no runtime. With `--config` it
//! uses the configuration's credentials (token, `admin.tls`), so it works
//! with `admin.health: authenticated` too; `--url` is plain HTTP only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::admin_client::AdminClient;
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
}

/// GETs `path` through `client`; `Ok` on a 2xx answer.
fn check(client: &AdminClient, path: &str, timeout: std::time::Duration) -> Result<(), String> {
    match client.request("GET", path, timeout)? {
        (200..=299, _) => Ok(()),
        (status, body) => Err(format!("{path} answered {status}: {}", body.trim_end())),
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
        (_, Some(u)) => HealthTarget::parse(&u).map(|t| (AdminClient::plain(t.addr), t.path)),
        (Some(path), None) => match config::load(&path) {
            Ok(c) => AdminClient::from_config(&c).map(|client| (client, "/healthz".to_string())),
            Err(e) => Err(e.to_string()),
        },
        (None, None) => Err("give --config FILE or --url URL".to_string()),
    };
    let (client, path) = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match check(&client, &path, timeout) {
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
