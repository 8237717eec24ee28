//! The running gateway: start-up, signals and graceful shutdown.
//!
//! Start-up loads everything a listener needs before binding anything, so a
//! bad certificate fails the start with exit code 2 and nothing half-open.
//! Then it binds every listener and the admin endpoint, and only when all
//! are bound and serving a certificate does `/readyz` turn ready.
//!
//! SIGTERM or SIGINT stops accepting at once, marks the process not ready,
//! and lets live connections finish for up to `shutdown.drain_timeout`;
//! whatever is still open then is closed, and the process exits 0. A second
//! signal during the drain ends it at once. SIGHUP reloads certificates
//! (see `reload`).

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{self, AdminState, Health};
use crate::backend::Backend;
use crate::config::ValidConfig;
use crate::limits::{PerIp, PerIpLimits};
use crate::listener::{self, ListenerShared};
use crate::metrics::Metrics;
use crate::reload::{self, ReloadState, Trigger};
use crate::systemd;
use crate::tls::certs::CertError;
use crate::tls::{self, ListenerTls, Resumption};
use crate::workers::Workers;

/// Why the gateway stopped with an error: something at run time failed,
/// such as binding a port (exit code 1).
#[derive(Debug)]
pub struct RunError(pub String);

/// A listener's TLS state, built and checked, before anything is bound.
pub struct Prepared {
    /// The TLS state of each listener, in configuration order.
    pub tls: Vec<ListenerTls>,
    /// Each listener's resumption keys.
    pub resumption: Vec<Resumption>,
}

/// Loads every certificate and key of every listener. Reports all
/// problems, not just the first.
pub fn prepare(config: &ValidConfig) -> Result<Prepared, Vec<CertError>> {
    let now = SystemTime::now();
    let mut errors = Vec::new();
    let mut states = Vec::new();
    let mut resumptions = Vec::new();
    for (l, policy) in config.listeners() {
        let built = tls::files::Sources::read(l).and_then(|sources| {
            let (resumption, _) = Resumption::for_state(&sources, None)?;
            let state = tls::build_from(l, policy, &sources, Some(&resumption), now)?;
            Ok((state, resumption))
        });
        match built {
            Ok((state, resumption)) => {
                states.push(state);
                resumptions.push(resumption);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Prepared {
            tls: states,
            resumption: resumptions,
        })
    } else {
        Err(errors)
    }
}

/// Every listening socket, bound before the runtime starts (and before a
/// switch to an unprivileged user).
pub struct Bound {
    /// By listener name (routes share their parent's sockets): one socket
    /// per connection worker (see [`listener::bind_group`]).
    listeners: std::collections::HashMap<String, Vec<std::net::TcpListener>>,
    /// The admin endpoint's socket.
    admin: Option<std::net::TcpListener>,
}

/// Binds every listener (one socket per connection worker, `workers` of
/// them) and the admin endpoint; fails on the first port that cannot be
/// bound, naming it.
pub fn bind_all(config: &ValidConfig, workers: usize) -> Result<Bound, RunError> {
    let mut listeners = std::collections::HashMap::new();
    for (l, _) in config.listeners().filter(|(l, _)| l.route.is_none()) {
        let group = listener::bind_group(l.listen, l.backlog, l.timeouts.tcp_keepalive.0, workers)
            .map_err(|e| {
                RunError(format!(
                    "listener {:?}: cannot listen on {}: {e}{}",
                    l.name,
                    l.listen,
                    bind_hint(&e)
                ))
            })?;
        listeners.insert(l.name.clone(), group);
    }
    let admin = match &config.config.admin {
        Some(a) => Some(listener::bind(a.listen, 128).map_err(|e| {
            RunError(format!(
                "admin: cannot listen on {}: {e}{}",
                a.listen,
                bind_hint(&e)
            ))
        })?),
        None => None,
    };
    Ok(Bound { listeners, admin })
}

/// How moat confined itself before the runtime started.
#[derive(Debug, Clone, Copy)]
pub struct Confinement {
    /// The Landlock sandbox's outcome.
    pub landlock: crate::sandbox::Outcome,
}

/// Runs the gateway until a shutdown signal and the drain are over.
pub async fn run(
    config: ValidConfig,
    prepared: Prepared,
    mut sockets: Bound,
    confinement: Confinement,
    workers: Arc<Workers>,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let shutdown = CancellationToken::new();
    let admin_shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    // Routes first (they come after their listener in the expanded
    // configuration), so that each listener is built with its routes.
    let entries: Vec<_> = config
        .listeners()
        .zip(prepared.tls)
        .zip(prepared.resumption)
        .map(|(((l, policy), state), resumption)| (l, policy, state, resumption))
        .collect();
    let mut routes: std::collections::HashMap<String, Vec<Arc<ListenerShared>>> =
        Default::default();
    let mut parents = Vec::new();
    for (l, policy, state, resumption) in entries {
        let reload_state = ReloadState::new(l, &state, resumption, &metrics);
        let shared = ListenerShared {
            config: l.clone(),
            tls: ArcSwap::from_pointee(state),
            backend: Backend::parse(&l.backend),
            slots: Arc::new(Semaphore::new(l.max_connections)),
            metrics: metrics.listener(
                &l.name,
                listener::HANDSHAKE_FAILURE_REASONS,
                listener::REJECT_REASONS,
            ),
            policy: policy.clone(),
            reload: std::sync::Mutex::new(reload_state),
            routes: Vec::new(),
            per_ip: Arc::new(PerIp::new(PerIpLimits {
                connections: l.limits.per_ip_connections,
                rate: l.limits.per_ip_rate,
            })),
            handshakes: Arc::new(Semaphore::new(l.limits.max_handshakes)),
            backend_failures: Default::default(),
            health: health.clone(),
        };
        match &l.route {
            Some(of) => routes
                .entry(of.parent.clone())
                .or_default()
                .push(Arc::new(shared)),
            None => parents.push(shared),
        }
    }
    let mut bound = Vec::new();
    let mut shareds = Vec::new();
    for mut parent in parents {
        parent.routes = routes.remove(&parent.config.name).unwrap_or_default();
        let l = &parent.config;
        let group = sockets
            .listeners
            .remove(&l.name)
            .filter(|group| group.len() == workers.len())
            .ok_or_else(|| {
                RunError(format!(
                    "listener {:?}: no socket was bound for each worker",
                    l.name
                ))
            })?;
        let parent = Arc::new(parent);
        shareds.push(parent.clone());
        shareds.extend(parent.routes.iter().cloned());
        bound.push((group, parent));
    }
    let admin_socket = match sockets.admin.take() {
        Some(s) => Some(
            tokio::net::TcpListener::from_std(s).map_err(|e| RunError(format!("admin: {e}")))?,
        ),
        None => None,
    };
    metrics.set_landlock_enforced(confinement.landlock.enforced());

    for (group, shared) in bound {
        for l in std::iter::once(&shared).chain(shared.routes.iter()) {
            let tls = l.tls.load();
            let leaf = tls.certs[0].leaf();
            info!(
                listener = %l.config.name,
                address = %l.config.listen,
                server_names = ?l.config.route.as_ref().map(|r| &r.server_names),
                backend = %l.backend,
                certificate = %leaf.subject,
                not_after = %leaf.not_after_rfc3339(),
                client_auth = %l.config.tls.client_auth.mode,
                "listening"
            );
        }
        for (worker, socket) in group.into_iter().enumerate() {
            workers.spawn_on(
                worker,
                listener::accept_loop(socket, shared.clone(), shutdown.clone(), tracker.clone()),
            );
        }
    }
    // Forget per-address entries that have nothing open and a full bucket.
    let sweep: Vec<Arc<PerIp>> = shareds.iter().map(|l| l.per_ip.clone()).collect();
    let sweep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = sweep_stop.cancelled() => break,
                _ = tick.tick() => {
                    let now = std::time::Instant::now();
                    for t in &sweep {
                        t.sweep(now);
                    }
                }
            }
        }
    });
    let reloader = reload::start(
        shareds.clone(),
        metrics.clone(),
        &config.config.reload,
        admin_shutdown.clone(),
    );
    if let Some(socket) = admin_socket {
        let state = Arc::new(AdminState {
            health: health.clone(),
            metrics: metrics.clone(),
            listeners: shareds.clone(),
            reloader: reloader.clone(),
        });
        // The admin endpoint outlives the listeners, so that /readyz reports
        // the drain and /metrics stays scrapeable until the end.
        tokio::spawn(admin::serve(socket, state, admin_shutdown.clone()));
    }
    // Handlers before "ready": a supervisor may send SIGHUP or SIGTERM the
    // moment it hears READY=1, and the default action would kill moat.
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => return Err(RunError("cannot install signal handlers".into())),
    };
    health.set_ready(true);
    metrics.set_ready(true);
    info!(workers = workers.len(), "ready");
    systemd::ready(&format!("serving {} listener(s)", shareds.len()));

    loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "shutting down"); break; }
            _ = int.recv() => { info!(signal = "SIGINT", "shutting down"); break; }
            _ = hup.recv() => {
                let reloader = reloader.clone();
                let listeners = shareds.len();
                tokio::spawn(async move {
                    systemd::reloading();
                    let outcomes = reloader.reload(Trigger::Signal).await;
                    let status = if reload::all_ok(&outcomes) {
                        format!("serving {listeners} listener(s)")
                    } else {
                        format!("serving {listeners} listener(s); the last reload failed, see the log")
                    };
                    systemd::ready(&status);
                });
            }
        }
    }

    // Drain.
    systemd::stopping("draining connections");
    health.set_ready(false);
    metrics.set_ready(false);
    shutdown.cancel();
    info!("stopped accepting connections");
    tracker.close();
    let open = tracker.len();
    let deadline = config.config.shutdown.drain_timeout.0;
    if open > 0 {
        info!(
            connections = open,
            deadline = %humantime::format_duration(deadline),
            "draining live connections"
        );
    }
    tokio::select! {
        _ = tracker.wait() => info!("all connections finished"),
        _ = tokio::time::sleep(deadline) => warn!(
            connections = tracker.len(),
            "drain deadline reached; closing the remaining connections"
        ),
        _ = term.recv() => warn!(connections = tracker.len(), "second signal; closing the remaining connections now"),
        _ = int.recv() => warn!(connections = tracker.len(), "second signal; closing the remaining connections now"),
    }
    admin_shutdown.cancel();
    info!("stopped");
    Ok(())
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "\n  hint: another process uses this port (find it with `ss -ltnp`), or another listener in this file does"
        }
        std::io::ErrorKind::PermissionDenied => {
            "\n  hint: ports below 1024 need root or CAP_NET_BIND_SERVICE"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "\n  hint: this machine has no such address; use 0.0.0.0 or one of its own addresses"
        }
        _ => "",
    }
}
