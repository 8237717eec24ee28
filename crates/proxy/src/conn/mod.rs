//! One connection, from accept to close. Its stages run in this order, and
//! each hands the next only what it needs:
//!
//! 1. `admit`: the listener's `max_connections` and the per-address
//!    limits, checked by the accept loop (`listen::accept`) before any work
//!    or task is spent on the connection; then the cap on handshakes in
//!    progress;
//! 2. `handshake`: TLS against the listener's current state (loaded once,
//!    wait-free), the SNI route, the re-check of a resumed session,
//!    bounded by the handshake timeout;
//! 3. `ocsp`: with `tls.client_auth.ocsp`, the verified device certificate
//!    checked with its OCSP responder (cached per certificate); a refused
//!    device gets a TLS close before anything reaches the broker; and
//!    `crl`: with `tls.client_auth.crl_distribution_points`, the same
//!    against the CRL the certificate names;
//! 4. `identity`: the verified peer, logged once, and what the PROXY header
//!    will say about it; then `websocket`: on listeners with `websocket:`,
//!    raw MQTT or an HTTP upgrade to WebSocket frames (`crate::transport`),
//!    whose byte stream the session reads exactly as raw TLS;
//! 5. the session: `opaque` (backend, then bytes) or `mqtt` (CONNECT
//!    checked first, then the guard on every packet), each connecting the
//!    broker through `backend` and ending through `finish`.
//!
//! `backend` picks and dials the broker's node, with its helpers:
//! `balance` (the order of nodes for a connection, pure), `checks` and
//! `probe` (active health checks), `discovery` (nodes from DNS answers)
//! and `target` (one node's address and one bounded connect).
//!
//! Failures at any stage close only that connection, with a log line and a
//! metric (`reasons`, `metrics`). `context` is what a listener's
//! connections share; `registry` knows every established session, so that
//! a reload, an operator or a deadline can close one, and `revocation`
//! checks live sessions again against their OCSP answer and CRL.

pub mod admit;
mod answers;
pub mod backend;
mod balance;
pub mod bans;
mod checks;
pub mod context;
pub mod crl;
pub mod discovery;
mod finish;
mod handshake;
mod identity;
pub mod metrics;
mod mqtt;
mod ocsp;
mod opaque;
mod probe;
pub mod reasons;
pub mod registry;
pub mod revocation;
mod target;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

pub use admit::Admitted;
pub use context::{Catalog, Context};

/// Keeps `moat_connections_active` right whichever way a connection ends.
struct ActiveGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One admitted connection, start to end.
///
/// Each phase runs in its own heap allocation. A task's future is as large
/// as its largest state, so with the handshake and the session inline every
/// connection would pay for the largest of them (a ClientHello buffer, the
/// CONNECT read, the relay) for its whole life, and values moved from one
/// phase to the next would be counted twice. Here the handshake's
/// allocation goes back when it ends, and an idle connection keeps only its
/// session (measured in docs/benchmarks.md, idle memory).
///
/// `addrs` are the client's address, the local one when the listening
/// socket knows it, and the connection's id (in its log lines, and in the
/// registry once it is established).
pub async fn handle(
    stream: TcpStream,
    addrs: (SocketAddr, Option<SocketAddr>, u64),
    ctx: Arc<Context>,
    _admitted: Admitted,
) {
    let pm = &ctx.metrics;
    pm.accepted.inc();
    pm.active.inc();
    let _active = ActiveGuard(pm.active.clone());
    let Some(conn) = Box::pin(handshake::establish(stream, addrs, &ctx)).await else {
        return;
    };
    if conn.live.config.mqtt.is_some() {
        Box::pin(mqtt::run(conn)).await
    } else {
        Box::pin(opaque::run(conn)).await
    }
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns (without calling it).
    fn future_size<F: FnOnce(A) -> R, A, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    fn future_size4<F: FnOnce(A, B, C, D) -> R, A, B, C, D, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every idle device pays for its connection task and its session's
    /// future for as long as it stays connected (docs/benchmarks.md, idle
    /// memory): a buffer held inline across an await, or a value kept
    /// twice, shows here first. Measured at 240, 1528 and 2072 bytes with
    /// rustc 1.95; the bounds leave room for the compiler, not for a
    /// buffer.
    #[test]
    fn connection_futures_stay_small() {
        let handle = future_size4(super::handle);
        let opaque = future_size(super::opaque::run);
        let mqtt = future_size(super::mqtt::run);
        assert!(handle <= 384, "conn::handle's future is {handle} bytes");
        assert!(opaque <= 2048, "opaque::run's future is {opaque} bytes");
        assert!(mqtt <= 2560, "mqtt::run's future is {mqtt} bytes");
    }
}
