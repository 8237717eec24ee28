//! The accept loop of one listener on one connection worker: each accepted
//! connection is admitted (or refused at once) and then runs on this
//! worker's runtime to its end. The loop backs off instead of spinning when
//! the process runs out of file descriptors.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn, Instrument};

use crate::conn::reasons::RejectReason;
use crate::conn::{self, Context};

/// Connection ids for correlating log lines.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections until `shutdown` fires, each on this worker's
/// runtime, tracked by `tracker`. Runs on a connection worker, with that
/// worker's socket of the listener's group (see `socket::bind_group`).
pub async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let name = &ctx.name;
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(listener = %name, error = %e, "cannot start accepting connections on this worker");
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
    let mut full = FullWarning::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                if let Some(ban) = ctx
                    .sessions
                    .bans
                    .source(peer.ip(), std::time::SystemTime::now())
                {
                    ctx.metrics.rejected.inc(RejectReason::Banned);
                    debug!(listener = %name, %peer, ban, "connection refused: the source is banned");
                    drop(stream);
                    continue;
                }
                let admitted = match ctx.admission.admit(peer.ip(), Instant::now()) {
                    Ok(a) => a,
                    Err(reason) => {
                        ctx.metrics.rejected.inc(reason);
                        if reason == RejectReason::MaxConnections {
                            full.warn(&ctx);
                        } else {
                            debug!(listener = %name, %peer, reason = reason.as_str(), "connection refused by a per-address limit");
                        }
                        drop(stream);
                        continue;
                    }
                };
                let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!("conn", listener = %name, id, %peer);
                let connection = conn::handle(stream, (peer, local, id), ctx.clone(), admitted);
                tracker.spawn(connection.instrument(span));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                error!(
                    listener = %name,
                    error = %e,
                    retry_in = ?backoff,
                    "cannot accept connections: out of file descriptors or memory; raise `ulimit -n` (LimitNOFILE) or lower max_connections"
                );
                ctx.metrics.rejected.inc(RejectReason::ResourceExhaustion);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => debug!(listener = %name, error = %e, "accept failed"),
        }
    }
    debug!(listener = %name, "stopped accepting connections on this worker");
}

/// The warning that a listener is full, at most every 10 s per worker.
#[derive(Default)]
struct FullWarning {
    last: Option<Instant>,
}

impl FullWarning {
    fn warn(&mut self, ctx: &Context) {
        if self
            .last
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            warn!(
                listener = %ctx.name,
                max_connections = ctx.admission.max_connections,
                "connection limit reached; refusing new connections (this warning repeats at most every 10 s)"
            );
            self.last = Some(Instant::now());
        }
    }
}
