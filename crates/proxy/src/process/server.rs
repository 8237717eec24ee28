//! The running gateway: serving, signals and graceful shutdown.
//!
//! Everything a listener needs was loaded and every socket bound before
//! this runs (`cli::run`). Here the listeners start accepting, then the
//! control plane (reloads, stapling, ACME renewals, the admin endpoint) starts, and only
//! then does `/readyz` turn ready.
//!
//! SIGTERM or SIGINT stops accepting at once, marks the process not ready,
//! and lets live connections finish for up to `shutdown.drain_timeout`;
//! whatever is still open then is closed, and the process exits 0. A second
//! signal during the drain ends it at once. SIGHUP reloads certificates
//! (see `control::reload`).

use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::sandbox::Landlock;
use super::systemd;
use crate::config::ValidConfig;
use crate::control::access::Access;
use crate::control::acme::Acme;
use crate::control::admin::{self, AdminState};
use crate::control::health::Health;
use crate::control::reload::{self, ReloadHandle, ReloadTarget, Trigger};
use crate::control::token::AdminToken;
use crate::listen::socket::{BindError, Bound};
use crate::listen::workers::Workers;
use crate::listen::Listeners;
use crate::metrics::Metrics;
use crate::tls::Prepared;

/// Why the gateway stopped with an error: something at run time failed,
/// such as binding a port (exit code 1).
#[derive(Debug)]
pub struct RunError(pub String);

impl From<BindError> for RunError {
    fn from(e: BindError) -> Self {
        Self(e.0)
    }
}

/// The admin endpoint's credentials, loaded before anything is bound.
pub struct AdminSecurity {
    /// From `admin.token_file`.
    pub token: Option<AdminToken>,
    /// From `admin.tls`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The signals moat answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Self, RunError> {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Ok(Self { term, int, hup }),
            _ => Err(RunError("cannot install signal handlers".into())),
        }
    }
}

/// Runs the gateway until a shutdown signal and the drain are over.
pub async fn serve(
    config: ValidConfig,
    prepared: Prepared,
    admin_security: AdminSecurity,
    mut sockets: Bound,
    (landlock, workers): (Landlock, Arc<Workers>),
    acme: Option<Acme>,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let admin_shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let challenges = acme.as_ref().map(Acme::challenges).unwrap_or_default();
    let listeners = Listeners::build(&config, prepared.tls, &metrics, &challenges);
    let health = Arc::new(Health::new(listeners.all.clone()));
    let admin_socket = match sockets.admin.take() {
        Some(s) => Some(
            tokio::net::TcpListener::from_std(s).map_err(|e| RunError(format!("admin: {e}")))?,
        ),
        None => None,
    };
    metrics.set_landlock_enforced(landlock.enforced());
    listeners.start(
        std::mem::take(&mut sockets.listeners),
        &workers,
        &shutdown,
        &tracker,
    )?;

    // `all` holds each listener then its routes: the order of the expanded
    // configuration, and of `prepared`.
    let targets: Vec<Arc<ReloadTarget>> = listeners
        .all
        .load()
        .iter()
        .zip(config.listeners().zip(prepared.resumption))
        .map(|(ctx, ((l, _), resumption))| {
            debug_assert_eq!(ctx.name, l.name);
            Arc::new(ReloadTarget::new(ctx.clone(), resumption, &metrics))
        })
        .collect();
    let source = reload::ConfigSource::new(config.clone(), &metrics);
    let reloader = reload::start(
        targets,
        listeners.all.clone(),
        source,
        &config.config.reload,
        admin_shutdown.clone(),
    );
    // Renewals write files; the reloader above swaps them in.
    if let Some(acme) = acme {
        acme.start(&metrics, &admin_shutdown);
    }
    if let (Some(socket), Some(admin)) = (admin_socket, &config.config.admin) {
        let state = Arc::new(AdminState {
            health: health.clone(),
            metrics: metrics.clone(),
            listeners: listeners.all.clone(),
            reloader: reloader.clone(),
            sessions: listeners.sessions.clone(),
            access: Access::new(admin, admin_security.token),
            tls: admin_security.tls,
        });
        // The admin endpoint outlives the listeners, so that /readyz reports
        // the drain and /metrics stays scrapeable until the end.
        tokio::spawn(admin::serve(socket, state, admin_shutdown.clone()));
    }
    // Handlers before "ready": a supervisor may send SIGHUP or SIGTERM the
    // moment it hears READY=1, and the default action would kill moat.
    let mut signals = Signals::install()?;
    health.set_ready(true);
    metrics.set_ready(true);
    info!(workers = workers.len(), "ready");
    let count = listeners.all.load().len();
    systemd::ready(&format!("serving {count} listener(s)"));

    until_stopped(&mut signals, &reloader, count).await;
    drain(
        &config,
        &mut signals,
        &health,
        &metrics,
        &shutdown,
        &tracker,
    )
    .await;
    admin_shutdown.cancel();
    info!("stopped");
    Ok(())
}

/// Answers SIGHUP with a reload until SIGTERM or SIGINT.
async fn until_stopped(signals: &mut Signals, reloader: &ReloadHandle, listeners: usize) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => { info!(signal = "SIGTERM", "shutting down"); break; }
            _ = signals.int.recv() => { info!(signal = "SIGINT", "shutting down"); break; }
            _ = signals.hup.recv() => {
                let reloader = reloader.clone();
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
}

/// Stops accepting, reports not ready, and waits for live connections to
/// finish until the drain deadline or a second signal.
async fn drain(
    config: &ValidConfig,
    signals: &mut Signals,
    health: &Health,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
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
        _ = signals.term.recv() => warn!(connections = tracker.len(), "second signal; closing the remaining connections now"),
        _ = signals.int.recv() => warn!(connections = tracker.len(), "second signal; closing the remaining connections now"),
    }
}
