//! How a connection ends, the same way for every kind of session: the
//! close_notify (after a last reply) under a timeout, and the one line and
//! the counters that say how it ended, moat's own decision to close it
//! (`registry`) included.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::info;

use super::metrics::ConnMetrics;
use super::registry::{CloseReason, Session};
use crate::relay::mqtt::End;

/// How long a closing connection waits for the TLS close_notify (after a
/// last reply) to reach the client.
pub const CLOSE_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `bytes` to the client, then closes the TLS session, giving up
/// after [`CLOSE_NOTIFY_TIMEOUT`].
pub async fn close<S: AsyncWrite + Unpin>(tls: &mut S, bytes: &[u8]) {
    let _ = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, async {
        if !bytes.is_empty() {
            tls.write_all(bytes).await?;
        }
        tls.shutdown().await
    })
    .await;
}

/// Counts and logs the end of a session that ran its relay since
/// `started`; `stopped` says why, when moat told it to stop.
pub fn finish(
    result: io::Result<End>,
    started: Instant,
    m: &ConnMetrics,
    stopped: Option<(CloseReason, &Session)>,
) {
    if let Some((reason, session)) = stopped {
        return closed_by_moat(&result, reason, session, started, m);
    }
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        m.idle_timeouts.inc();
    }
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(End::Finished(t)) => info!(
            bytes_to_backend = t.to_backend,
            bytes_to_client = t.to_client,
            duration_s = secs,
            "connection closed"
        ),
        Ok(End::Closed(reason, t)) => {
            m.mqtt_session_closed.inc(reason);
            info!(
                reason = reason.as_str(),
                bytes_to_backend = t.to_backend,
                bytes_to_client = t.to_client,
                duration_s = secs,
                "MQTT session closed by moat"
            );
        }
        // Only a stopped session ends so, and `closed_by_moat` took it.
        Ok(End::Stopped(t)) => info!(
            bytes_to_backend = t.to_backend,
            bytes_to_client = t.to_client,
            duration_s = secs,
            "connection closed"
        ),
        Err(e) => info!(error = %e, duration_s = secs, "connection ended with an error"),
    }
}

/// The line and the counter of a session moat closed on its own.
fn closed_by_moat(
    result: &io::Result<End>,
    reason: CloseReason,
    session: &Session,
    started: Instant,
    m: &ConnMetrics,
) {
    m.closed.inc(reason);
    let t = match result {
        Ok(End::Finished(t) | End::Closed(_, t) | End::Stopped(t)) => *t,
        Err(_) => Default::default(),
    };
    let id = session.identity.as_ref();
    info!(
        reason = reason.as_str(),
        connection.id = session.id,
        client.subject = id.map_or("", |i| i.subject.as_str()),
        client.sha256 = id.map_or("", |i| i.sha256.as_str()),
        mqtt.client_id = session.client_id().unwrap_or(""),
        bytes_to_backend = t.to_backend,
        bytes_to_client = t.to_client,
        duration_s = started.elapsed().as_secs_f64(),
        "session closed by moat"
    );
}
