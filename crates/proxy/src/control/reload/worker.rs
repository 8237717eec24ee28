//! The reload worker: one task that runs reloads one at a time, whatever
//! asked for them, each listener in turn on a blocking thread (a reload
//! reads files); and the periodic content check that asks it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::swap::{ReloadOutcome, ReloadTarget, Trigger};

/// A request to the reload worker.
struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<Vec<(String, ReloadOutcome)>>>,
}

/// Asks the reload worker for reloads. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<Request>,
}

impl ReloadHandle {
    /// Reloads every listener and waits for the outcome of each.
    pub async fn reload(&self, trigger: Trigger) -> Vec<(String, ReloadOutcome)> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Request {
                trigger,
                reply: Some(reply),
            })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Queues a reload of every listener without waiting; a queue that is
    /// already full has one pending, which covers this one too.
    pub fn request(&self, trigger: Trigger) {
        let _ = self.tx.try_send(Request {
            trigger,
            reply: None,
        });
    }
}

/// Starts the reload worker for `targets`.
pub fn spawn(targets: Vec<Arc<ReloadTarget>>) -> ReloadHandle {
    let (tx, mut rx) = mpsc::channel::<Request>(4);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if req.trigger.explicit() {
                info!(trigger = req.trigger.as_str(), "reloading certificates");
            }
            let ts = targets.clone();
            let trigger = req.trigger;
            let outcomes = tokio::task::spawn_blocking(move || {
                ts.iter()
                    .map(|t| (t.ctx.name.clone(), t.reload(trigger)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if let Some(reply) = req.reply {
                let _ = reply.send(outcomes);
            }
        }
    });
    ReloadHandle { tx }
}

/// Asks `handle` for a reload every `interval`, the first one interval
/// from now, until `shutdown`.
pub fn spawn_periodic(handle: ReloadHandle, interval: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => handle.request(Trigger::Periodic),
            }
        }
    });
}
