//! How a connection ends, the same way for every kind of session: the
//! close_notify (after a last reply) under a timeout, and the one line and
//! the counters that say how it ended.

use std::io;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tracing::info;

use super::handshake::CLOSE_NOTIFY_TIMEOUT;
use super::metrics::ConnMetrics;
use crate::relay::mqtt::End;
use crate::tls::stream::TlsStream;

/// Writes `bytes` to the client, then closes the TLS session, giving up
/// after [`CLOSE_NOTIFY_TIMEOUT`].
pub async fn close(tls: &mut TlsStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, async {
        if !bytes.is_empty() {
            tls.write_all(bytes).await?;
        }
        tls.shutdown().await
    })
    .await;
}

/// Counts and logs the end of a session that ran its relay since
/// `started`.
pub fn finish(result: io::Result<End>, started: Instant, m: &ConnMetrics) {
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
        Err(e) => info!(error = %e, duration_s = secs, "connection ended with an error"),
    }
}
