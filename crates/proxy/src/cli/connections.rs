//! `moat connections list|kick`: the admin API's `/connections` from the
//! command line, for operators on the host. The admin address, the bearer
//! token and the TLS settings come from the configuration file, as
//! `moat run` reads them (`admin_client`, shared with `moat healthcheck`).

use std::process::ExitCode;
use std::time::Duration;

use super::admin_client::AdminClient;
use super::exit::{EXIT_BAD_INPUT, EXIT_RUNTIME};
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

/// Runs `moat connections VERB` against the moat `config` describes.
pub fn run(config: &ValidConfig, verb: &Verb) -> ExitCode {
    let client = match AdminClient::from_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let (method, path) = match verb.request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match client.request(method, &path, Duration::from_secs(10)) {
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
