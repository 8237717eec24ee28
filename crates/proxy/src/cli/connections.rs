//! `moat connections list|kick`: the admin API's `/connections` from the
//! command line, for operators on the host. The admin address and the
//! bearer token come from the configuration file, as `moat run` reads
//! them; the request is plain HTTP/1.1 over a std socket, like
//! `moat healthcheck`'s.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::exit::{EXIT_BAD_INPUT, EXIT_RUNTIME};
use super::healthcheck::HealthTarget;
use crate::config::ValidConfig;

/// Which sessions a verb selects (the API's filters).
#[derive(Debug, Default, clap::Args)]
pub struct Selection {
    /// The listener (or route) name.
    #[arg(long)]
    pub listener: Option<String>,
    /// The client certificate's common name, subject DN or SHA-256.
    #[arg(long)]
    pub identity: Option<String>,
    /// The MQTT client id.
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
    /// The client's IP address.
    #[arg(long)]
    pub source: Option<String>,
}

impl Selection {
    /// The query string, URL-encoded; empty when nothing is selected.
    pub fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("listener", &self.listener),
            ("identity", &self.identity),
            ("client_id", &self.client_id),
            ("source", &self.source),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Print the live sessions (JSON, as `GET /connections`).
    List {
        /// Which sessions.
        #[command(flatten)]
        select: Selection,
        /// At most this many (the API's `limit`).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Close sessions: one by id, or every one a filter selects.
    Kick {
        /// The connection id (`GET /connections`, or `conn{id=...}` in the
        /// logs).
        #[arg(long, conflicts_with_all = ["listener", "identity", "client_id", "source"])]
        id: Option<u64>,
        /// Which sessions.
        #[command(flatten)]
        select: Selection,
    },
}

impl Verb {
    /// The request: method and path with its query.
    pub fn request(&self) -> Result<(&'static str, String), String> {
        match self {
            Self::List { select, limit } => {
                let mut q = select.query();
                if let Some(n) = limit {
                    if !q.is_empty() {
                        q.push('&');
                    }
                    q.push_str(&format!("limit={n}"));
                }
                Ok(("GET", with_query("/connections", &q)))
            }
            Self::Kick { id: Some(id), .. } => Ok(("DELETE", format!("/connections/{id}"))),
            Self::Kick { id: None, select } => {
                let q = select.query();
                if q.is_empty() {
                    return Err("kick needs --id or a filter (--listener, --identity, --client-id, --source)".into());
                }
                Ok(("DELETE", with_query("/connections", &q)))
            }
        }
    }
}

fn with_query(path: &str, q: &str) -> String {
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// Sends one request to the admin endpoint: (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to the admin endpoint {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Runs `moat connections VERB` against the moat `config` describes.
pub fn run(config: &ValidConfig, verb: &Verb) -> ExitCode {
    let Some(admin) = &config.config.admin else {
        eprintln!(
            "error: {} has no admin.listen; the connections API is on the admin endpoint",
            config.path.display()
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    // The token as moat reads it; the file holds nothing else.
    let token = match &admin.token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!(
                    "error: admin.token_file: cannot read {}: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        None => None,
    };
    let (method, path) = match verb.request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let addr = HealthTarget::for_listen(admin.listen).addr;
    match request(addr, method, &path, token.as_deref()) {
        Ok((200..=299, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!(
                "error: {method} {path} answered {status}: {}",
                body.trim_end()
            );
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_become_api_requests_with_encoded_filters() {
        let list = Verb::List {
            select: Selection {
                identity: Some("CN=a b".into()),
                ..Default::default()
            },
            limit: Some(5),
        };
        assert_eq!(
            list.request().unwrap(),
            ("GET", "/connections?identity=CN%3Da+b&limit=5".to_string())
        );
        let kick = Verb::Kick {
            id: Some(42),
            select: Selection::default(),
        };
        assert_eq!(
            kick.request().unwrap(),
            ("DELETE", "/connections/42".into())
        );
        let everyone = Verb::Kick {
            id: None,
            select: Selection::default(),
        };
        assert!(everyone
            .request()
            .unwrap_err()
            .contains("needs --id or a filter"));
    }
}
