//! One listener's reload. It reads every file into memory, and if the bytes
//! differ from what is served, builds a complete new TLS state off to the
//! side, exports it (metrics, stapling tasks) and publishes it with one
//! atomic swap. Handshakes that start afterwards use it. When the client CA
//! bundle or the CRLs changed, every live session's client certificate is
//! verified again against the new state before the swap (`recheck`); those it refuses are closed once it is in
//! service, and a state that would close them all is refused unless
//! forced. On any failure the listener keeps its last good state, the file
//! and the reason are logged, the failure is counted, and the listener
//! stays ready.
//!
//! Session ticket keys survive a certificate change. When the client CA
//! bundle changes, they are replaced, so that a device the new bundle would
//! refuse cannot get back in by resuming an old session.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, error, info, warn};

use super::super::stapling;
use super::super::tls_series::TlsSeries;
use super::recheck;
use crate::config::ListenerConfig;
use crate::conn::backend::BackendLink;
use crate::conn::context::{Context, Live, Route};
use crate::metrics::labels::{ListenerLabels, ResultLabels};
use crate::metrics::reason::{reasons, ByReason};
use crate::metrics::Metrics;
use crate::relay::throttle::DeviceLimits;
use crate::tls::certs::{unix, CertError};
use crate::tls::files::{Digest, Sources};
use crate::tls::policy::TlsPolicy;
use crate::tls::{self, client_auth, Resumption};

reasons! {
    /// The result of a reload attempt (`moat_certificate_reloads_total`).
    pub enum ReloadResult {
        /// New certificates are in service.
        Success => "success",
        /// The files could not be used; the previous ones stay.
        Failure => "failure",
        /// An operator asked, and nothing had changed.
        Unchanged => "unchanged",
    }
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload`.
    Admin,
    /// `POST /reload?force=true`: applied even when it closes every live
    /// session.
    AdminForced,
    /// A change in a watched directory.
    FileChange,
    /// The periodic content check.
    Periodic,
}

impl Trigger {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Admin => "admin",
            Self::AdminForced => "admin (forced)",
            Self::FileChange => "file change",
            Self::Periodic => "periodic check",
        }
    }

    /// Whether an operator asked: then "unchanged" is reported and counted.
    pub(super) fn explicit(self) -> bool {
        matches!(self, Self::Signal | Self::Admin | Self::AdminForced)
    }

    /// Whether a state that closes every live session may be applied.
    fn forced(self) -> bool {
        self == Self::AdminForced
    }
}

/// What a reload did to one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// New certificates are in service.
    Reloaded {
        /// The default certificate's serial.
        serial: String,
    },
    /// The files are as served; nothing was done.
    Unchanged,
    /// The files could not be used; the previous state stays in service.
    Failed(CertError),
    /// A failure that was already reported for the same files.
    StillFailing,
}

/// A listener's reload metrics, resolved once.
struct ReloadCounters {
    results: ByReason<ReloadResult>,
    last_success: Gauge,
    pending: Gauge,
    rechecked: Counter,
}

impl ReloadCounters {
    fn new(metrics: &Metrics, name: &str) -> Self {
        let l = ListenerLabels {
            listener: name.to_string(),
        };
        Self {
            results: ByReason::new(|result| {
                metrics.reloads.get_or_create_owned(&ResultLabels {
                    listener: name.to_string(),
                    result: result.to_string(),
                })
            }),
            last_success: metrics.last_reload_success.get_or_create_owned(&l),
            pending: metrics.reload_pending.get_or_create_owned(&l),
            rechecked: metrics.sessions_rechecked.get_or_create_owned(&l),
        }
    }

    /// Records a successful load at `unix_secs`, and that nothing is
    /// pending.
    fn succeeded(&self, unix_secs: i64) {
        self.last_success.set(unix_secs);
        self.pending.set(0);
    }
}

/// Per-listener reload bookkeeping. Only the reload worker touches it.
struct ReloadState {
    resumption: Resumption,
    failed: Option<Digest>,
    series: TlsSeries,
    staplers: Vec<Option<moat_stapling::StaplerHandle>>,
}

/// A listener as the reload worker sees it: its connections' context
/// (whose TLS state it swaps), its TLS policy, and its bookkeeping.
pub struct ReloadTarget {
    /// The listener's context.
    pub ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    counters: ReloadCounters,
    state: Mutex<ReloadState>,
}

impl ReloadTarget {
    /// A listener just loaded at start-up with `resumption`: exports its
    /// certificate metrics and starts its OCSP stapling tasks (so it must
    /// run inside the runtime).
    pub fn new(ctx: Arc<Context>, resumption: Resumption, metrics: &Arc<Metrics>) -> Self {
        let name = &ctx.name;
        let live = ctx.live.load_full();
        let tls = &live.tls;
        let series = TlsSeries::export(metrics, name, tls, &TlsSeries::default());
        let counters = ReloadCounters::new(metrics, name);
        counters.succeeded(unix(tls.loaded_at));
        let mut staplers = Vec::new();
        stapling::sync(&live.config, tls, &mut staplers, metrics);
        Self {
            metrics: metrics.clone(),
            counters,
            state: Mutex::new(ReloadState {
                resumption,
                failed: None,
                series,
                staplers,
            }),
            ctx,
        }
    }

    /// Reloads the listener if its files changed, or if `settings` (its
    /// part of a reloaded configuration file, with its TLS policy) differ
    /// from those in service. Blocking: it reads files.
    pub fn reload(
        &self,
        trigger: Trigger,
        settings: Option<(&ListenerConfig, &TlsPolicy)>,
    ) -> ReloadOutcome {
        let shared = &*self.ctx;
        let counters = &self.counters;
        let name = &shared.name;
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let live = shared.live.load_full();
        let current = &live.tls;
        let now = SystemTime::now();
        let (config, policy) = settings.unwrap_or((&live.config, &live.policy));
        let reconfigured = *config != live.config;

        let sources = match Sources::read(config) {
            Ok(s) => s,
            // No file digest for unreadable files: key the failure on the error
            // itself, so that the periodic check reports each distinct one once.
            Err(e) => return failed(&mut state, counters, name, trigger, error_digest(&e), e),
        };
        let digest = sources.digest();
        if digest == current.digest && !reconfigured {
            state.failed = None;
            counters.pending.set(0);
            if trigger.explicit() {
                counters.results.inc(ReloadResult::Unchanged);
                info!(listener = %name, trigger = trigger.as_str(), "certificates unchanged; nothing to reload");
            } else {
                debug!(listener = %name, trigger = trigger.as_str(), "certificates unchanged");
            }
            return ReloadOutcome::Unchanged;
        }
        if !trigger.explicit() && !reconfigured && state.failed == Some(digest) {
            return ReloadOutcome::StillFailing;
        }

        // A new client CA bundle gets new ticket keys (unless they are shared
        // from a file); certificates alone keep them, so devices go on resuming
        // across a rotation.
        let (resumption, tickets_rotated) =
            match Resumption::for_state(&sources, Some((&state.resumption, current))) {
                Ok(r) => r,
                Err(e) => return failed(&mut state, counters, name, trigger, digest, e),
            };
        let new = match tls::build_from(config, policy, &sources, Some(&resumption), now) {
            Ok(new) => new,
            Err(e) => return failed(&mut state, counters, name, trigger, digest, e),
        };

        // Verified before the swap, so that a state that would close every
        // device can still be refused. A changed allow-list or client-auth
        // setting counts as a change of the client-auth state.
        let client_auth_edited = config.tls.client_auth != live.config.tls.client_auth;
        let verdict = self.recheck(current, &new, client_auth_edited);
        if verdict.drops_all() && !trigger.forced() {
            let crl = new.crls.first().map(|c| c.path.clone());
            let e = recheck::refusal(&verdict, crl, new.client_ca_path.clone());
            return failed(&mut state, counters, name, trigger, digest, e);
        }
        state.resumption = resumption;
        state.failed = None;
        let next = Live {
            // A new link (and fresh failure counts) only when how the broker
            // is reached changed.
            backend: if BackendLink::settings_differ(config, &live.config) {
                BackendLink::start(config, &self.metrics)
            } else {
                live.backend.clone()
            },
            config: config.clone(),
            policy: policy.clone(),
            tls: Arc::new(new),
            routes: live.routes.clone(),
            // Fresh buckets only when the limits changed.
            limits: if DeviceLimits::of(config).config == live.limits.config {
                live.limits.clone()
            } else {
                Arc::new(DeviceLimits::of(config))
            },
        };
        let mqtt_edited = config.mqtt != live.config.mqtt;
        let serial = self.put_in_service(&mut state, next, trigger, reconfigured, now);
        self.close_refused(&verdict);
        if mqtt_edited {
            let told = self.ctx.sessions.policy_changed(name);
            info!(listener = %name, sessions = told, "MQTT settings reloaded; live sessions take them for their next packets");
        }
        if tickets_rotated {
            if config.tls.session_ticket_keys.is_some() {
                info!(listener = %name, "session ticket keys reloaded from the shared key file");
            } else {
                info!(listener = %name, "client CA bundle changed: session tickets rotated, so every device makes one full handshake against the new bundle");
            }
        }
        ReloadOutcome::Reloaded { serial }
    }

    /// Exports `next`'s metrics, syncs its stapling and swaps it in; logs
    /// and counts the success. Returns the default certificate's serial.
    fn put_in_service(
        &self,
        state: &mut ReloadState,
        next: Live,
        trigger: Trigger,
        reconfigured: bool,
        now: SystemTime,
    ) -> String {
        let (name, metrics) = (&self.ctx.name, &self.metrics);
        let new = &next.tls;
        let leaf = new.certs.first().map(|c| c.leaf().clone());
        let serial = new.default_serial();
        let pending_acme = new.pending.len();
        state.series = TlsSeries::export(metrics, name, new, &state.series);
        // Before the swap, so the new certificates staple from their first
        // handshake when the leaf is unchanged.
        stapling::sync(&next.config, new, &mut state.staplers, metrics);
        let crl_warnings = client_auth::crl_warnings(
            name,
            &new.crls,
            &new.client_cas,
            next.config.tls.client_auth.expired_crl,
            unix(now),
        );
        self.ctx.live.store(Arc::new(next));
        self.counters.results.inc(ReloadResult::Success);
        self.counters.succeeded(unix(now));
        match &leaf {
            Some(leaf) => info!(
                listener = %name,
                trigger = trigger.as_str(),
                certificate = %leaf.subject,
                serial = %leaf.serial,
                not_after = %leaf.not_after_rfc3339(),
                days_left = leaf.days_left(now),
                settings_changed = reconfigured,
                pending_acme,
                "certificates reloaded"
            ),
            None => info!(
                listener = %name,
                trigger = trigger.as_str(),
                settings_changed = reconfigured,
                "settings reloaded; no certificate yet (ACME pending)"
            ),
        }
        for w in crl_warnings {
            warn!("{w}");
        }
        serial
    }

    /// Tells the sessions a re-check refused to stop.
    fn close_refused(&self, verdict: &recheck::Verdict) {
        if verdict.close.is_empty() {
            return;
        }
        warn!(
            listener = %self.ctx.name,
            sessions = verdict.close.len(),
            checked = verdict.checked,
            reasons = %verdict.summary(),
            "closing live sessions the reloaded client-auth state no longer accepts"
        );
        for (id, reason) in &verdict.close {
            self.ctx.sessions.stop(*id, *reason);
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether this is a listener (which owns a socket), not a route.
    pub fn is_listener(&self) -> bool {
        self.ctx.live.load().config.route.is_none()
    }

    /// The listener this route belongs to; `None` for a listener.
    pub fn route_of(&self) -> Option<String> {
        let live = self.ctx.live.load();
        live.config.route.as_ref().map(|r| r.parent.clone())
    }

    /// Makes `routes` this listener's SNI table, each selected by the
    /// names its settings in service list (after a configuration reload
    /// added, removed or renamed routes, or changed their `server_names`).
    pub fn set_routes(&self, routes: Vec<Arc<Context>>) {
        let live = self.ctx.live.load_full();
        if live.routes.is_empty() && routes.is_empty() {
            return;
        }
        let routes = routes.into_iter().map(Route::of).collect();
        self.ctx.live.store(Arc::new(Live {
            routes,
            ..(*live).clone()
        }));
    }

    /// Takes a removed route out of service: its stapling tasks stop, and
    /// its certificate and reload series leave `/metrics`.
    pub fn retire(&self) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.staplers.clear();
        state.series.remove(&self.metrics);
        state.series = TlsSeries::default();
        let l = ListenerLabels {
            listener: self.ctx.name.clone(),
        };
        self.metrics.last_reload_success.remove(&l);
        self.metrics.reload_pending.remove(&l);
    }
}

impl ReloadTarget {
    /// Verifies the listener's live sessions against `new` when its
    /// client-auth state differs from `current`'s (or its settings were
    /// `edited`); nothing to close otherwise.
    fn recheck(
        &self,
        current: &tls::ListenerTls,
        new: &tls::ListenerTls,
        edited: bool,
    ) -> recheck::Verdict {
        if new.client_verifier.is_none() || !(edited || recheck::client_auth_changed(current, new))
        {
            return recheck::Verdict::default();
        }
        let name = &self.ctx.name;
        let began = std::time::Instant::now();
        let verdict = recheck::recheck(&self.ctx.sessions.sessions_of(name), |c| {
            new.verify_client(c)
        });
        info!(
            listener = %name,
            checked = verdict.checked,
            refused = verdict.close.len(),
            duration_ms = began.elapsed().as_millis() as u64,
            "live sessions re-checked against the new client-auth state"
        );
        self.counters.rechecked.inc_by(verdict.checked as u64);
        verdict
    }
}

fn error_digest(e: &CertError) -> Digest {
    let mut out = [0u8; 32];
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, e.to_string().as_bytes());
    out.copy_from_slice(d.as_ref());
    out
}

/// Records a failed reload: the old state stays, the failure is logged and
/// counted once per distinct failure (every time when an operator asked).
fn failed(
    state: &mut ReloadState,
    counters: &ReloadCounters,
    name: &str,
    trigger: Trigger,
    key: Digest,
    e: CertError,
) -> ReloadOutcome {
    let repeat = !trigger.explicit() && state.failed == Some(key);
    state.failed = Some(key);
    counters.pending.set(1);
    if repeat {
        return ReloadOutcome::StillFailing;
    }
    counters.results.inc(ReloadResult::Failure);
    error!(
        listener = %name,
        trigger = trigger.as_str(),
        file = %e.file.display(),
        error = %e.message,
        hint = %e.hint,
        "certificate reload failed; still serving the previous certificates"
    );
    ReloadOutcome::Failed(e)
}

/// A summary of outcomes for logs and the admin endpoint.
pub fn all_ok(outcomes: &[(String, ReloadOutcome)]) -> bool {
    outcomes
        .iter()
        .all(|(_, o)| matches!(o, ReloadOutcome::Reloaded { .. } | ReloadOutcome::Unchanged))
}
