//! Fetch mode: the responder is queried on schedule (at once without a
//! staple, then at a fraction of each response's validity with jitter, with
//! back-off after failures), and the disk cache, when configured, gives a
//! staple at start-up and keeps the last good response.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::jitter::Jitter;
use super::state::State;
use crate::cache;
use crate::clock::fmt_time;
use crate::fetch::{FetchError, Fetcher};
use crate::observer::{RefreshError, StapleSource};

pub(super) struct FetchMode {
    fetcher: Arc<Fetcher>,
    url: String,
    /// The cache file of this leaf, with a cache directory.
    cache: Option<PathBuf>,
    jitter: Jitter,
}

impl FetchMode {
    pub(super) fn new(fetcher: Arc<Fetcher>, url: String, cache: Option<PathBuf>) -> Self {
        FetchMode {
            fetcher,
            url,
            cache,
            jitter: Jitter::new(),
        }
    }

    /// Start-up: staples a cached response at once if it is still good, and
    /// plans the first query.
    pub(super) async fn start(&mut self, state: &mut State) {
        info!(
            cert = %state.name(),
            responder = %self.url,
            cache = ?self.cache,
            must_staple = state.must_staple(),
            "OCSP stapling started"
        );
        self.load_cache(state).await;
    }

    async fn load_cache(&mut self, state: &mut State) {
        let Some(path) = &self.cache else {
            state.next_refresh = Some(state.now());
            return;
        };
        let read = cache::in_background(path, cache::read_cached).await;
        let now = state.now();
        match read {
            Ok(None) => debug!(cert = %state.name(), "no cached OCSP response"),
            Ok(Some(der)) => match state.accept(&der, now) {
                Ok(staple) => {
                    state.announce(
                        &staple,
                        StapleSource::Cache,
                        path,
                        "stapling the cached OCSP response",
                    );
                    state.install(staple, StapleSource::Cache);
                }
                Err(e) => info!(
                    cert = %state.name(),
                    file = %path.display(),
                    reason = e.reason(),
                    error = %e,
                    "not using the cached OCSP response"
                ),
            },
            Err(e) => warn!(
                cert = %state.name(),
                file = %path.display(),
                error = %e,
                "cannot read the OCSP cache file"
            ),
        }
        let next = match &state.held {
            Some(held) => state.policy.refresh_due(
                held.staple.this_update(),
                held.staple.next_update(),
                self.jitter.next(),
            ),
            None => now,
        };
        state.next_refresh = Some(next);
        state.publish(false);
    }

    /// One query, verified, then scheduled.
    pub(super) async fn attempt(&mut self, state: &mut State) {
        let fetcher = self.fetcher.clone();
        let target = state.shared.clone();
        debug!(cert = %state.name(), "querying the OCSP responder");
        let fetched = isolated(async move {
            fetcher
                .fetch(&target.target.leaf_der, &target.target.issuer_der)
                .await
        })
        .await;
        let now = state.now();
        let outcome = fetched
            .map_err(RefreshError::Fetch)
            .and_then(|der| state.accept(&der, now));
        match outcome {
            Ok(staple) => {
                state.alarm_if_revoked(&staple, StapleSource::Fetched);
                let der = staple.der().to_vec();
                let changed = state.install(staple, StapleSource::Fetched);
                if let Some(held) = &state.held {
                    let next = state.policy.refresh_at(
                        held.staple.this_update(),
                        held.staple.next_update(),
                        now,
                        self.jitter.next(),
                    );
                    state.next_refresh = Some(next);
                    info!(
                        cert = %state.name(),
                        this_update = %fmt_time(held.staple.this_update()),
                        next_update = %fmt_time(held.staple.next_update()),
                        status = %held.staple.cert_status(),
                        changed,
                        next_refresh = %fmt_time(next),
                        "OCSP response refreshed"
                    );
                }
                state.record(Ok(()));
                if changed {
                    if let Some(path) = &self.cache {
                        write_cache(state, path, der).await;
                    }
                }
            }
            Err(err) => {
                let failures = state.failures.saturating_add(1);
                let held_until = state.held.as_ref().map(|h| h.serve_until);
                let next = state
                    .policy
                    .retry_at(failures, now, held_until, self.jitter.next());
                state.next_refresh = Some(next);
                warn!(
                    cert = %state.name(),
                    reason = err.reason(),
                    error = %err,
                    failures,
                    retry_at = %fmt_time(next),
                    still_stapling_until = %held_until.map_or_else(|| "-".to_string(), fmt_time),
                    "OCSP refresh failed"
                );
                state.record(Err(err));
            }
        }
        state.publish(false);
        state.check_must_staple();
    }
}

async fn write_cache(state: &State, path: &Path, der: Vec<u8>) {
    let result = cache::in_background(path, move |path| cache::write_atomic(path, &der)).await;
    match result {
        Ok(()) => debug!(cert = %state.name(), file = %path.display(), "OCSP response cached"),
        Err(e) => {
            warn!(
                cert = %state.name(),
                file = %path.display(),
                error = %e,
                "cannot write the OCSP cache file; stapling continues, but a restart \
                 would have to query the responder"
            );
            state.cache_write_failed(&e);
        }
    }
}

/// Runs a query in its own task, so a panic in a dependency becomes an
/// error instead of ending the stapler; aborted if the stapler stops.
async fn isolated<F>(query: F) -> Result<Vec<u8>, FetchError>
where
    F: Future<Output = Result<Vec<u8>, FetchError>> + Send + 'static,
{
    struct AbortOnDrop(JoinHandle<Result<Vec<u8>, FetchError>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(query));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(FetchError::Internal("the OCSP query panicked".into())),
        Err(e) => Err(FetchError::Internal(e.to_string())),
    }
}
