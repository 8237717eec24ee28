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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use crate::admin::Health;
use crate::backend::Backend;
use crate::config::ListenerConfig;
use crate::config::MqttConfig;
use crate::limits::PerIp;
use crate::metrics::ListenerMetrics;
use crate::mqtt::relay::End as MqttEnd;
use crate::mqtt::ConnectDecision;
use crate::proxy_protocol;
use crate::relay::{idle_timeout, relay};
use crate::reload::ReloadState;
use crate::tls::allow::DeviceFacts;
use crate::tls::certs::name_matches;
use crate::tls::client_auth::{denial_reason, PeerIdentity};
use crate::tls::policy::TlsPolicy;
use crate::tls::policy::{openssl_suite_name, suite_name};
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
    /// The routes this listener hands connections to by SNI.
    pub routes: Vec<Arc<ListenerShared>>,
    /// Per-source-address limits.
    pub per_ip: Arc<PerIp>,
    /// Handshakes in progress.
    pub handshakes: Arc<Semaphore>,
    /// Backend failures in a row, for readiness.
    pub backend_failures: std::sync::atomic::AtomicU32,
    /// Readiness, which a listener whose backend is down turns off.
    pub health: Arc<Health>,
}

impl ListenerShared {
    /// Counts a backend connection attempt's result for readiness.
    fn backend_result(&self, ok: bool) {
        let threshold = self.config.unready_after_backend_failures;
        if threshold == 0 {
            return;
        }
        if ok {
            if self.backend_failures.swap(0, Ordering::SeqCst) >= threshold {
                self.health.backend_down(false);
                info!(listener = %self.config.name, "backend reachable again; ready");
            }
        } else {
            let n = self.backend_failures.fetch_add(1, Ordering::SeqCst) + 1;
            if n == threshold {
                self.health.backend_down(true);
                warn!(listener = %self.config.name, failures = n, "backend unreachable; reporting not ready");
            }
        }
    }
}

/// Binds a listening socket with the configured backlog. It is a std
/// socket (non-blocking) so that binding can happen before the runtime
/// starts, while the process is still one thread and may still be root.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    Ok(bind_group(addr, backlog, Duration::ZERO, 1)?.remove(0))
}

/// Binds `n` listening sockets to one address, one per connection worker,
/// with `SO_REUSEPORT`: the kernel spreads new connections over them, and
/// each worker accepts its own (as nginx's `reuseport`). The first socket
/// binds before it allows sharing, so a port that anything else holds is
/// refused as usual (`AddrInUse`), even another moat's. Port 0 binds the
/// rest to the port the first one got.
///
/// `TCP_NODELAY` and the keep-alive probes (after `tcp_keepalive` of
/// silence; zero leaves them off) are set on the listening sockets, and
/// Linux copies them to every connection they accept: five `setsockopt`
/// calls per connection fewer (docs/benchmarks.md, "What moved the
/// numbers"). `accepted_sockets_inherit_nodelay_and_keepalive` checks that
/// the kernel does.
pub fn bind_group(
    addr: SocketAddr,
    backlog: u32,
    tcp_keepalive: Duration,
    n: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let open = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !tcp_keepalive.is_zero() {
            socket.set_tcp_keepalive(&keepalive(tcp_keepalive))?;
        }
        Ok(socket)
    };
    let first = open()?;
    first.bind(&addr.into())?;
    let mut sockets = vec![first];
    if n > 1 {
        sockets[0].set_reuse_port(true)?;
        let bound = sockets[0].local_addr()?;
        for _ in 1..n {
            let socket = open()?;
            socket.set_reuse_port(true)?;
            socket.bind(&bound)?;
            sockets.push(socket);
        }
    }
    sockets
        .into_iter()
        .map(|s| {
            s.listen(backlog)?;
            Ok(s.into())
        })
        .collect()
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections until `shutdown` fires, each on this worker's
/// runtime, tracked by `tracker`. Runs on a connection worker, with that
/// worker's socket of the listener's group (see [`bind_group`]).
pub async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<ListenerShared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(listener = %shared.config.name, error = %e, "cannot start accepting connections on this worker");
            return;
        }
    };
    // A socket bound to one address accepts only on it: the kernel is
    // asked for a connection's local address only behind a wildcard bind.
    let local = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
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
                let ip_slot = match shared.per_ip.admit(peer.ip(), Instant::now()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        shared.metrics.rejected(refusal.reason());
                        debug!(listener = %shared.config.name, %peer, reason = refusal.reason(), "connection refused by a per-address limit");
                        drop(stream);
                        continue;
                    }
                };
                let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!("conn", listener = %shared.config.name, id, %peer);
                let addrs = (peer, local);
                let connection = handle(stream, addrs, shared.clone(), (permit, ip_slot));
                tracker.spawn(connection.instrument(span));
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
    debug!(listener = %shared.config.name, "stopped accepting connections on this worker");
}

/// Keeps `moat_connections_active` right whichever way a connection ends.
struct ActiveGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection's session, after its handshake: owned, boxed, and sized
/// for what it needs (see [`handle`]).
type Session = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One connection, start to end.
///
/// Each phase runs in its own heap allocation. A task's future is as large
/// as its largest state, so with the handshake and the session inline every
/// connection would pay for the largest of them (a ClientHello buffer, the
/// CONNECT read, the relay) for its whole life, and values moved from one
/// phase to the next would be counted twice. Here the handshake's
/// allocation goes back when it ends, and an idle connection keeps only its
/// session (measured in docs/benchmarks.md, idle memory).
///
/// `addrs` are the client's address and, when the listening socket knows
/// it, the local one.
async fn handle(
    stream: TcpStream,
    addrs: (SocketAddr, Option<SocketAddr>),
    parent: Arc<ListenerShared>,
    _admission: (OwnedSemaphorePermit, crate::limits::IpSlot),
) {
    let pm = &parent.metrics;
    pm.accepted.inc();
    pm.active.inc();
    let _active = ActiveGuard(pm.active.clone());
    let session = Box::pin(establish(stream, addrs, &parent)).await;
    if let Some(session) = session {
        session.await;
    }
}

/// The handshake and its checks; the session to run next, or `None` when
/// the connection is already over.
async fn establish(
    stream: TcpStream,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    parent: &Arc<ListenerShared>,
) -> Option<Session> {
    let pm = &parent.metrics;
    let local = local.unwrap_or_else(|| stream.local_addr().unwrap_or(parent.config.listen));
    let Ok(handshake_slot) = parent.handshakes.clone().try_acquire_owned() else {
        pm.rejected("handshake_limit");
        debug!("too many handshakes in progress; connection closed");
        return None;
    };

    let started = Instant::now();
    let timeout = parent.config.timeouts.handshake.0;
    let (mut tls, sni, shared, state) =
        match tokio::time::timeout(timeout, handshake(stream, parent)).await {
            Ok(Ok(done)) => done,
            Ok(Err((e, shared))) => {
                let m = &shared.metrics;
                let reason = handshake_failure_reason(&e);
                m.handshake_failed(reason);
                if let Some(te) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    if is_client_cert_error(te) {
                        m.client_auth_denied(denial_reason(te));
                    }
                }
                info!(reason, error = %e, route = %shared.config.name, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                pm.handshake_failed("timeout");
                info!(timeout = ?timeout, "TLS handshake timed out");
                return None;
            }
        };
    drop(handshake_slot);
    let m = &shared.metrics;

    let details = ConnDetails::of(tls.connection(), sni);
    if details.resumed {
        // rustls does not re-verify the client certificate a resumed
        // session carries; the CRLs or CA bundle may have changed since.
        if let Err(e) = recheck_resumed(tls.connection(), &state) {
            m.handshake_failed("bad_client_certificate");
            m.client_auth_denied(denial_reason(&e));
            info!(error = %e, "resumed session refused: its client certificate no longer passes");
            let _ = tokio::time::timeout(
                CLOSE_NOTIFY_TIMEOUT,
                tokio::io::AsyncWriteExt::shutdown(&mut tls),
            )
            .await;
            return None;
        }
        m.resumed.inc();
    }
    m.handshake_ok.inc();
    m.handshake_duration
        .observe(started.elapsed().as_secs_f64());
    details.log();

    let mqtt_aware = shared.config.mqtt.is_some();
    // Boxed: an async fn keeps its arguments for its whole life, beside the
    // locals they are moved into, so a TLS stream passed by value would be
    // held twice.
    let conn = Box::new(Established {
        tls,
        peer,
        local,
        shared,
        state,
        details,
        started,
    });
    Some(if mqtt_aware {
        Box::pin(mqtt_session(conn))
    } else {
        Box::pin(opaque_session(conn))
    })
}

/// What a session owns once the handshake is done.
struct Established {
    tls: Tls,
    peer: SocketAddr,
    local: SocketAddr,
    /// The listener (or route) that owns the connection.
    shared: Arc<ListenerShared>,
    /// The TLS state the handshake used.
    state: Arc<ListenerTls>,
    details: ConnDetails,
    started: Instant,
}

/// An opaque connection: the backend, then bytes both ways until either
/// side closes or the idle timeout. The steps before the relay are boxed,
/// so that their state does not stay in this future for the connection's
/// life (see [`handle`]); the same goes for [`mqtt_session`].
async fn opaque_session(conn: Box<Established>) {
    let Established {
        mut tls,
        peer,
        local,
        shared,
        state,
        details,
        started,
    } = *conn;
    let (shared, state, details) = (&*shared, &*state, &details);
    let m = &shared.metrics;
    let Some(mut backend) = Box::pin(connect_backend(
        shared, &mut tls, peer, local, state, details,
    ))
    .await
    else {
        return;
    };
    let pump = relay(
        &mut tls,
        &mut backend,
        m.to_backend.clone(),
        m.to_client.clone(),
    );
    let idle = shared.config.timeouts.idle.0;
    let result = if idle.is_zero() {
        pump.await
    } else {
        idle_timeout(pump, idle).await
    };
    let secs = started.elapsed().as_secs_f64();
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        m.idle_timeouts.inc();
    }
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

type Tls = crate::tls::stream::TlsStream;

/// Connects to the backend and sends the PROXY header. On failure the
/// client gets a close_notify (opaque listeners) and `None` comes back.
async fn connect_backend(
    shared: &ListenerShared,
    tls: &mut Tls,
    peer: SocketAddr,
    local: SocketAddr,
    state: &ListenerTls,
    details: &ConnDetails,
) -> Option<TcpStream> {
    let m = &shared.metrics;
    let mut backend = match shared
        .backend
        .connect(shared.config.timeouts.connect.0)
        .await
    {
        Ok(b) => {
            shared.backend_result(true);
            b
        }
        Err(e) => {
            m.backend_failures.inc();
            shared.backend_result(false);
            warn!(backend = %shared.backend, error = %e, "cannot reach the backend broker; closing the client connection");
            if shared.config.mqtt.is_none() {
                let _ = tokio::time::timeout(
                    CLOSE_NOTIFY_TIMEOUT,
                    tokio::io::AsyncWriteExt::shutdown(tls),
                )
                .await;
            }
            return None;
        }
    };
    let mode = shared.config.backend_proxy_protocol;
    if let Some(header) = proxy_protocol::encode(mode, peer, local, &details.proxy_details(state)) {
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut backend, &header).await {
            m.backend_failures.inc();
            warn!(error = %e, "cannot send the PROXY header to the backend");
            return None;
        }
    }
    Some(backend)
}

/// Writes `bytes` to the client, then closes the TLS session.
async fn reply_and_close(tls: &mut Tls, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, async {
        if !bytes.is_empty() {
            tls.write_all(bytes).await?;
        }
        tls.shutdown().await
    })
    .await;
}

/// Reads the first packet, which must be a CONNECT, within the MQTT
/// connect timeout. Returns the bytes read (CONNECT first) and its length.
async fn read_connect(tls: &mut Tls, mqtt: &MqttConfig) -> Result<(Vec<u8>, usize), &'static str> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + mqtt.connect_timeout.0;
    // Read straight into the heap buffer: a stack chunk held across the
    // await would become part of every connection's task, for its whole
    // life, MQTT-aware or not (the future's size is the largest of its
    // states). `connect_len` has already checked the length it announces
    // against max_packet_size, so the buffer stays bounded.
    let mut buf = Vec::new();
    loop {
        let want = match crate::mqtt::connect_len(&buf, mqtt.max_packet_size)? {
            Some(n) if buf.len() >= n => return Ok((buf, n)),
            Some(n) => n - buf.len(),
            None => 16,
        };
        buf.reserve(want.clamp(16, 4096));
        let read = tokio::time::timeout_at(deadline, tls.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err("connect_timeout"),
            Ok(Ok(0)) | Ok(Err(_)) => return Err("client_closed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// An MQTT-aware connection: CONNECT checked before the broker is even
/// connected, then every packet through the guard.
async fn mqtt_session(conn: Box<Established>) {
    let Established {
        mut tls,
        peer,
        local,
        shared,
        state,
        details,
        started,
    } = *conn;
    let (shared, state, details) = (&*shared, &*state, &details);
    // `establish` picks this session only for MQTT-aware listeners.
    let Some(mqtt) = shared.config.mqtt.as_ref() else {
        return;
    };
    let m = &shared.metrics;
    let (buf, len) = match Box::pin(read_connect(&mut tls, mqtt)).await {
        Ok(x) => x,
        Err(reason) => {
            m.mqtt_connect_rejected(reason);
            info!(reason, "MQTT connection refused before CONNECT");
            Box::pin(reply_and_close(&mut tls, &[])).await;
            return;
        }
    };
    let facts = tls
        .connection()
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| DeviceFacts::from_der(c));
    let identity = crate::mqtt::identity(facts.as_ref(), mqtt.identity);
    let decision =
        crate::mqtt::decide_connect(&buf[..len], mqtt, identity.as_deref(), m.mqtt.clone());
    let (forward, session, client_id, username, keep_alive) = match decision {
        ConnectDecision::Refuse { reply, reason } => {
            m.mqtt_connect_rejected(reason);
            info!(reason, "MQTT CONNECT refused");
            Box::pin(reply_and_close(&mut tls, &reply)).await;
            return;
        }
        ConnectDecision::Accept {
            forward,
            session,
            client_id,
            username,
            keep_alive,
        } => (forward, session, client_id, username, keep_alive),
    };
    let version = session.version();
    let Some(mut backend) = Box::pin(connect_backend(
        shared, &mut tls, peer, local, state, details,
    ))
    .await
    else {
        m.mqtt_connect_rejected("backend_unavailable");
        Box::pin(reply_and_close(
            &mut tls,
            &crate::mqtt::server_unavailable(version),
        ))
        .await;
        return;
    };
    if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut backend, &forward).await {
        m.backend_failures.inc();
        warn!(error = %e, "cannot send the CONNECT to the backend");
        Box::pin(reply_and_close(
            &mut tls,
            &crate::mqtt::server_unavailable(version),
        ))
        .await;
        return;
    }
    m.mqtt_connected(crate::mqtt::version_label(version));
    info!(
        mqtt.version = crate::mqtt::version_label(version),
        mqtt.client_id = %client_id,
        mqtt.username = username.as_deref().unwrap_or(""),
        "MQTT session started"
    );
    let pending = buf[len..].to_vec();
    drop(buf);
    let pump = crate::mqtt::relay::relay(
        &mut tls,
        &mut backend,
        *session,
        pending,
        m.to_backend.clone(),
        m.to_client.clone(),
    );
    // Like a broker: 1.5 times the client's keep-alive, else the listener's.
    let idle = match keep_alive {
        0 => shared.config.timeouts.idle.0,
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    let result = if idle.is_zero() {
        pump.await
    } else {
        idle_timeout(pump, idle).await
    };
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        m.idle_timeouts.inc();
    }
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(MqttEnd::Finished(t)) => info!(
            bytes_to_backend = t.to_backend,
            bytes_to_client = t.to_client,
            duration_s = secs,
            "connection closed"
        ),
        Ok(MqttEnd::Closed(reason, t)) => {
            m.mqtt_session_closed(reason);
            info!(
                reason,
                bytes_to_backend = t.to_backend,
                bytes_to_client = t.to_client,
                duration_s = secs,
                "MQTT session closed by moat"
            );
        }
        Err(e) => info!(error = %e, duration_s = secs, "connection ended with an error"),
    }
}

/// A finished handshake: the stream, the server name the client asked for,
/// the listener (or route) that owns the connection and the TLS state it
/// was handled with; or the error and the listener it happened on.
type HandshakeResult = Result<
    (Tls, Option<String>, Arc<ListenerShared>, Arc<ListenerTls>),
    (io::Error, Arc<ListenerShared>),
>;

/// Runs the TLS handshake. The ClientHello is read first. A listener with
/// routes picks the route by SNI (exact names before wildcards, the
/// listener itself when none matches), and finishes the handshake with that
/// route's TLS state. The suites the client offers pick the configuration
/// ([`ListenerTls::config_for`]). Returns the listener (or route) that owns
/// the connection and the state it was handled with, start to end.
async fn handshake(stream: TcpStream, parent: &Arc<ListenerShared>) -> HandshakeResult {
    let start = crate::tls::stream::accept(stream)
        .await
        .map_err(|e| (e, parent.clone()))?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let chosen = match sni.as_deref() {
        Some(name) if !parent.routes.is_empty() => {
            route_for(&parent.routes, name).unwrap_or_else(|| parent.clone())
        }
        _ => parent.clone(),
    };
    let state = chosen.tls.load_full();
    let config = state.config_for(hello.cipher_suites()).clone();
    match start.finish(config).await {
        Ok(tls) => Ok((tls, sni, chosen, state)),
        Err(e) => Err((e, chosen)),
    }
}

/// The route a server name selects: an exact name first, then a wildcard.
fn route_for(routes: &[Arc<ListenerShared>], name: &str) -> Option<Arc<ListenerShared>> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    fn names(r: &ListenerShared) -> &[String] {
        r.config.route.as_ref().map_or(&[], |o| &o.server_names)
    }
    routes
        .iter()
        .find(|r| names(r).iter().any(|n| !n.starts_with("*.") && *n == name))
        .or_else(|| {
            routes.iter().find(|r| {
                names(r)
                    .iter()
                    .any(|n| n.starts_with("*.") && name_matches(n, &name))
            })
        })
        .cloned()
}

/// Whether a handshake error is about the client's certificate.
fn is_client_cert_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)
    )
}

/// Verifies a resumed session's client certificate against the current
/// client-auth state, as a full handshake would.
fn recheck_resumed(conn: &rustls::CommonState, state: &ListenerTls) -> Result<(), rustls::Error> {
    let (Some(verifier), Some(chain)) = (&state.client_verifier, conn.peer_certificates()) else {
        return Ok(());
    };
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    use rustls::server::danger::ClientCertVerifier;
    verifier
        .verify_client_cert(
            end_entity,
            intermediates,
            rustls::pki_types::UnixTime::now(),
        )
        .map(|_| ())
}

/// What a finished handshake negotiated, and who the client is.
struct ConnDetails {
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::SupportedCipherSuite>,
    group: &'static str,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    resumed: bool,
    identity: Option<PeerIdentity>,
}

impl ConnDetails {
    fn of(conn: &rustls::CommonState, sni: Option<String>) -> Self {
        Self {
            version: conn.protocol_version(),
            suite: conn.negotiated_cipher_suite(),
            group: conn
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
                .unwrap_or("none"),
            sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            identity: conn.peer_certificates().and_then(PeerIdentity::from_chain),
        }
    }

    /// The one line per connection that says who connected and how.
    fn log(&self) {
        let version = self.version.and_then(|v| v.as_str()).unwrap_or("unknown");
        let suite = self.suite.map(suite_name).unwrap_or("unknown");
        let sni = self.sni.as_deref().unwrap_or("");
        match &self.identity {
            Some(id) => info!(
                tls.version = version,
                tls.cipher = suite,
                tls.group = self.group,
                tls.sni = %sni,
                tls.resumed = self.resumed,
                client.subject = %id.subject,
                client.cn = id.common_name.as_deref().unwrap_or(""),
                client.sha256 = %id.sha256,
                "client authenticated"
            ),
            None => info!(
                tls.version = version,
                tls.cipher = suite,
                tls.group = self.group,
                tls.sni = %sni,
                tls.resumed = self.resumed,
                "client connected"
            ),
        }
    }

    /// What the PROXY v2 header says about this connection.
    fn proxy_details(&self, state: &ListenerTls) -> proxy_protocol::TlsDetails {
        // The certificate served: the first one covering the SNI, else the
        // default. (rustls does not report which one it chose.)
        let served = self
            .sni
            .as_deref()
            .and_then(|n| state.certs.iter().find(|c| c.leaf().covers(n)))
            .or(state.certs.first());
        let (server_sig_alg, server_key_alg) = served
            .map(|c| proxy_protocol::haproxy_alg_names(c.leaf()))
            .unwrap_or_default();
        proxy_protocol::TlsDetails {
            version: self
                .version
                .map(proxy_protocol::openssl_version_name)
                .unwrap_or("unknown")
                .to_string(),
            cipher: self
                .suite
                .map(openssl_suite_name)
                .unwrap_or("unknown")
                .to_string(),
            sni: self.sni.clone(),
            alpn: self.alpn.clone(),
            client_cert: self
                .identity
                .as_ref()
                .map(|id| proxy_protocol::ClientCertDetails {
                    common_name: id.common_name.clone(),
                }),
            resumed: self.resumed,
            server_sig_alg,
            server_key_alg,
        }
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
pub const REJECT_REASONS: &[&str] = &[
    "max_connections",
    "resource_exhaustion",
    "handshake_limit",
    "per_ip_connections",
    "per_ip_rate",
];

/// Keep-alive probes after `idle` of silence, every 10 s, six of them: a
/// device that vanished without a FIN is dropped about a minute later.
fn keepalive(idle: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(10))
        .with_retries(6)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_keeps_others_off_it() {
        let group =
            bind_group("127.0.0.1:0".parse().expect("addr"), 128, Duration::ZERO, 3).expect("bind");
        assert_eq!(group.len(), 3);
        let port = group[0].local_addr().expect("addr").port();
        assert!(group
            .iter()
            .all(|s| s.local_addr().expect("addr").port() == port));
        // Another process (or another moat) cannot bind the port.
        let taken = bind(SocketAddr::from(([127, 0, 0, 1], port)), 128).expect_err("port taken");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        // The kernel spreads connections over the group's sockets.
        let clients: Vec<_> = (0..60)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let accepted: Vec<usize> = group
            .iter()
            .map(|s| std::iter::from_fn(|| s.accept().ok()).count())
            .collect();
        assert_eq!(accepted.iter().sum::<usize>(), clients.len());
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    /// Accepts one connection on `listener`, which is non-blocking.
    fn accept_one(listener: &std::net::TcpListener) -> std::net::TcpStream {
        for _ in 0..500 {
            if let Ok((s, _)) = listener.accept() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no connection arrived");
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_and_keepalive() {
        let idle = Duration::from_secs(45);
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 128, idle, 2).expect("bind");
        let addr = group[0].local_addr().expect("addr");
        let clients: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let mut checked = 0;
        for listener in &group {
            while let Ok((accepted, _)) = listener.accept() {
                let s = socket2::SockRef::from(&accepted);
                assert!(
                    s.tcp_nodelay().expect("nodelay"),
                    "TCP_NODELAY not inherited"
                );
                assert!(
                    s.keepalive().expect("keepalive"),
                    "SO_KEEPALIVE not inherited"
                );
                assert_eq!(s.tcp_keepalive_time().expect("idle"), idle);
                assert_eq!(
                    s.tcp_keepalive_interval().expect("interval"),
                    Duration::from_secs(10)
                );
                assert_eq!(s.tcp_keepalive_retries().expect("retries"), 6);
                checked += 1;
            }
        }
        assert_eq!(checked, clients.len());

        // Zero turns the probes off; TCP_NODELAY stays.
        let plain = bind("127.0.0.1:0".parse().expect("addr"), 128).expect("bind");
        let _client = std::net::TcpStream::connect(plain.local_addr().expect("addr"));
        let accepted = accept_one(&plain);
        let s = socket2::SockRef::from(&accepted);
        assert!(s.tcp_nodelay().expect("nodelay"));
        assert!(!s.keepalive().expect("keepalive"));
    }

    #[test]
    fn a_group_refuses_a_port_in_use() {
        let holder = bind("127.0.0.1:0".parse().expect("addr"), 128).expect("bind");
        let addr = holder.local_addr().expect("addr");
        let err = bind_group(addr, 128, Duration::ZERO, 2).expect_err("port taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
