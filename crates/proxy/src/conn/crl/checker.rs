//! [`CrlChecker`]: one listener's CRL checks of device certificates, with
//! the I/O: the download of each CRL a certificate names (moat-stapling's
//! [`CrlClient`]), its verification (`verdict`), and the per-URL cache
//! with single flight ([`AnswerCache`]) shared by every worker thread, so
//! that a reconnect storm of a fleet whose certificates name one CRL
//! downloads it once.
//!
//! A download runs in a task of its own, bounded by the listener's
//! `crl_fetch_timeout`, so that a device that goes away does not cancel
//! the download other devices wait for.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use moat_stapling::CrlClient;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::verdict::{check, distribution_points, keep_until, verify, Fetched, Outcome};
use crate::conn::answers::{AnswerCache, Lookup};
use crate::conn::ocsp::find_issuer;
use crate::conn::reasons::CrlFetch;
use crate::metrics::reason::ByReason;

/// The HTTP client's own limits; `crl_fetch_timeout` (at most 60 s)
/// bounds every download within them.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Distribution points whose CRL one listener keeps: far more than the
/// CAs a fleet's devices come from.
const CAPACITY: usize = 1_000;

/// Where the result of a download in flight arrives.
type Pending = watch::Receiver<Option<Fetched>>;

/// CRLs by URL.
type Cache = AnswerCache<String, Fetched, Pending>;

/// One listener's CRL checks: its cache, its HTTP client (made on first
/// use) and its download metric. Lives as long as the listener, across
/// reloads.
pub struct CrlChecker {
    cache: Arc<Mutex<Cache>>,
    client: OnceLock<Result<CrlClient, String>>,
    fetches: ByReason<CrlFetch>,
}

impl std::fmt::Debug for CrlChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlChecker").finish_non_exhaustive()
    }
}

impl CrlChecker {
    /// A checker counting downloads in `fetches`.
    pub fn new(fetches: ByReason<CrlFetch>) -> Self {
        Self {
            cache: Arc::new(Mutex::new(AnswerCache::new(CAPACITY))),
            client: OnceLock::new(),
            fetches,
        }
    }

    /// Checks the leaf of a verified client `chain` (issuer from the rest
    /// of the chain or the client CA bundle `cas`) against the CRLs it
    /// names, downloading each at most once per its lifetime and waiting
    /// at most about `timeout`. The distribution points are alternatives
    /// (RFC 5280): the first that gives a current, verified CRL decides.
    pub async fn check(
        &self,
        chain: &[CertificateDer<'_>],
        cas: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Outcome {
        let Some((leaf_der, rest)) = chain.split_first() else {
            return Outcome::NoDistributionPoint;
        };
        let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
            return Outcome::Unavailable("the client certificate does not parse".into());
        };
        let urls = distribution_points(&leaf);
        if urls.is_empty() {
            return Outcome::NoDistributionPoint;
        }
        let Some(issuer) = find_issuer(leaf_der, rest.iter().chain(cas)) else {
            return Outcome::Unavailable(
                "the certificate's issuer is neither in its chain nor in the client CA bundle"
                    .into(),
            );
        };
        let mut why: Arc<str> = "no distribution point gave a CRL".into();
        for url in urls {
            match self.fetched(&url, issuer, timeout).await {
                Ok(crl) => match check(&crl, &leaf, SystemTime::now()) {
                    Outcome::Unavailable(e) => why = format!("{url}: {e}").into(),
                    decided => return decided,
                },
                Err(e) => why = format!("{url}: {e}").into(),
            }
        }
        Outcome::Unavailable(why)
    }

    /// The CRL at `url`: held, in flight (waited for), or downloaded now.
    async fn fetched(&self, url: &str, issuer: &CertificateDer<'_>, timeout: Duration) -> Fetched {
        let limit = timeout + Duration::from_secs(1);
        let pending = {
            let mut cache = lock(&self.cache);
            match cache.lookup(&url.to_string(), SystemTime::now()) {
                Lookup::Answer(fetched) => return fetched,
                Lookup::InFlight(rx) if !(rx.borrow().is_none() && rx.has_changed().is_err()) => rx,
                Lookup::InFlight(_) | Lookup::Miss => {
                    let (tx, rx) = watch::channel(None);
                    cache.start(url.to_string(), rx.clone());
                    drop(cache);
                    self.spawn(url.to_string(), issuer.to_vec(), timeout, tx);
                    rx
                }
            }
        };
        arrival(pending, limit).await
    }

    /// Downloads and verifies one CRL in its own task, stores and
    /// publishes the result.
    fn spawn(
        &self,
        url: String,
        issuer: Vec<u8>,
        timeout: Duration,
        tx: watch::Sender<Option<Fetched>>,
    ) {
        let client = self
            .client
            .get_or_init(|| {
                CrlClient::new(CLIENT_TIMEOUT, CLIENT_TIMEOUT).map_err(|e| e.to_string())
            })
            .clone();
        let (cache, fetches) = (self.cache.clone(), self.fetches.clone());
        tokio::spawn(async move {
            let fetched = match client {
                Ok(client) => download(&client, &url, &issuer, timeout).await,
                Err(e) => Err(format!("no HTTP client: {e}").into()),
            };
            fetches.inc(if fetched.is_ok() {
                CrlFetch::Ok
            } else {
                CrlFetch::Error
            });
            let now = SystemTime::now();
            lock(&cache).finish(url, fetched.clone(), keep_until(&fetched, now), now);
            let _ = tx.send(Some(fetched));
        });
    }
}

/// Downloads the CRL at `url` within `timeout` and verifies it with
/// `issuer`.
async fn download(client: &CrlClient, url: &str, issuer: &[u8], timeout: Duration) -> Fetched {
    let body = match tokio::time::timeout(timeout, client.get(url)).await {
        Err(_) => {
            return Err(format!("no CRL within {}", humantime::format_duration(timeout)).into())
        }
        Ok(Err(e)) => return Err(e.to_string().into()),
        Ok(Ok(body)) => body,
    };
    let (_, issuer) = X509Certificate::from_der(issuer)
        .map_err(|e| Arc::<str>::from(format!("the issuer does not parse: {e}")))?;
    verify(&body, &issuer).map(Arc::new).map_err(Arc::from)
}

/// The result of a download in flight, waited for at most `limit`.
async fn arrival(mut rx: Pending, limit: Duration) -> Fetched {
    match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
        Ok(Ok(value)) => value
            .clone()
            .unwrap_or_else(|| Err("the CRL download ended without a result".into())),
        Ok(Err(_)) => Err("the CRL download ended without a result".into()),
        Err(_) => Err("the CRL download did not finish in time".into()),
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    // The cache holds no invariant a panic elsewhere could break.
    cache.lock().unwrap_or_else(|e| e.into_inner())
}
