//! The admin endpoint from the command line, for `moat healthcheck` and
//! `moat connections`: one HTTP/1.1 request over a std socket (no
//! runtime), in plain text or, with `admin.tls`, through rustls' blocking
//! stream. The address, the bearer token and the TLS settings come from
//! the configuration file, as `moat run` reads them: the CLI trusts the
//! leaf of `admin.tls.cert` and, with `admin.tls.client_ca`, presents
//! `admin.tls.cli_cert` (`tls::admin`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use zeroize::Zeroizing;

use crate::config::ValidConfig;
use crate::tls;

/// Where and how to reach the admin endpoint.
pub struct AdminClient {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    /// What to check when TLS fails.
    tls_hint: &'static str,
    token: Option<Zeroizing<String>>,
}

/// A response: the status code and the body.
pub type Answer = (u16, String);

impl AdminClient {
    /// Plain HTTP to `addr`, with no credentials.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            tls: None,
            tls_hint: "",
            token: None,
        }
    }

    /// The admin endpoint `config` describes, with its credentials.
    pub fn from_config(config: &ValidConfig) -> Result<Self, String> {
        let Some(admin) = &config.config.admin else {
            return Err(format!(
                "{} has no admin.listen; this command needs the admin endpoint",
                config.path.display()
            ));
        };
        // The token as moat reads it; the file holds nothing else.
        let token = match &admin.token_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => Some(Zeroizing::new(t.trim().to_string())),
                Err(e) => {
                    return Err(format!(
                        "admin.token_file: cannot read {}: {e}",
                        path.display()
                    ))
                }
            },
            None => None,
        };
        let tls = match &admin.tls {
            Some(t) => Some(tls::admin::client_config(t).map_err(|e| e.to_string())?),
            None => None,
        };
        let tls_hint = match &admin.tls {
            Some(t) if t.client_ca.is_some() && t.cli_cert.is_none() => {
                "admin.tls.client_ca is set but admin.tls.cli_cert is not: the CLI has no client certificate to present; set cli_cert and cli_key"
            }
            Some(t) if t.client_ca.is_some() => {
                "the endpoint must serve admin.tls.cert and accept admin.tls.cli_cert, issued by admin.tls.client_ca"
            }
            _ => "the endpoint must serve admin.tls.cert",
        };
        Ok(Self {
            addr: local_address(admin.listen),
            tls_hint,
            tls,
            token,
        })
    }

    /// Sends one request and reads the whole answer.
    pub fn request(&self, method: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
        let addr = self.addr;
        let sock = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to the admin endpoint {addr}: {e}"))?;
        let _ = sock.set_read_timeout(Some(timeout));
        let _ = sock.set_write_timeout(Some(timeout));
        let auth = self.token.as_ref().map_or(String::new(), |t| {
            format!("Authorization: Bearer {}\r\n", t.as_str())
        });
        let head = Zeroizing::new(format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
        ));
        let answer = match &self.tls {
            None => exchange(sock, head.as_bytes()),
            Some(config) => {
                let conn = ClientConnection::new(config.clone(), ServerName::from(addr.ip()))
                    .map_err(|e| format!("TLS to the admin endpoint {addr}: {e}"))?;
                exchange(StreamOwned::new(conn, sock), head.as_bytes())
                    .map_err(|e| format!("{e}\n  hint: {}", self.tls_hint))
            }
        }?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("the admin endpoint {addr} did not answer in HTTP"))?;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_string()))
    }
}

/// Where to reach a listener bound to `listen`: a wildcard address is
/// asked on loopback.
fn local_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Writes `request` and reads until the server ends the connection. A TCP
/// end without close_notify after the answer counts as its end: the
/// answer has `Connection: close`.
fn exchange(mut io: impl Read + Write, request: &[u8]) -> Result<Vec<u8>, String> {
    io.write_all(request)
        .and_then(|()| io.flush())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match io.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {
                return Ok(out)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_asked_on_loopback() {
        let at = |s: &str| local_address(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(at("[::]:9090"), "[::1]:9090");
        assert_eq!(at("10.0.0.5:9090"), "10.0.0.5:9090");
    }
}
