//! The listeners: their contexts, their sockets, and the accept loops that
//! hand each connection to `conn`, one loop per listener on every
//! connection worker.
//!
//! - `socket`: binding, before the runtime starts (and before a switch to
//!   an unprivileged user);
//! - `workers`: one single-threaded runtime per CPU;
//! - `accept`: the accept loop, with admission and the back-off on
//!   descriptor exhaustion.

mod accept;
pub mod socket;
pub mod workers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::ValidConfig;
use crate::conn::Context;
use crate::metrics::Metrics;
use crate::tls::ListenerTls;
use socket::BindError;
use workers::Workers;

/// The context of every listener, each with its routes.
pub struct Listeners {
    /// The listeners that own sockets, in configuration order.
    pub parents: Vec<Arc<Context>>,
    /// Every listener and route: each parent followed by its routes.
    pub all: Vec<Arc<Context>>,
}

impl Listeners {
    /// Builds every listener's context from its configuration and its TLS
    /// state (in configuration order), linking routes to their listener.
    pub fn build(config: &ValidConfig, tls: Vec<ListenerTls>, metrics: &Metrics) -> Self {
        // Routes come after their listener in the expanded configuration:
        // build them first, so that each listener is built with its routes.
        let mut routes: HashMap<&str, Vec<Arc<Context>>> = HashMap::new();
        let mut parents = Vec::new();
        for ((l, _), state) in config.listeners().zip(tls) {
            match &l.route {
                Some(of) => routes
                    .entry(of.parent.as_str())
                    .or_default()
                    .push(Arc::new(Context::new(l, state, metrics, Vec::new()))),
                None => parents.push((l, state)),
            }
        }
        let parents: Vec<Arc<Context>> = parents
            .into_iter()
            .map(|(l, state)| {
                let own = routes.remove(l.name.as_str()).unwrap_or_default();
                Arc::new(Context::new(l, state, metrics, own))
            })
            .collect();
        let all = parents
            .iter()
            .flat_map(|p| std::iter::once(p).chain(p.routes.iter()).cloned())
            .collect();
        Self { parents, all }
    }

    /// Starts accepting: every listener's socket group, one socket per
    /// worker, until `shutdown`; connections are tracked by `tracker`. Also
    /// starts the sweep of idle per-address entries.
    pub fn start(
        &self,
        mut sockets: HashMap<String, Vec<std::net::TcpListener>>,
        workers: &Workers,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), BindError> {
        let mut groups = Vec::with_capacity(self.parents.len());
        for parent in &self.parents {
            let l = &parent.config;
            let group = sockets
                .remove(&l.name)
                .filter(|group| group.len() == workers.len())
                .ok_or_else(|| {
                    BindError(format!(
                        "listener {:?}: no socket was bound for each worker",
                        l.name
                    ))
                })?;
            groups.push((parent, group));
        }
        for (parent, group) in groups {
            for ctx in std::iter::once(parent).chain(parent.routes.iter()) {
                log_listening(ctx);
            }
            for (worker, socket) in group.into_iter().enumerate() {
                workers.spawn_on(
                    worker,
                    accept::accept_loop(socket, parent.clone(), shutdown.clone(), tracker.clone()),
                );
            }
        }
        self.spawn_sweep(shutdown.clone());
        Ok(())
    }

    /// Forgets per-address entries that have nothing open and a full bucket.
    fn spawn_sweep(&self, stop: CancellationToken) {
        let all = self.all.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let now = std::time::Instant::now();
                        for ctx in &all {
                            ctx.admission.sweep(now);
                        }
                    }
                }
            }
        });
    }
}

/// The line that says a listener (or route) serves, and what.
fn log_listening(ctx: &Context) {
    let tls = ctx.tls.load();
    let leaf = tls.certs[0].leaf();
    info!(
        listener = %ctx.config.name,
        address = %ctx.config.listen,
        server_names = ?ctx.config.route.as_ref().map(|r| &r.server_names),
        backend = %ctx.backend.backend,
        certificate = %leaf.subject,
        not_after = %leaf.not_after_rfc3339(),
        client_auth = %ctx.config.tls.client_auth.mode,
        "listening"
    );
}
