//! The reload worker: one task that runs reloads one at a time, whatever
//! asked for them, on a blocking thread (a reload reads files): the
//! configuration file, then each listener in turn; and the periodic content
//! check that asks it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::routes;
use super::settings::{ConfigRead, ConfigSource};
use super::swap::{ReloadOutcome, ReloadTarget, Trigger};
use crate::config::ValidConfig;
use crate::conn::Catalog;
use crate::tls::certs::CertError;

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

/// One reload of everything: the configuration file first, then every
/// listener with its part of it (or its settings in service, when the file
/// is unchanged or refused), and the routes it adds or removes (`routes`).
/// A refused file is reported as one more outcome, named after the file.
fn reload_all(
    targets: &mut Vec<Arc<ReloadTarget>>,
    catalog: &Catalog,
    source: &ConfigSource,
    trigger: Trigger,
) -> Vec<(String, ReloadOutcome)> {
    let mut read = source.read(trigger.explicit());
    let mut outcomes: Vec<(String, ReloadOutcome)> = Vec::new();
    let mut refused = None;
    if let ConfigRead::Changed(new) = &read {
        match routes::plan(targets, new, targets[0].metrics()) {
            Ok(change) => {
                apply(
                    targets,
                    catalog,
                    source,
                    trigger,
                    new,
                    change,
                    &mut outcomes,
                );
                read = ConfigRead::Unchanged;
            }
            // A route that cannot be loaded refuses the whole file.
            Err(e) => {
                let message = format!("a new SNI route cannot be loaded: {e}");
                source.refused(&message, trigger.explicit());
                read = ConfigRead::Refused(message);
            }
        }
    }
    if let ConfigRead::Refused(message) = read {
        refused = Some(message);
    }
    if outcomes.is_empty() {
        outcomes = targets
            .iter()
            .map(|t| (t.ctx.name.clone(), t.reload(trigger, None)))
            .collect();
    }
    if let Some(message) = refused {
        outcomes.push((
            "configuration".into(),
            ReloadOutcome::Failed(CertError {
                file: source.path(),
                message,
                hint: "fix the file (moat check --config FILE says what is wrong) and reload again; the previous configuration stays in service".into(),
            }),
        ));
    }
    outcomes
}

/// Puts a changed configuration file in service: each listener and route
/// kept takes its part, the new routes join (already loaded by
/// `routes::plan`), the removed ones leave, and the file counts as applied
/// once every listener took its part. A listener that kept its previous
/// state keeps the file "changed", so that the next reload tries it again.
fn apply(
    targets: &mut Vec<Arc<ReloadTarget>>,
    catalog: &Catalog,
    source: &ConfigSource,
    trigger: Trigger,
    new: &ValidConfig,
    change: routes::RouteChange,
    outcomes: &mut Vec<(String, ReloadOutcome)>,
) {
    for t in &change.targets {
        let name = t.ctx.name.clone();
        if change.added.contains(&name) {
            let serial = t.ctx.live.load().tls.default_serial();
            outcomes.push((name, ReloadOutcome::Reloaded { serial }));
        } else {
            let settings = new.listeners().find(|(l, _)| l.name == name);
            outcomes.push((name, t.reload(trigger, settings)));
        }
    }
    routes::put_in_service(&change.targets, &change.added, &change.removed, catalog);
    *targets = change.targets;
    if super::swap::all_ok(outcomes) {
        source.applied(new.clone());
    }
}

/// Starts the reload worker for `targets` (every listener and route, also
/// listed in `catalog`), re-reading the configuration file `source` on
/// every reload.
pub fn spawn(
    targets: Vec<Arc<ReloadTarget>>,
    catalog: Arc<Catalog>,
    source: Arc<ConfigSource>,
) -> ReloadHandle {
    let (tx, mut rx) = mpsc::channel::<Request>(4);
    tokio::spawn(async move {
        let mut targets = targets;
        while let Some(req) = rx.recv().await {
            if req.trigger.explicit() {
                info!(trigger = req.trigger.as_str(), "reloading certificates");
            }
            let mut ts = targets.clone();
            let (source, catalog) = (source.clone(), catalog.clone());
            let trigger = req.trigger;
            let outcomes = tokio::task::spawn_blocking(move || {
                let outcomes = reload_all(&mut ts, &catalog, &source, trigger);
                (outcomes, ts)
            })
            .await;
            // A reload that panicked changed nothing in the list.
            let outcomes = match outcomes {
                Ok((outcomes, ts)) => {
                    targets = ts;
                    outcomes
                }
                Err(_) => Vec::new(),
            };
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
