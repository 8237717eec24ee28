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
use tracing::{info, warn};

use crate::config::ValidConfig;
use crate::conn::context::{Catalog, Context, Route};
use crate::conn::registry::Registry;
use crate::metrics::Metrics;
use crate::tls::acme_alpn::AlpnChallenges;
use crate::tls::ListenerTls;
use socket::BindError;
use workers::Workers;

/// The context of every listener, each with its routes.
pub struct Listeners {
    /// The listeners that own sockets, in configuration order.
    pub parents: Vec<Arc<Context>>,
    /// Every listener and route: each parent followed by its routes.
    pub all: Arc<Catalog>,
    /// The live sessions of all of them.
    pub sessions: Arc<Registry>,
}

impl Listeners {
    /// Builds every listener's context from its configuration and its TLS
    /// state (in configuration order), linking routes to their listener.
    /// `challenges` is the ACME manager's TLS-ALPN-01 table.
    pub fn build(
        config: &ValidConfig,
        tls: Vec<ListenerTls>,
        metrics: &Metrics,
        challenges: &Arc<AlpnChallenges>,
    ) -> Self {
        // Routes come after their listener in the expanded configuration:
        // build them first, so that each listener is built with its routes.
        let sessions = Arc::new(Registry::default());
        let mut routes: HashMap<&str, Vec<Route>> = HashMap::new();
        let mut parents = Vec::new();
        for ((l, policy), state) in config.listeners().zip(tls) {
            match &l.route {
                Some(of) => {
                    let ctx = Context::new(
                        l,
                        policy.clone(),
                        state,
                        metrics,
                        Vec::new(),
                        sessions.clone(),
                        challenges.clone(),
                    );
                    routes
                        .entry(of.parent.as_str())
                        .or_default()
                        .push(Route::of(Arc::new(ctx)));
                }
                None => parents.push((l, policy, state)),
            }
        }
        let parents: Vec<Arc<Context>> = parents
            .into_iter()
            .map(|(l, policy, state)| {
                let own = routes.remove(l.name.as_str()).unwrap_or_default();
                Arc::new(Context::new(
                    l,
                    policy.clone(),
                    state,
                    metrics,
                    own,
                    sessions.clone(),
                    challenges.clone(),
                ))
            })
            .collect();
        let all: Vec<Arc<Context>> = parents
            .iter()
            .flat_map(|p| {
                let routes: Vec<Arc<Context>> =
                    p.live.load().routes.iter().map(|r| r.ctx.clone()).collect();
                std::iter::once(p.clone()).chain(routes)
            })
            .collect();
        Self {
            parents,
            all: Arc::new(Catalog::from_pointee(all)),
            sessions,
        }
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
            let group = sockets
                .remove(&parent.name)
                .filter(|group| group.len() == workers.len())
                .ok_or_else(|| {
                    BindError(format!(
                        "listener {:?}: no socket was bound for each worker",
                        parent.name
                    ))
                })?;
            groups.push((parent, group));
        }
        for (parent, group) in groups {
            log_listening(parent);
            for route in &parent.live.load().routes {
                log_listening(&route.ctx);
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

    /// Forgets per-address entries that have nothing open and a full
    /// bucket, every 30 s; and once a second stops the sessions whose
    /// certificate expired or that reached their lifetime, forgets lapsed
    /// bans, and starts the revocation re-checks that are due.
    fn spawn_sweep(&self, stop: CancellationToken) {
        let all = self.all.clone();
        let sessions = self.sessions.clone();
        let stop_expiry = stop.clone();
        let all_rechecks = self.all.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut rechecks = crate::conn::revocation::Rechecks::default();
            loop {
                tokio::select! {
                    _ = stop_expiry.cancelled() => break,
                    _ = tick.tick() => {
                        let now = std::time::Instant::now();
                        sessions.expire(now);
                        sessions.bans.sweep(std::time::SystemTime::now());
                        rechecks.start_due(&all_rechecks.load(), now);
                    }
                }
            }
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let now = std::time::Instant::now();
                        for ctx in all.load().iter() {
                            ctx.admission.sweep(now);
                            ctx.live.load().limits.forget_idle();
                        }
                    }
                }
            }
        });
    }
}

/// The line that says a listener (or route) serves, and what.
pub fn log_listening(ctx: &Context) {
    let live = ctx.live.load();
    let Some(leaf) = live.tls.certs.first().map(|c| c.leaf()) else {
        warn!(
            listener = %ctx.name,
            address = %live.config.listen,
            "listening, but serving no certificate yet: every certificate is an ACME entry not obtained yet; handshakes fail and /readyz says not ready until it arrives"
        );
        return;
    };
    info!(
        listener = %ctx.name,
        address = %live.config.listen,
        server_names = ?live.config.route.as_ref().map(|r| &r.server_names),
        backend = %live.backend.backend,
        certificate = %leaf.subject,
        not_after = %leaf.not_after_rfc3339(),
        client_auth = %live.config.tls.client_auth.mode,
        "listening"
    );
}
