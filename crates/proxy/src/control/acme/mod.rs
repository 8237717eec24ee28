//! Built-in ACME (issue 19): certificates obtained and renewed by moat.
//!
//! The manager writes files and the existing certificate reload does the
//! swap: an entry with `acme:` loads `state_dir/cert.pem` and `key.pem`
//! like any file certificate, so each renewal goes through the same
//! watch, validate-then-swap path as a certbot renewal, and live
//! connections are untouched.
//!
//! At start-up, before any listener loads its TLS state, an entry with no
//! usable stored certificate obtains one synchronously (bounded by
//! [`FIRST_ISSUANCE_TIMEOUT`]); a failure stops the start. A stored
//! certificate for the same names is reused: no order. Then one task per
//! entry sleeps until `schedule` says (2/3 of the lifetime, or a
//! jittered back-off after a failure), orders, and writes the files.
//!
//! - `schedule`: when to renew and when to retry (pure);
//! - `client`: one order with `instant-acme`, failures classified;
//! - `http01`: the challenge listener;
//! - `store`: the state directory's files.

mod client;
mod http01;
pub mod schedule;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{AcmeConfig, ValidConfig};
use crate::metrics::labels::{ListenerLabels, ReasonLabels};
use crate::metrics::Metrics;
use client::{AcmeHttp, Failure};
use http01::Tokens;

/// How long the first issuance at start-up may take.
pub const FIRST_ISSUANCE_TIMEOUT: Duration = Duration::from_secs(60);

/// One `acme:` certificate entry.
struct Entry {
    listener: String,
    field: String,
    cfg: AcmeConfig,
    http: AcmeHttp,
}

/// Every ACME entry of the configuration, with its challenge sockets
/// (bound at start-up, before moat drops privileges).
pub struct Acme {
    entries: Vec<Entry>,
    sockets: Vec<std::net::TcpListener>,
    tokens: Tokens,
}

/// Binds the HTTP-01 listeners and obtains every certificate that is not
/// stored yet. Returns `None` when no entry uses ACME; an error names the
/// field and the CA's problem.
pub fn prepare(config: &ValidConfig) -> Result<Option<Acme>, String> {
    let mut entries = Vec::new();
    let mut addrs: HashMap<SocketAddr, String> = HashMap::new();
    for (i, l) in config.config.listeners.iter().enumerate() {
        for (j, c) in l.tls.certificates.iter().enumerate() {
            let Some(a) = &c.acme else { continue };
            let field = format!("listeners[{i}].tls.certificates[{j}].acme");
            let http = AcmeHttp::new(a.ca_bundle.as_deref())
                .map_err(|e| format!("{field}.ca_bundle: {e}"))?;
            store::ensure_dir(&a.state_dir)
                .map_err(|e| format!("{field}.state_dir {}: {e}", a.state_dir.display()))?;
            addrs
                .entry(a.http01_listen)
                .or_insert_with(|| format!("{field}.http01_listen"));
            entries.push(Entry {
                listener: l.name.clone(),
                field,
                cfg: a.clone(),
                http,
            });
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let mut sockets = Vec::new();
    for (addr, field) in &addrs {
        let s = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("{field}: cannot listen on {addr}: {e}"))?;
        s.set_nonblocking(true)
            .map_err(|e| format!("{field}: {e}"))?;
        sockets.push(s);
    }
    let acme = Acme {
        entries,
        sockets,
        tokens: Tokens::default(),
    };
    acme.first_issuance()?;
    Ok(Some(acme))
}

impl Acme {
    /// Gives each `state_dir` and its files to the user moat switches to,
    /// so renewals can write them after the switch.
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), String> {
        for e in &self.entries {
            let dir = &e.cfg.state_dir;
            let files =
                std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
            let paths = files.filter_map(Result::ok).map(|f| f.path());
            for p in std::iter::once(dir.clone()).chain(paths) {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|err| {
                    format!(
                        "{}.state_dir: cannot hand {} to the configured user: {err}",
                        e.field,
                        p.display()
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Orders, on a runtime of its own, the certificates not stored yet.
    fn first_issuance(&self) -> Result<(), String> {
        let missing: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| store::stored(&e.cfg.state_dir.join("cert.pem"), &e.cfg.domains).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the ACME runtime: {e}"))?;
        rt.block_on(async {
            let stop = CancellationToken::new();
            for s in &self.sockets {
                let s = s.try_clone().and_then(tokio::net::TcpListener::from_std);
                let s = s.map_err(|e| format!("ACME HTTP-01 listener: {e}"))?;
                tokio::spawn(http01::serve(s, self.tokens.clone(), stop.clone()));
            }
            for e in missing {
                info!(listener = %e.listener, domains = ?e.cfg.domains, "obtaining the first ACME certificate");
                let done = tokio::time::timeout(FIRST_ISSUANCE_TIMEOUT, e.obtain(&self.tokens)).await;
                match done {
                    Ok(Ok(_)) => {}
                    Ok(Err(f)) => {
                        return Err(format!(
                            "{}: the first certificate could not be obtained from {} ({}): {}",
                            e.field, e.cfg.directory, f.reason, f.message
                        ))
                    }
                    Err(_) => {
                        return Err(format!(
                            "{}: the first certificate could not be obtained from {} within {} s",
                            e.field,
                            e.cfg.directory,
                            FIRST_ISSUANCE_TIMEOUT.as_secs()
                        ))
                    }
                }
            }
            stop.cancel();
            Ok(())
        })
    }

    /// Starts the challenge listeners and one renewal task per entry.
    pub fn start(self, metrics: &Arc<Metrics>, shutdown: &CancellationToken) {
        for s in self.sockets {
            match tokio::net::TcpListener::from_std(s) {
                Ok(s) => {
                    tokio::spawn(http01::serve(s, self.tokens.clone(), shutdown.clone()));
                }
                Err(e) => error!(error = %e, "ACME HTTP-01 listener cannot start"),
            }
        }
        for e in self.entries {
            let (tokens, metrics, shutdown) =
                (self.tokens.clone(), metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = e.renew_forever(&tokens, &metrics) => {}
                }
            });
        }
    }
}

impl Entry {
    /// One order; on success the key and chain are written (key first:
    /// the watcher's debounce loads them together).
    async fn obtain(&self, tokens: &Tokens) -> Result<store::Stored, Failure> {
        let account = client::account(&self.cfg, &self.http).await?;
        let issued = client::order(&self.cfg, &account, tokens).await?;
        let write = |name: &str, bytes: &[u8]| {
            let path = self.cfg.state_dir.join(name);
            store::write_private(&path, bytes).map_err(|e| Failure {
                reason: "other",
                message: format!("{}: {e}", path.display()),
            })
        };
        write("key.pem", issued.key.as_bytes())?;
        write("cert.pem", issued.chain.as_bytes())?;
        let stored = store::stored(&self.cfg.state_dir.join("cert.pem"), &self.cfg.domains).ok_or(
            Failure {
                reason: "other",
                message: "the CA issued a certificate that does not name exactly acme.domains"
                    .into(),
            },
        )?;
        info!(listener = %self.listener, serial = %stored.serial, not_after = stored.not_after, "ACME certificate obtained");
        Ok(stored)
    }

    /// Sleeps until renewal time, orders, and starts over; after a failure
    /// retries with a jittered back-off. The served certificate stays as
    /// it is until a new one is written.
    async fn renew_forever(&self, tokens: &Tokens, metrics: &Metrics) {
        let labels = ListenerLabels {
            listener: self.listener.clone(),
        };
        let mut failures = 0u32;
        let mut current = store::stored(&self.cfg.state_dir.join("cert.pem"), &self.cfg.domains);
        loop {
            let now = unix_now();
            let at = match (&current, failures) {
                (Some(c), 0) => schedule::renewal_at(c.not_before, c.not_after),
                (None, 0) => now,
                (c, n) => schedule::next_retry(now, n, jitter(), c.as_ref().map(|c| c.not_after)),
            };
            metrics
                .acme_next_renewal
                .get_or_create(&labels)
                .set(i64::try_from(at).unwrap_or(i64::MAX));
            info!(listener = %self.listener, renew_at = at, "next ACME order scheduled");
            tokio::time::sleep(Duration::from_secs(at.saturating_sub(now))).await;
            match self.obtain(tokens).await {
                Ok(s) => {
                    failures = 0;
                    current = Some(s);
                    metrics
                        .acme_last_success
                        .get_or_create(&labels)
                        .set(i64::try_from(unix_now()).unwrap_or(0));
                }
                Err(f) => {
                    failures = failures.saturating_add(1);
                    warn!(listener = %self.listener, reason = f.reason, error = %f.message, failures, "ACME renewal failed; the current certificate stays served");
                    metrics
                        .acme_failures
                        .get_or_create(&ReasonLabels {
                            listener: self.listener.clone(),
                            reason: f.reason.to_string(),
                        })
                        .inc();
                }
            }
        }
    }
}

/// The ACME state of an entry for `moat check`: the directory, the names,
/// whether an account is stored, and when the stored certificate renews.
pub fn describe(cfg: &AcmeConfig) -> String {
    let account = if store::account_file(&cfg.state_dir).exists() {
        "stored"
    } else {
        "none yet"
    };
    let renewal = match store::stored(&cfg.state_dir.join("cert.pem"), &cfg.domains) {
        Some(s) => {
            let at = schedule::renewal_at(s.not_before, s.not_after);
            let at = crate::tls::certs::rfc3339(i64::try_from(at).unwrap_or(i64::MAX));
            format!("renewal due {at}")
        }
        None => "no certificate for these names yet: ordered at start-up".to_string(),
    };
    format!(
        "{} for {}; account {account}; {renewal}",
        cfg.directory,
        cfg.domains.join(", ")
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A sample in `[0, 1)` from the system's random source.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}
