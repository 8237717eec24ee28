//! Process health as the admin endpoint reports it: ready once every
//! listener is bound and serving, and not draining, and while no listener
//! has lost its backend (when `unready_after_backend_failures` is set).

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

    /// Whether the process is ready: serving, and no listener's backend
    /// is down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && !self
                .listeners
                .load()
                .iter()
                .any(|l| l.live.load().backend.health.is_down())
    }
}
