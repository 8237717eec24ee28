//! Built-in ACME (issue 19): certificates obtained and renewed by moat.
//!
//! The manager writes files and the existing certificate reload does the
//! swap: an entry with `acme:` loads `state_dir/cert.pem` and `key.pem`
//! like any file certificate, so each renewal goes through the same
//! watch, validate-then-swap path as a certbot renewal, and live
//! connections are untouched.
//!
//! An entry with no stored certificate yet is pending: the listeners start
//! without it, refuse its names (`tls::resolver`), and `/readyz` says not
//! ready and why, until the first order writes the files. Nothing
//! self-signed is ever served in its place. A stored certificate for the
//! same names is reused at a restart: no order. One task per entry sleeps
//! until `schedule` says (at once while pending; inside the CA's ACME
//! Renewal Information window where its directory offers one, else at 2/3
//! of the lifetime; or a jittered back-off after a failure), orders, and
//! writes the files.
//!
//! - `schedule`: when to renew and when to retry (pure);
//! - `client`: one order with `instant-acme`, failures classified;
//! - `http01`: the HTTP-01 challenge listener (TLS-ALPN-01 is answered by
//!   the TLS listeners, from `tls::acme_alpn`);
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
use tracing::{debug, error, info, warn};

use crate::config::{AcmeConfig, ValidConfig};
use crate::metrics::labels::{ListenerLabels, ReasonLabels};
use crate::metrics::Metrics;
use crate::tls::acme_alpn::AlpnChallenges;
use client::{AcmeHttp, Failure, Responders};
use http01::Tokens;

/// One `acme:` certificate entry.
struct Entry {
    listener: String,
    field: String,
    cfg: AcmeConfig,
    http: AcmeHttp,
}

/// Every ACME entry of the configuration, with its HTTP-01 sockets (bound
/// at start-up, before moat drops privileges) and the TLS-ALPN-01 table
/// the listeners answer from.
pub struct Acme {
    entries: Vec<Entry>,
    sockets: Vec<std::net::TcpListener>,
    tokens: Tokens,
    challenges: Arc<AlpnChallenges>,
}

/// Checks every ACME entry's CA bundle and state directory and binds the
/// HTTP-01 listeners. Returns `None` when no entry uses ACME; an error
/// names the field. Orders nothing: that starts with [`Acme::start`].
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
            if let Some(k) = &a.account_key {
                client::account_key(k).map_err(|e| format!("{field}.account_key {e}"))?;
            }
            if let Some(addr) = a.http01_listen {
                addrs
                    .entry(addr)
                    .or_insert_with(|| format!("{field}.http01_listen"));
            }
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
    Ok(Some(Acme {
        entries,
        sockets,
        tokens: Tokens::default(),
        challenges: Arc::default(),
    }))
}

impl Acme {
    /// The TLS-ALPN-01 table the listeners answer validations from.
    pub fn challenges(&self) -> Arc<AlpnChallenges> {
        self.challenges.clone()
    }

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

    /// Starts the HTTP-01 listeners and one order-and-renewal task per
    /// entry (the listeners are up by now, so TLS-ALPN-01 validations of a
    /// first order reach them).
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
            let (tokens, challenges, metrics, shutdown) = (
                self.tokens.clone(),
                self.challenges.clone(),
                metrics.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let responders = Responders {
                    http01: &tokens,
                    tls_alpn01: &challenges,
                };
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = e.renew_forever(responders, &metrics) => {}
                }
            });
        }
    }
}

impl Entry {
    /// One order; on success the key and chain are written (key first:
    /// the watcher's debounce loads them together).
    async fn obtain(&self, responders: Responders<'_>) -> Result<store::Stored, Failure> {
        let account = client::account(&self.cfg, &self.http).await?;
        let issued = client::order(&self.cfg, &account, responders).await?;
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

    /// When to renew `c`: inside the CA's ACME Renewal Information window
    /// when its directory offers one (RFC 9773), at `spread` of the way
    /// through it, else at 2/3 of the lifetime; and when to ask the CA
    /// again (a window can move earlier, e.g. before a mass revocation).
    async fn renewal_time(&self, c: &store::Stored, spread: f64) -> (u64, Option<u64>) {
        let fallback = schedule::renewal_at(c.not_before, c.not_after);
        let Some(id) = &c.ari else {
            return (fallback, None);
        };
        let now = unix_now();
        let account = match client::account(&self.cfg, &self.http).await {
            Ok(a) => a,
            Err(f) => {
                debug!(listener = %self.listener, reason = f.reason, error = %f.message, "cannot reach the CA for its renewal window; renewing at 2/3 of the lifetime");
                return (fallback, Some(now + 3600));
            }
        };
        match account.renewal_info(id).await {
            Ok((info, retry_after)) => {
                let window = &info.suggested_window;
                let start = u64::try_from(window.start.unix_timestamp()).unwrap_or(0);
                let end = u64::try_from(window.end.unix_timestamp()).unwrap_or(0);
                let at = schedule::ari_renewal_at(start, end, now, spread, c.not_after);
                debug!(listener = %self.listener, window_start = start, window_end = end, explanation = ?info.explanation_url, renew_at = at, "renewal window from the CA (ARI)");
                (at, Some(now + schedule::ari_recheck(retry_after).as_secs()))
            }
            Err(instant_acme::Error::Unsupported(_)) => (fallback, None),
            Err(e) => {
                warn!(listener = %self.listener, error = %e, "cannot read the CA's renewal window (ARI); renewing at 2/3 of the lifetime, asking again in an hour");
                (fallback, Some(now + 3600))
            }
        }
    }

    /// Sleeps until renewal time, orders, and starts over; after a failure
    /// retries with a jittered back-off. The served certificate stays as
    /// it is until a new one is written.
    async fn renew_forever(&self, responders: Responders<'_>, metrics: &Metrics) {
        let labels = ListenerLabels {
            listener: self.listener.clone(),
        };
        let mut failures = 0u32;
        let mut current = store::stored(&self.cfg.state_dir.join("cert.pem"), &self.cfg.domains);
        if current.is_none() {
            warn!(listener = %self.listener, field = %self.field, domains = ?self.cfg.domains, challenge = self.cfg.challenge.as_str(), "no ACME certificate for these names yet: ordering one now; until it arrives they are not served and /readyz says not ready");
        }
        // Where in an ARI window this certificate renews: drawn once per
        // certificate, so asking again does not move it.
        let mut spread = jitter();
        let mut announced = None;
        loop {
            let now = unix_now();
            let (at, recheck) = match (&current, failures) {
                (Some(c), 0) => self.renewal_time(c, spread).await,
                (None, 0) => (now, None),
                (c, n) => (
                    schedule::next_retry(now, n, jitter(), c.as_ref().map(|c| c.not_after)),
                    None,
                ),
            };
            metrics
                .acme_next_renewal
                .get_or_create(&labels)
                .set(i64::try_from(at).unwrap_or(i64::MAX));
            if announced != Some(at) {
                info!(listener = %self.listener, renew_at = at, "next ACME order scheduled");
                announced = Some(at);
            }
            let wake = recheck.map_or(at, |r| r.min(at));
            tokio::time::sleep(Duration::from_secs(wake.saturating_sub(now))).await;
            if unix_now() < at {
                continue;
            }
            match self.obtain(responders).await {
                Ok(s) => {
                    failures = 0;
                    current = Some(s);
                    spread = jitter();
                    metrics
                        .acme_last_success
                        .get_or_create(&labels)
                        .set(i64::try_from(unix_now()).unwrap_or(0));
                }
                Err(f) => {
                    failures = failures.saturating_add(1);
                    if current.is_some() {
                        warn!(listener = %self.listener, field = %self.field, reason = f.reason, error = %f.message, failures, "ACME renewal failed; the current certificate stays served");
                    } else {
                        error!(listener = %self.listener, field = %self.field, reason = f.reason, error = %f.message, failures, "ACME order failed: no certificate for these names yet, so they are not served; retrying with back-off");
                    }
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
    let account = match &cfg.account_key {
        Some(k) => format!("of the key {}", k.display()),
        None if store::account_file(&cfg.state_dir).exists() => "stored".into(),
        None => "none yet".into(),
    };
    let renewal = match store::stored(&cfg.state_dir.join("cert.pem"), &cfg.domains) {
        Some(s) => {
            let at = schedule::renewal_at(s.not_before, s.not_after);
            let at = crate::tls::certs::rfc3339(i64::try_from(at).unwrap_or(i64::MAX));
            format!(
                "renewal due {at} (2/3 of its lifetime; where the CA offers ARI, its window decides)"
            )
        }
        None => format!(
            "no certificate for these names yet: ordered over {} once moat runs, and not served until then",
            cfg.challenge.as_str()
        ),
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
