//! The TLS handshake of one connection, and what it yields: a verified
//! peer, the listener (or SNI route) that owns the connection, and the TLS
//! state it was handled with.
//!
//! The ClientHello is read first. A listener with routes picks the route
//! by SNI (exact names before wildcards, the listener itself when none
//! matches) and finishes the handshake with that route's TLS state; the
//! suites the client offers pick the configuration
//! ([`ListenerTls::config_for`]). A resumed session's client certificate
//! is verified again against the current CA bundle, CRLs and allow-list,
//! since rustls does not. A hello with ALPN `acme-tls/1` is an ACME
//! TLS-ALPN-01 validation: answered from the process's challenge table
//! (`tls::acme_alpn`) and closed, before any route or client check.
//! Failures are classified into a bounded set of reasons for the metric
//! and logged once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{debug, info};

use super::backend::{BackendError, BalanceKey, Lease};
use super::context::{Context, Live};
use super::finish::close;
use super::identity::ConnDetails;
use super::reasons::{HandshakeFailure, RejectReason};
use super::registry::{NewSession, Registered};
use crate::tls::acme_alpn::{AlpnAnswer, NoChallenge};
use crate::tls::client_auth::DenialReason;
use crate::tls::stream::TlsStream;
use crate::tls::ListenerTls;
use crate::transport::ClientStream;

/// What a session owns once the handshake is done.
pub struct Established {
    /// The client's byte stream: TLS, or WebSocket frames over it.
    pub tls: ClientStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// The listener (or route) that owns the connection.
    pub ctx: Arc<Context>,
    /// The owning listener's settings, TLS state and backend as they were
    /// when the handshake started.
    pub live: Arc<Live>,
    /// What was negotiated, and who the client is.
    pub details: ConnDetails,
    /// When the connection was accepted.
    pub started: Instant,
    /// Its place among the live sessions, which can tell it to stop.
    pub registered: Registered,
}

impl Established {
    /// Connects to the owning listener's broker (the node of its cluster
    /// this connection's identity, `client_id` or address selects), with
    /// the PROXY header telling it about this connection when configured.
    /// The lease counts the connection on its node until dropped.
    pub async fn connect_backend(
        &self,
        client_id: Option<&str>,
    ) -> Result<(TcpStream, Lease), BackendError> {
        let details = || self.details.proxy_details(&self.live.tls);
        let identity = self.details.identity.as_ref();
        let key = BalanceKey {
            identity: identity.map(|i| i.common_name.as_deref().unwrap_or(&i.subject)),
            client_id,
            peer: self.peer,
        };
        self.live
            .backend
            .connect(&self.ctx.metrics, (self.peer, self.local), key, details)
            .await
    }
}

/// Runs the handshake of a connection accepted on `parent` and its checks.
/// `None` when the connection is already over (refused, failed, timed out:
/// logged and counted here).
///
/// `addrs` are the client's address, the local one when the listening
/// socket knows it, and the connection's id.
pub async fn establish(
    stream: TcpStream,
    (peer, local, id): (SocketAddr, Option<SocketAddr>, u64),
    parent: &Arc<Context>,
) -> Option<Box<Established>> {
    let pm = &parent.metrics;
    let parent_live = parent.live.load_full();
    let local = local.unwrap_or_else(|| stream.local_addr().unwrap_or(parent_live.config.listen));
    let Ok(handshake_slot) = parent.admission.handshake() else {
        pm.rejected.inc(RejectReason::HandshakeLimit);
        debug!("too many handshakes in progress; connection closed");
        return None;
    };

    let started = Instant::now();
    let timeout = parent_live.config.timeouts.handshake.0;
    let (mut tls, sni, ctx, live) =
        match tokio::time::timeout(timeout, handshake(stream, parent, parent_live)).await {
            Ok(Ok(Some(done))) => done,
            Ok(Ok(None)) => return None,
            Ok(Err((e, ctx))) => {
                failed(&e, &ctx);
                return None;
            }
            Err(_) => {
                pm.handshake_failed.inc(HandshakeFailure::Timeout);
                info!(timeout = ?timeout, "TLS handshake timed out");
                return None;
            }
        };
    drop(handshake_slot);
    let m = &ctx.metrics;

    let details = ConnDetails::of(tls.connection(), sni);
    if details.resumed {
        // rustls does not re-verify the client certificate a resumed
        // session carries; the CRLs or CA bundle may have changed since.
        if let Err(e) = recheck_resumed(tls.connection(), &live.tls) {
            m.handshake_failed
                .inc(HandshakeFailure::BadClientCertificate);
            m.client_auth_denied.inc(DenialReason::of(&e));
            info!(error = %e, "resumed session refused: its client certificate no longer passes");
            close(&mut tls, &[]).await;
            return None;
        }
        m.resumed.inc();
    }
    m.handshake_ok.inc();
    if let Some(id) = &details.identity {
        if let Some(ban) = ctx.sessions.bans.identity(id, std::time::SystemTime::now()) {
            m.rejected.inc(RejectReason::Banned);
            info!(ban, client.subject = %id.subject, client.sha256 = %id.sha256, "connection refused: the client certificate is banned");
            close(&mut tls, &[]).await;
            return None;
        }
    }
    m.handshake_duration
        .observe(started.elapsed().as_secs_f64());
    let chain = tls.connection().peer_certificates();
    let (settings, cas) = (&live.config.tls.client_auth, &live.tls.client_ca_ders);
    let identity = details.identity.as_ref();
    if !super::ocsp::admits(&ctx.ocsp, m, settings, cas, chain, identity).await
        || !super::crl::admits(&ctx.crl, m, settings, cas, chain, identity).await
    {
        close(&mut tls, &[]).await;
        return None;
    }
    details.log();
    let tls = Box::pin(super::websocket::negotiate(tls, &live, m)).await?;
    // The chain is kept only where a reload can re-check it: on listeners
    // that verify clients.
    let chain = live
        .tls
        .client_verifier
        .as_ref()
        .and(tls.tls().connection().peer_certificates())
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
    let registered = ctx.sessions.register(NewSession {
        id,
        listener: ctx.name.clone(),
        peer,
        identity: details.identity.clone(),
        chain,
        max_lifetime: live.config.timeouts.max_connection_lifetime.0,
    });
    // Boxed: an async fn keeps its arguments for its whole life, beside the
    // locals they are moved into, so a TLS stream passed by value to the
    // session would be held twice.
    Some(Box::new(Established {
        tls,
        peer,
        local,
        ctx,
        live,
        details,
        started,
        registered,
    }))
}

/// Counts and logs a failed handshake on the listener (or route) it
/// happened on.
fn failed(e: &io::Error, ctx: &Context) {
    let m = &ctx.metrics;
    let reason = HandshakeFailure::of(e);
    m.handshake_failed.inc(reason);
    if let Some(te) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        if is_client_cert_error(te) {
            m.client_auth_denied.inc(DenialReason::of(te));
        }
    }
    info!(reason = reason.as_str(), error = %e, route = %ctx.name, "TLS handshake failed");
}

/// A finished handshake: the stream, the server name the client asked for,
/// the listener (or route) that owns the connection and the live state the
/// handshake used; `None` for an ACME validation, answered and over; or
/// the error and the listener it happened on.
type HandshakeResult =
    Result<Option<(TlsStream, Option<String>, Arc<Context>, Arc<Live>)>, (io::Error, Arc<Context>)>;

/// Reads the ClientHello, picks the route (from `parent_live`, the
/// parent's state when the connection came) and the configuration, and
/// finishes the handshake.
async fn handshake(
    stream: TcpStream,
    parent: &Arc<Context>,
    parent_live: Arc<Live>,
) -> HandshakeResult {
    let start = crate::tls::stream::accept(stream)
        .await
        .map_err(|e| (e, parent.clone()))?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let provider = parent_live.tls.server_config.crypto_provider();
    match parent.challenges.answer(&hello, provider) {
        AlpnAnswer::NotAcme => {}
        AlpnAnswer::Challenge(config) => {
            // Before routes and client authentication: the CA presents no
            // certificate, and the connection never reaches a broker.
            let mut tls = start
                .finish(config)
                .await
                .map_err(|e| (e, parent.clone()))?;
            parent.metrics.acme_validations.inc();
            info!(server_name = ?sni, "answered a TLS-ALPN-01 validation");
            close(&mut tls, &[]).await;
            return Ok(None);
        }
        AlpnAnswer::NoChallenge => {
            return Err((io::Error::other(NoChallenge), parent.clone()));
        }
    }
    let route = sni.as_deref().and_then(|name| parent_live.route_for(name));
    let (chosen, live) = match route {
        Some(r) => (r.clone(), r.live.load_full()),
        None => (parent.clone(), parent_live),
    };
    let config = live.tls.config_for(hello.cipher_suites()).clone();
    match start.finish(config).await {
        Ok(tls) => Ok(Some((tls, sni, chosen, live))),
        Err(e) => Err((e, chosen)),
    }
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
    match conn.peer_certificates() {
        Some(chain) => state.verify_client(chain),
        None => Ok(()),
    }
}
