//! Process health as the admin endpoint reports it: ready once every
//! listener is bound and serving, and not draining, while no listener
//! has lost its backend (when `unready_after_backend_failures` is set),
//! and once every ACME certificate is obtained.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::conn::Catalog;

/// Readiness, read by `/readyz`.
pub struct Health {
    ready: AtomicBool,
    listeners: Arc<Catalog>,
}

impl Health {
    /// Not ready yet, for these listeners.
    pub fn new(listeners: Arc<Catalog>) -> Self {
        Self {
            ready: AtomicBool::new(false),
            listeners,
        }
    }

    /// Marks the process ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Why the process is not ready, for `/readyz`; `None` when it is.
    pub fn not_ready_because(&self) -> Option<String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Some("not serving (starting or draining)".into());
        }
        let listeners = self.listeners.load();
        if let Some(l) = listeners
            .iter()
            .find(|l| l.live.load().backend.health.is_down())
        {
            return Some(format!("listener {}: its backend is down", l.name));
        }
        listeners.iter().find_map(|l| {
            let live = l.live.load();
            let names: Vec<&str> = live
                .tls
                .pending
                .iter()
                .filter_map(|&i| live.config.tls.certificates.get(i)?.acme.as_ref())
                .flat_map(|a| a.domains.iter().map(String::as_str))
                .collect();
            (!names.is_empty()).then(|| {
                format!(
                    "listener {}: no certificate yet for {} (ACME order pending; see the log and moat_acme_failures_total)",
                    l.name,
                    names.join(", ")
                )
            })
        })
    }
}
