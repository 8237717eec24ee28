//! [`OcspChecker`]: one listener's OCSP checks of device certificates,
//! with the I/O: the query to the certificate's responder (through
//! moat-stapling's [`OcspClient`]), its verification
//! ([`moat_stapling::verify_response`]), and the per-certificate cache
//! with single flight ([`AnswerCache`]) shared by every worker thread;
//! with `client_auth.ocsp_cache_dir`, verified answers are also kept on
//! disk (moat-stapling's atomic cache files), read before a query.
//!
//! A query runs in a task of its own, bounded by the listener's
//! `ocsp_timeout`, so that a device that goes away does not cancel the
//! query other devices with the same certificate wait for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use moat_stapling::{
    cache_path, in_background, read_cached, responder_url_of, verify_response, write_atomic,
    CertStatus, OcspClient, Staple,
};
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use tracing::warn;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::verdict::Outcome;
use crate::conn::answers::{AnswerCache, Lookup, DEFAULT_CAPACITY};
use crate::conn::reasons::QueryResult;
use crate::metrics::reason::ByReason;

/// Clock difference tolerated with a responder (thisUpdate, nextUpdate),
/// as the stapler's default.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The HTTP client's own limits; the listener's `ocsp_timeout` (at most
/// 30 s) bounds every query well within them.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the answer of a query in flight arrives.
type Pending = watch::Receiver<Option<Outcome>>;

/// The certificate cache: answers by SHA-256 fingerprint of the leaf.
type Cache = AnswerCache<String, Outcome, Pending>;

/// One listener's OCSP checks: its cache, its HTTP client (made on first
/// use) and its query metrics. Lives as long as the listener, across
/// reloads.
pub struct OcspChecker {
    cache: Arc<Mutex<Cache>>,
    client: OnceLock<Result<Arc<OcspClient>, String>>,
    queries: ByReason<QueryResult>,
    entries: Gauge,
}

impl std::fmt::Debug for OcspChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspChecker")
            .field("entries", &self.entries.get())
            .finish_non_exhaustive()
    }
}

/// What a query needs, owned, for its task.
struct Query {
    key: String,
    leaf: Vec<u8>,
    issuer: Vec<u8>,
    url: String,
    timeout: Duration,
    /// The certificate's file under `client_auth.ocsp_cache_dir`.
    disk: Option<PathBuf>,
}

impl OcspChecker {
    /// A checker counting queries in `queries` and its size in `entries`.
    pub fn new(queries: ByReason<QueryResult>, entries: Gauge) -> Self {
        Self {
            cache: Arc::new(Mutex::new(AnswerCache::new(DEFAULT_CAPACITY))),
            client: OnceLock::new(),
            queries,
            entries,
        }
    }

    /// Checks the leaf of a verified client `chain` (issuer from the rest
    /// of the chain or the client CA bundle `cas`) with its responder,
    /// waiting at most about `timeout`. `key` is the leaf's SHA-256
    /// fingerprint. A cached answer is used while it lasts; a query in
    /// flight about the same certificate is waited for, not repeated. With
    /// `disk` (`client_auth.ocsp_cache_dir`), an answer is first looked for
    /// there, and every verified answer is written there, so that a fleet
    /// reconnecting after a restart is not an OCSP storm.
    pub async fn check(
        &self,
        key: &str,
        chain: &[CertificateDer<'_>],
        cas: &[CertificateDer<'static>],
        timeout: Duration,
        disk: Option<&Path>,
    ) -> Outcome {
        let Some((leaf, rest)) = chain.split_first() else {
            return Outcome::NoResponder("no client certificate");
        };
        let limit = timeout + Duration::from_secs(1);
        // The usual case first, without parsing anything: an answer held,
        // or a query in flight. (A binding, so the lock is not held while
        // waiting.)
        let known = lock(&self.cache).lookup(&key.to_string(), SystemTime::now());
        match known {
            Lookup::Answer(outcome) => return outcome,
            Lookup::InFlight(rx) if !abandoned(&rx) => return wait(rx, limit).await,
            Lookup::InFlight(_) | Lookup::Miss => {}
        }
        let url = match responder_url_of(leaf) {
            Ok(Some(url)) => url,
            Ok(None) | Err(_) => {
                return Outcome::NoResponder(
                    "the certificate names no OCSP responder (no AIA OCSP URL)",
                )
            }
        };
        let Some(issuer) = find_issuer(leaf, rest.iter().chain(cas)) else {
            return Outcome::NoResponder(
                "the certificate's issuer is neither in its chain nor in the client CA bundle",
            );
        };
        // Looked up again: another connection may have started the query.
        let pending = {
            let mut cache = lock(&self.cache);
            match cache.lookup(&key.to_string(), SystemTime::now()) {
                Lookup::Answer(outcome) => return outcome,
                // A query whose task ended without an answer (it cannot
                // panic, but if it did) must not block this certificate.
                Lookup::InFlight(rx) if !abandoned(&rx) => rx,
                Lookup::InFlight(_) | Lookup::Miss => {
                    let (tx, rx) = watch::channel(None);
                    cache.start(key.to_string(), rx.clone());
                    self.entries.set(len_i64(&cache));
                    drop(cache);
                    self.spawn(
                        Query {
                            key: key.to_string(),
                            leaf: leaf.to_vec(),
                            issuer: issuer.to_vec(),
                            url,
                            timeout,
                            disk: disk.map(|dir| cache_path(dir, leaf)),
                        },
                        tx,
                    );
                    rx
                }
            }
        };
        wait(pending, limit).await
    }

    /// Runs one query in its own task, stores and publishes its answer.
    fn spawn(&self, query: Query, tx: watch::Sender<Option<Outcome>>) {
        let client = self
            .client
            .get_or_init(|| {
                OcspClient::new(CLIENT_TIMEOUT, CLIENT_TIMEOUT)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone();
        let cache = self.cache.clone();
        let queries = self.queries.clone();
        let entries = self.entries.clone();
        tokio::spawn(async move {
            let stored = match &query.disk {
                Some(path) => from_disk(path, &query).await,
                None => None,
            };
            let (outcome, next_update, fresh) = match (stored, client) {
                (Some((outcome, next_update)), _) => (outcome, Some(next_update), None),
                (None, Ok(client)) => {
                    let (outcome, next_update, der) = ask(&client, &query).await;
                    queries.inc(outcome.query_result());
                    (outcome, next_update, der)
                }
                (None, Err(e)) => {
                    let outcome = Outcome::ResponderError(format!("no OCSP client: {e}").into());
                    queries.inc(outcome.query_result());
                    (outcome, None, None)
                }
            };
            let now = SystemTime::now();
            {
                let mut cache = lock(&cache);
                cache.finish(
                    query.key,
                    outcome.clone(),
                    outcome.keep_until(next_update, now),
                    now,
                );
                entries.set(len_i64(&cache));
            }
            let _ = tx.send(Some(outcome));
            // After the answer is out: no device waits for the disk.
            if let (Some(path), Some(der)) = (&query.disk, fresh) {
                let written = in_background(path, move |p| write_atomic(p, &der)).await;
                if let Err(e) = written {
                    warn!(file = %path.display(), error = %e, "could not keep a device's OCSP answer on disk (client_auth.ocsp_cache_dir); it stays in memory");
                }
            }
        });
    }
}

/// A verified, current answer kept on disk for `q`'s certificate, with
/// its nextUpdate. A missing, unreadable, stale or foreign file is no
/// answer (the responder is asked); only an unreadable one is logged.
async fn from_disk(path: &Path, q: &Query) -> Option<(Outcome, SystemTime)> {
    let der = match in_background(path, read_cached).await {
        Ok(Some(der)) => der,
        Ok(None) => return None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "could not read a device's kept OCSP answer; asking its responder");
            return None;
        }
    };
    let staple = verify_response(&der, &q.leaf, &q.issuer, SystemTime::now(), CLOCK_SKEW).ok()?;
    Some((outcome_of(&staple), staple.next_update()))
}

/// What a verified response says.
fn outcome_of(staple: &Staple) -> Outcome {
    match staple.cert_status() {
        CertStatus::Good => Outcome::Good,
        CertStatus::Revoked { .. } => Outcome::Revoked,
        CertStatus::Unknown => Outcome::Unknown,
    }
}

/// Queries and verifies: the outcome, and the response's nextUpdate and
/// DER when it verified.
async fn ask(client: &OcspClient, q: &Query) -> (Outcome, Option<SystemTime>, Option<Vec<u8>>) {
    let error = |text: String| (Outcome::ResponderError(text.into()), None, None);
    let der = match tokio::time::timeout(q.timeout, client.query(&q.leaf, &q.issuer)).await {
        Err(_) => {
            return error(format!(
                "no answer from the OCSP responder {} within {}",
                q.url,
                humantime::format_duration(q.timeout)
            ))
        }
        Ok(Err(e)) => return error(format!("OCSP responder {}: {e}", q.url)),
        Ok(Ok(der)) => der,
    };
    match verify_response(&der, &q.leaf, &q.issuer, SystemTime::now(), CLOCK_SKEW) {
        Ok(staple) => (outcome_of(&staple), Some(staple.next_update()), Some(der)),
        Err(e) => error(format!(
            "the response of the OCSP responder {} does not verify: {e}",
            q.url
        )),
    }
}

/// Waits for a query's answer, at most `limit`.
async fn wait(mut rx: Pending, limit: Duration) -> Outcome {
    let answer = tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await;
    match answer {
        Ok(Ok(value)) => value.clone().unwrap_or_else(|| {
            Outcome::ResponderError("the OCSP query ended without an answer".into())
        }),
        Ok(Err(_)) => Outcome::ResponderError("the OCSP query ended without an answer".into()),
        Err(_) => Outcome::ResponderError("no answer from the OCSP query in time".into()),
    }
}

/// Whether a query in flight can no longer answer.
fn abandoned(rx: &Pending) -> bool {
    rx.borrow().is_none() && rx.has_changed().is_err()
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    // The cache holds no invariant a panic elsewhere could break.
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

fn len_i64(cache: &Cache) -> i64 {
    i64::try_from(cache.len()).unwrap_or(i64::MAX)
}

/// The first of `candidates` whose subject is `leaf`'s issuer (by their
/// DER names; the signature is checked when the response is verified).
pub fn find_issuer<'a, 'b: 'a>(
    leaf: &[u8],
    candidates: impl IntoIterator<Item = &'a CertificateDer<'b>>,
) -> Option<&'a CertificateDer<'b>> {
    let (_, leaf) = X509Certificate::from_der(leaf).ok()?;
    let issuer = leaf.issuer().as_raw();
    candidates.into_iter().find(|c| {
        X509Certificate::from_der(c)
            .map(|(_, c)| c.subject().as_raw() == issuer)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Made {
        cert: rcgen::Certificate,
        params: rcgen::CertificateParams,
        key: rcgen::KeyPair,
    }

    fn cert(name: &str, issuer: Option<&Made>) -> Made {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = match issuer {
            None => {
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.self_signed(&key).unwrap()
            }
            Some(ca) => {
                let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
                params.signed_by(&key, &issuer).unwrap()
            }
        };
        Made { cert, params, key }
    }

    #[test]
    fn the_issuer_is_found_by_name_among_chain_and_bundle() {
        let ca_a = cert("CA A", None);
        let ca_b = cert("CA B", None);
        let leaf = cert("device", Some(&ca_a));
        let a = CertificateDer::from(ca_a.cert.der().to_vec());
        let b = CertificateDer::from(ca_b.cert.der().to_vec());
        let both = [b.clone(), a.clone()];
        assert_eq!(find_issuer(leaf.cert.der(), &both), Some(&a));
        assert_eq!(find_issuer(leaf.cert.der(), &[b]), None);
        assert_eq!(find_issuer(b"not a certificate", &both), None);
    }

    #[tokio::test]
    async fn a_certificate_without_a_responder_is_never_queried() {
        let ca = cert("CA", None);
        let leaf = cert("device", Some(&ca));
        let checker = OcspChecker::new(ByReason::new(|_| Default::default()), Gauge::default());
        let chain = [CertificateDer::from(leaf.cert.der().to_vec())];
        let cas = [CertificateDer::from(ca.cert.der().to_vec())];
        let outcome = checker
            .check("k", &chain, &cas, Duration::from_secs(1), None)
            .await;
        assert!(matches!(outcome, Outcome::NoResponder(why) if why.contains("AIA")));
        assert_eq!(checker.entries.get(), 0);
    }
}
