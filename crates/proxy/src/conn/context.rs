//! What a listener's connections share, and nothing else. Two parts:
//!
//! - what is fixed for the life of the process: the name, the admission
//!   limits, the metric handles, the registry of live sessions (one
//!   for the process, shared by every listener), and the cache of OCSP
//!   answers about device certificates;
//! - [`Live`]: everything a reload may change (the settings, the TLS
//!   state, the way to the broker, the SNI routes), swapped whole. A
//!   connection loads it once, when it is accepted, and keeps that one for
//!   its life.
//!
//! Reload bookkeeping, readiness and the admin endpoint keep their own
//! state, in `control`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::admit::Admission;
use super::backend::BackendLink;
use super::crl::CrlChecker;
use super::metrics::ConnMetrics;
use super::ocsp::OcspChecker;
use super::registry::Registry;
use crate::config::ListenerConfig;
use crate::metrics::Metrics;
use crate::relay::throttle::DeviceLimits;
use crate::tls::acme_alpn::AlpnChallenges;
use crate::tls::certs::name_matches;
use crate::tls::policy::TlsPolicy;
use crate::tls::ListenerTls;

/// Everything one listener's (or route's) connections need.
pub struct Context {
    /// The listener's name, in logs and metric labels.
    pub name: String,
    /// Admission limits.
    pub admission: Admission,
    /// Metric handles.
    pub metrics: ConnMetrics,
    /// What a reload may change; swapped whole.
    pub live: ArcSwap<Live>,
    /// The live sessions (of every listener: one registry per process).
    pub sessions: Arc<Registry>,
    /// OCSP checks of device certificates, with their cache (kept across
    /// reloads; used only when `tls.client_auth.ocsp` is on).
    pub ocsp: OcspChecker,
    /// Its CRL distribution point checks of device certificates, with
    /// their per-URL cache.
    pub crl: CrlChecker,
    /// TLS-ALPN-01 answers of ACME orders in progress (one table per
    /// process).
    pub challenges: Arc<AlpnChallenges>,
}

/// Every listener and route in service, each listener followed by its
/// routes (the order of the expanded configuration); swapped whole when a
/// reload adds or removes a route.
pub type Catalog = ArcSwap<Vec<Arc<Context>>>;

/// The part of a listener a reload may change, as one value.
#[derive(Clone)]
pub struct Live {
    /// The listener's settings.
    pub config: ListenerConfig,
    /// Its TLS policy (versions, suites, groups).
    pub policy: TlsPolicy,
    /// The TLS state handshakes use.
    pub tls: Arc<ListenerTls>,
    /// Where to relay to.
    pub backend: Arc<BackendLink>,
    /// The routes this listener hands connections to by SNI.
    pub routes: Vec<Route>,
    /// Per-device rate limits (`mqtt.limits`), shared by its connections.
    pub limits: Arc<DeviceLimits>,
}

/// An SNI route of a listener: the names that select it (lower case) and
/// its context.
#[derive(Clone)]
pub struct Route {
    /// Exact names and `*.` wildcards.
    pub server_names: Vec<String>,
    /// The route's own context.
    pub ctx: Arc<Context>,
}

impl Route {
    /// The route of `ctx`, selected by the names its configuration lists.
    pub fn of(ctx: Arc<Context>) -> Self {
        let server_names = ctx
            .live
            .load()
            .config
            .route
            .as_ref()
            .map_or_else(Vec::new, |o| o.server_names.clone());
        Self { server_names, ctx }
    }
}

impl Context {
    /// The context of `config`, serving `tls` from the start, with its
    /// routes.
    pub fn new(
        config: &ListenerConfig,
        policy: TlsPolicy,
        tls: ListenerTls,
        metrics: &Metrics,
        routes: Vec<Route>,
        sessions: Arc<Registry>,
        challenges: Arc<AlpnChallenges>,
    ) -> Self {
        let backend = BackendLink::start(config, metrics);
        let metrics = ConnMetrics::new(metrics, &config.name);
        Self {
            sessions,
            challenges,
            name: config.name.clone(),
            admission: Admission::new(config),
            ocsp: OcspChecker::new(
                metrics.client_ocsp_queries.clone(),
                metrics.client_ocsp_cache_entries.clone(),
            ),
            crl: CrlChecker::new(metrics.client_crl_fetches.clone()),
            metrics,
            live: ArcSwap::from_pointee(Live {
                backend,
                config: config.clone(),
                policy,
                tls: Arc::new(tls),
                routes,
                limits: Arc::new(DeviceLimits::of(config)),
            }),
        }
    }
}

impl Live {
    /// The route a server name selects: an exact name first, then a
    /// wildcard; `None` when no route claims it.
    pub fn route_for(&self, name: &str) -> Option<&Arc<Context>> {
        if self.routes.is_empty() {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.routes
            .iter()
            .find(|r| {
                r.server_names
                    .iter()
                    .any(|n| !n.starts_with("*.") && *n == name)
            })
            .or_else(|| {
                self.routes.iter().find(|r| {
                    r.server_names
                        .iter()
                        .any(|n| n.starts_with("*.") && name_matches(n, &name))
                })
            })
            .map(|r| &r.ctx)
    }
}
