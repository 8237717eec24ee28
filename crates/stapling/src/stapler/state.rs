//! What a stapler's task holds whatever its mode, and the rules for
//! changing it: a response is held only if it verifies and the stapling
//! policy allows it, is replaced only by a newer one, and is dropped when
//! its stapling window ends. Every change is published to the handles and
//! reported to the observer from here, with the revoked and Must-Staple
//! alarms.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{debug, error, info, warn};

use super::handle::{Served, Shared};
use crate::clock::fmt_time;
use crate::config::StaplingConfig;
use crate::observer::{RefreshError, RefreshRecord, StapleObserver, StapleSource, StapleStatus};
use crate::schedule::Policy;
use crate::verify::{verify_response, CertStatus, Staple};

/// A staple the task holds.
pub(super) struct Held {
    pub(super) staple: Arc<Staple>,
    pub(super) source: StapleSource,
    pub(super) serve_until: SystemTime,
}

/// The part of a stapler's task that every mode shares.
pub(super) struct State {
    pub(super) shared: Arc<Shared>,
    pub(super) config: StaplingConfig,
    pub(super) policy: Policy,
    observer: Arc<dyn StapleObserver>,
    must_staple: bool,
    pub(super) held: Option<Held>,
    /// Fetch mode: when to query next, as the status reports it. `None` in
    /// static-file mode, which makes no queries.
    pub(super) next_refresh: Option<SystemTime>,
    /// Refreshes that failed since the last success.
    pub(super) failures: u32,
    last_refresh: Option<RefreshRecord>,
    warned_without_staple: bool,
}

impl State {
    pub(super) fn new(
        shared: Arc<Shared>,
        config: StaplingConfig,
        observer: Arc<dyn StapleObserver>,
        must_staple: bool,
        next_refresh: Option<SystemTime>,
    ) -> Self {
        State {
            shared,
            policy: Policy::from(&config),
            config,
            observer,
            must_staple,
            held: None,
            next_refresh,
            failures: 0,
            last_refresh: None,
            warned_without_staple: false,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.shared.target.name
    }

    pub(super) fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    pub(super) fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    pub(super) fn must_staple(&self) -> bool {
        self.must_staple
    }

    /// Verifies a response and applies the stapling policy.
    pub(super) fn accept(&self, der: &[u8], now: SystemTime) -> Result<Staple, RefreshError> {
        let target = &self.shared.target;
        let staple = verify_response(
            der,
            &target.leaf_der,
            &target.issuer_der,
            now,
            self.config.clock_skew,
        )
        .map_err(RefreshError::Verify)?;
        if *staple.cert_status() == CertStatus::Unknown {
            return Err(RefreshError::UnknownStatus);
        }
        if now
            >= self
                .policy
                .serve_until(staple.this_update(), staple.next_update())
        {
            return Err(RefreshError::ExpiresTooSoon {
                next_update: staple.next_update(),
            });
        }
        Ok(staple)
    }

    /// Holds `staple` unless it is the same response or older than the one
    /// held. Returns whether the staple changed.
    pub(super) fn install(&mut self, staple: Staple, source: StapleSource) -> bool {
        if let Some(held) = &mut self.held {
            if held.staple.der() == staple.der() {
                held.source = source;
                return false;
            }
            if staple.this_update() < held.staple.this_update() {
                debug!(
                    cert = %self.shared.target.name,
                    held_this_update = %fmt_time(held.staple.this_update()),
                    got_this_update = %fmt_time(staple.this_update()),
                    "got an older OCSP response than the one held; keeping the held one"
                );
                return false;
            }
        }
        let serve_until = self
            .policy
            .serve_until(staple.this_update(), staple.next_update());
        self.held = Some(Held {
            staple: Arc::new(staple),
            source,
            serve_until,
        });
        self.warned_without_staple = false;
        self.publish(true);
        true
    }

    /// Logs that `staple`, read from `file`, is about to be stapled (with
    /// `message`), and raises the revoked alarm if it says so.
    pub(super) fn announce(
        &self,
        staple: &Staple,
        source: StapleSource,
        file: &Path,
        message: &'static str,
    ) {
        info!(
            cert = %self.name(),
            file = %file.display(),
            this_update = %fmt_time(staple.this_update()),
            next_update = %fmt_time(staple.next_update()),
            status = %staple.cert_status(),
            "{message}"
        );
        self.alarm_if_revoked(staple, source);
    }

    /// Logs a revoked response at error level: the alarm.
    pub(super) fn alarm_if_revoked(&self, staple: &Staple, source: StapleSource) {
        if let CertStatus::Revoked {
            revocation_time,
            reason,
        } = staple.cert_status()
        {
            error!(
                cert = %self.name(),
                revocation_time = %fmt_time(*revocation_time),
                reason = %reason.map_or_else(|| "not given".to_string(), |r| r.to_string()),
                source = %source,
                "the certificate is REVOKED according to its OCSP responder; stapling the \
                 revoked response so clients refuse it. Replace the certificate."
            );
        }
    }

    fn status(&self) -> StapleStatus {
        StapleStatus {
            name: self.name().to_string(),
            must_staple: self.must_staple,
            staple: self.held.as_ref().map(|h| h.staple.clone()),
            source: self.held.as_ref().map(|h| h.source),
            serve_until: self.held.as_ref().map(|h| h.serve_until),
            next_refresh: self.next_refresh,
            last_refresh: self.last_refresh.clone(),
            consecutive_failures: self.failures,
        }
    }

    /// Publishes the held staple and status; with `changed`, tells the
    /// observer the staple changed.
    pub(super) fn publish(&self, changed: bool) {
        if self.stopped() {
            return;
        }
        if changed {
            self.shared.current.store(self.held.as_ref().map(|h| {
                Arc::new(Served {
                    staple: h.staple.clone(),
                    serve_until: h.serve_until,
                })
            }));
        }
        let status = self.status();
        self.shared.status.store(Arc::new(status.clone()));
        if changed {
            self.observer.staple_changed(&status);
        }
    }

    pub(super) fn record(&mut self, result: Result<(), RefreshError>) {
        match &result {
            Ok(()) => self.failures = 0,
            Err(_) => self.failures = self.failures.saturating_add(1),
        }
        if !self.stopped() {
            self.observer
                .refresh_result(self.name(), result.as_ref().map(|_| ()));
        }
        self.last_refresh = Some(RefreshRecord {
            at: self.now(),
            result,
        });
    }

    /// Tells the observer the disk cache could not be written.
    pub(super) fn cache_write_failed(&self, error: &io::Error) {
        if !self.stopped() {
            self.observer.cache_write_failed(self.name(), error);
        }
    }

    /// Drops the staple once its stapling window ends.
    pub(super) fn expire(&mut self, now: SystemTime) {
        let Some(held) = &self.held else { return };
        if now < held.serve_until {
            return;
        }
        warn!(
            cert = %self.name(),
            next_update = %fmt_time(held.staple.next_update()),
            source = %held.source,
            "the OCSP response is about to expire and no fresh one was obtained: \
             no longer stapling"
        );
        self.held = None;
        self.publish(true);
        self.check_must_staple();
    }

    pub(super) fn check_must_staple(&mut self) {
        if !self.must_staple || self.held.is_some() || self.warned_without_staple {
            return;
        }
        self.warned_without_staple = true;
        warn!(
            cert = %self.name(),
            "the certificate requires OCSP stapling (Must-Staple) but no valid staple is \
             available: clients that honour Must-Staple will refuse it"
        );
        if !self.stopped() {
            self.observer.must_staple_without_staple(self.name());
        }
    }
}
