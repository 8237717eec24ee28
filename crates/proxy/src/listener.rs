//! A TLS listener: the accept loop and the life of one connection.
//!
//! Each accepted connection goes through the same stages, in order, and
//! each stage hands the next only what it needs:
//!
//! 1. admission: the `max_connections` cap, checked before any work;
//! 2. the TLS handshake, bounded by the handshake timeout, against the
//!    listener's current TLS state (loaded once, wait-free);
//! 3. the verified peer identity, logged once;
//! 4. the backend connection, bounded by the connect timeout;
//! 5. the relay, until both sides are done.
//!
//! Failures at any stage close only that connection, with a log line and a
//! metric. The accept loop backs off instead of spinning when the process
//! runs out of file descriptors.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use crate::backend::Backend;
use crate::config::ListenerConfig;
use crate::metrics::ListenerMetrics;
use crate::relay::relay;
use crate::reload::ReloadState;
use crate::tls::client_auth::PeerIdentity;
use crate::tls::policy::suite_name;
use crate::tls::policy::TlsPolicy;
use crate::tls::ListenerTls;

/// How long a failing backend connection waits for the TLS close_notify to
/// reach the client.
const CLOSE_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Connection ids for correlating log lines.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Everything a listener's connections share.
pub struct ListenerShared {
    /// The listener's settings.
    pub config: ListenerConfig,
    /// The current TLS state; a reload swaps it.
    pub tls: ArcSwap<ListenerTls>,
    /// Where to relay to.
    pub backend: Backend,
    /// Admission control.
    pub slots: Arc<Semaphore>,
    /// Metric handles.
    pub metrics: ListenerMetrics,
    /// The TLS policy (fixed for the life of the process).
    pub policy: TlsPolicy,
    /// Reload bookkeeping (resumption keys, last failure, metric series).
    pub reload: std::sync::Mutex<ReloadState>,
}

/// Binds a listening socket with the configured backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections until `shutdown` fires, spawning one task per
/// connection on `tracker`.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let permit = match shared.slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        shared.metrics.rejected("max_connections");
                        if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            warn!(
                                listener = %shared.config.name,
                                max_connections = shared.config.max_connections,
                                "connection limit reached; refusing new connections (this warning repeats at most every 10 s)"
                            );
                            last_full_warning = Some(Instant::now());
                        }
                        drop(stream);
                        continue;
                    }
                };
                let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!("conn", listener = %shared.config.name, id, %peer);
                tracker.spawn(handle(stream, peer, shared.clone(), permit).instrument(span));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                error!(
                    listener = %shared.config.name,
                    error = %e,
                    retry_in = ?backoff,
                    "cannot accept connections: out of file descriptors or memory; raise `ulimit -n` (LimitNOFILE) or lower max_connections"
                );
                shared.metrics.rejected("resource_exhaustion");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => debug!(listener = %shared.config.name, error = %e, "accept failed"),
        }
    }
    info!(listener = %shared.config.name, "stopped accepting connections");
}

/// Keeps `moat_connections_active` right whichever way a connection ends.
struct ActiveGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn handle(
    stream: TcpStream,
    _peer: SocketAddr,
    shared: Arc<ListenerShared>,
    _permit: OwnedSemaphorePermit,
) {
    let m = &shared.metrics;
    m.accepted.inc();
    m.active.inc();
    let _active = ActiveGuard(m.active.clone());
    let _ = stream.set_nodelay(true);

    let started = Instant::now();
    let tls_state = shared.tls.load();
    let acceptor = TlsAcceptor::from(tls_state.server_config.clone());
    drop(tls_state);
    let handshake =
        tokio::time::timeout(shared.config.timeouts.handshake.0, acceptor.accept(stream)).await;
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = handshake_failure_reason(&e);
            m.handshake_failed(reason);
            info!(reason, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            m.handshake_failed("timeout");
            info!(
                timeout = ?shared.config.timeouts.handshake.0,
                "TLS handshake timed out"
            );
            return;
        }
    };
    m.handshake_ok.inc();
    m.handshake_duration
        .observe(started.elapsed().as_secs_f64());

    let (_, conn) = tls.get_ref();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    if resumed {
        m.resumed.inc();
    }
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    let suite = conn
        .negotiated_cipher_suite()
        .map(suite_name)
        .unwrap_or("unknown");
    let group = conn
        .negotiated_key_exchange_group()
        .and_then(|g| g.name().as_str())
        .unwrap_or("none");
    let sni = conn.server_name().unwrap_or("").to_string();
    let identity = conn.peer_certificates().and_then(PeerIdentity::from_chain);
    match &identity {
        Some(id) => info!(
            tls.version = version,
            tls.cipher = suite,
            tls.group = group,
            tls.sni = %sni,
            tls.resumed = resumed,
            client.subject = %id.subject,
            client.sha256 = %id.sha256,
            "client authenticated"
        ),
        None => info!(
            tls.version = version,
            tls.cipher = suite,
            tls.group = group,
            tls.sni = %sni,
            tls.resumed = resumed,
            "client connected"
        ),
    }

    let mut backend = match shared
        .backend
        .connect(shared.config.timeouts.connect.0)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            m.backend_failures.inc();
            warn!(backend = %shared.backend, error = %e, "cannot reach the backend broker; closing the client connection");
            let _ = tokio::time::timeout(
                CLOSE_NOTIFY_TIMEOUT,
                tokio::io::AsyncWriteExt::shutdown(&mut tls),
            )
            .await;
            return;
        }
    };

    let result = relay(
        &mut tls,
        &mut backend,
        m.to_backend.clone(),
        m.to_client.clone(),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(t) => info!(
            bytes_to_backend = t.to_backend,
            bytes_to_client = t.to_client,
            duration_s = secs,
            "connection closed"
        ),
        Err(e) => info!(error = %e, duration_s = secs, "connection ended with an error"),
    }
}

/// Every value `reason` can take on `moat_tls_handshakes_total`; the series
/// exist at zero from the start so that rate() and alerts see them.
pub const HANDSHAKE_FAILURE_REASONS: &[&str] = &[
    "timeout",
    "no_client_certificate",
    "bad_client_certificate",
    "client_alert",
    "no_shared_cipher",
    "no_shared_group",
    "no_shared_signature_scheme",
    "protocol_version",
    "incompatible_client",
    "not_tls",
    "protocol_error",
    "no_application_protocol",
    "other",
    "client_closed",
    "client_reset",
    "io_error",
];

/// Every value `reason` can take on `moat_connections_rejected_total`.
pub const REJECT_REASONS: &[&str] = &["max_connections", "resource_exhaustion"];

/// A short, bounded reason for a failed handshake, for the metric label.
pub fn handshake_failure_reason(e: &io::Error) -> &'static str {
    use rustls::{Error as E, PeerIncompatible as P};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(E::NoCertificatesPresented) => "no_client_certificate",
        Some(E::InvalidCertificate(_)) => "bad_client_certificate",
        Some(E::AlertReceived(_)) => "client_alert",
        Some(E::PeerIncompatible(p)) => match p {
            P::NoCipherSuitesInCommon => "no_shared_cipher",
            P::NoKxGroupsInCommon => "no_shared_group",
            P::NoSignatureSchemesInCommon => "no_shared_signature_scheme",
            // A hello without signature_algorithms comes from a client that
            // speaks only TLS 1.0 or 1.1.
            P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::Tls13RequiredForQuic
            | P::SupportedVersionsExtensionRequired
            | P::SignatureAlgorithmsExtensionRequired => "protocol_version",
            _ => "incompatible_client",
        },
        Some(E::InvalidMessage(_)) => "not_tls",
        Some(E::PeerMisbehaved(_)) => "protocol_error",
        Some(E::NoApplicationProtocol) => "no_application_protocol",
        Some(_) => "other",
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => "client_closed",
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "client_reset",
            _ => "io_error",
        },
    }
}
