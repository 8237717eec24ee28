//! An opaque session: the backend, then bytes both ways until either side
//! closes, the idle timeout, or moat tells it to stop (`registry`).

use super::backend::BackendError;
use super::finish::{close, finish};
use super::handshake::Established;
use crate::relay::{self, mqtt::End};

/// Runs an opaque session. The steps before the relay are boxed, so that
/// their state does not stay in this future for the connection's life
/// (see `conn::handle`).
pub async fn run(mut conn: Box<Established>) {
    let (mut backend, _lease) = match Box::pin(conn.connect_backend(None)).await {
        Ok(b) => b,
        Err(BackendError::Unreachable) => {
            Box::pin(close(&mut conn.tls, &[])).await;
            return;
        }
        Err(BackendError::Header) => return,
    };
    let Established {
        mut tls,
        ctx,
        live,
        started,
        registered,
        ..
    } = *conn;
    let m = &ctx.metrics;
    let pump = relay::relay(
        &mut tls,
        &mut backend,
        m.to_backend.clone(),
        m.to_client.clone(),
    );
    let mut pump = relay::idle_timeout(pump, live.config.timeouts.idle.0);
    let ended = tokio::select! {
        result = &mut pump => Err(result),
        reason = registered.stopped() => Ok(reason),
    };
    match ended {
        Err(result) => finish(result.map(End::Finished), started, m, None),
        Ok(reason) => {
            let totals = pump.get_ref().totals();
            drop(pump);
            Box::pin(close(&mut tls, &[])).await;
            let stopped = Some((reason, registered.session()));
            finish(Ok(End::Stopped(totals)), started, m, stopped);
        }
    }
}
