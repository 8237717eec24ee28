//! What a listener's connections share, and nothing else: its settings,
//! its current TLS state (swapped whole by a reload), its way to the
//! broker, its admission limits, its metric handles and its SNI routes.
//! Reload bookkeeping, readiness and the admin endpoint keep their own
//! state, in `control`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::admit::Admission;
use super::backend::BackendLink;
use super::metrics::ConnMetrics;
use crate::config::ListenerConfig;
use crate::metrics::Metrics;
use crate::tls::certs::name_matches;
use crate::tls::ListenerTls;

/// Everything one listener's (or route's) connections need.
pub struct Context {
    /// The listener's settings.
    pub config: ListenerConfig,
    /// The current TLS state; a reload swaps it.
    pub tls: ArcSwap<ListenerTls>,
    /// Where to relay to.
    pub backend: BackendLink,
    /// Admission limits.
    pub admission: Admission,
    /// Metric handles.
    pub metrics: ConnMetrics,
    /// The routes this listener hands connections to by SNI.
    pub routes: Vec<Arc<Context>>,
}

impl Context {
    /// The context of `config`, serving `tls` from the start, with its
    /// routes.
    pub fn new(
        config: &ListenerConfig,
        tls: ListenerTls,
        metrics: &Metrics,
        routes: Vec<Arc<Context>>,
    ) -> Self {
        Self {
            tls: ArcSwap::from_pointee(tls),
            backend: BackendLink::new(config),
            admission: Admission::new(config),
            metrics: ConnMetrics::new(metrics, &config.name),
            routes,
            config: config.clone(),
        }
    }

    /// The route a server name selects: an exact name first, then a
    /// wildcard; `None` when no route claims it.
    pub fn route_for(&self, name: &str) -> Option<&Arc<Context>> {
        if self.routes.is_empty() {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        fn names(r: &Context) -> &[String] {
            r.config.route.as_ref().map_or(&[], |o| &o.server_names)
        }
        self.routes
            .iter()
            .find(|r| names(r).iter().any(|n| !n.starts_with("*.") && *n == name))
            .or_else(|| {
                self.routes.iter().find(|r| {
                    names(r)
                        .iter()
                        .any(|n| n.starts_with("*.") && name_matches(n, &name))
                })
            })
    }
}
