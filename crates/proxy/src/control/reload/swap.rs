//! Reloading certificates without a restart.
//!
//! Four triggers lead to the same path: a change in a watched directory
//! (debounced), a periodic content check, SIGHUP, and `POST /reload`. One
//! worker runs reloads one at a time. For each listener it reads every file
//! into memory, and if the bytes differ from what is served, builds a
//! complete new TLS state off to the side and publishes it with one atomic
//! swap. Handshakes that start afterwards use it; established connections
//! are never touched. On any failure the listener keeps its last good state,
//! the file and the reason are logged, the failure is counted, and the
//! listener stays ready.
//!
//! Session ticket keys survive a certificate change. When the client CA
//! bundle changes, they are replaced, so that a device the new bundle would
//! refuse cannot get back in by resuming an old session.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::ReloadConfig;
use crate::listener::ListenerShared;
use crate::metrics::{Metrics, TlsSeries};
use crate::tls::certs::{unix, CertError};
use crate::tls::files::{Digest, Sources};
use crate::tls::{self, client_auth, Resumption};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload`.
    Admin,
    /// A change in a watched directory.
    FileChange,
    /// The periodic content check.
    Periodic,
}

impl Trigger {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Admin => "admin",
            Self::FileChange => "file change",
            Self::Periodic => "periodic check",
        }
    }

    /// Whether an operator asked: then "unchanged" is reported and counted.
    fn explicit(self) -> bool {
        matches!(self, Self::Signal | Self::Admin)
    }
}

/// What a reload did to one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New certificates are in service.
    Reloaded {
        /// The default certificate's serial.
        serial: String,
    },
    /// The files are as served; nothing was done.
    Unchanged,
    /// The files could not be used; the previous state stays in service.
    Failed(CertError),
    /// A failure that was already reported for the same files.
    StillFailing,
}

/// Per-listener reload bookkeeping. Only the reload worker touches it.
pub struct ReloadState {
    resumption: Resumption,
    failed: Option<Digest>,
    series: TlsSeries,
    staplers: Vec<Option<moat_stapling::StaplerHandle>>,
}

impl ReloadState {
    /// The state of a listener just loaded at start-up: exports its
    /// certificate metrics and starts its OCSP stapling tasks (so it must
    /// run inside the runtime).
    pub fn new(
        listener: &crate::config::ListenerConfig,
        tls: &tls::ListenerTls,
        resumption: Resumption,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let series = metrics.set_tls_state(&listener.name, tls, &TlsSeries::default());
        metrics.reload_succeeded(&listener.name, unix(tls.loaded_at));
        let mut staplers = Vec::new();
        crate::ocsp::sync(listener, tls, &mut staplers, metrics);
        Self {
            resumption,
            failed: None,
            series,
            staplers,
        }
    }
}

fn error_digest(e: &CertError) -> Digest {
    let mut out = [0u8; 32];
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, e.to_string().as_bytes());
    out.copy_from_slice(d.as_ref());
    out
}

/// Reloads one listener if its files changed. Blocking: it reads files.
pub fn reload_listener(
    shared: &ListenerShared,
    metrics: &Arc<Metrics>,
    trigger: Trigger,
) -> Outcome {
    let name = &shared.config.name;
    let mut state = match shared.reload.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let current = shared.tls.load_full();
    let now = SystemTime::now();

    let sources = match Sources::read(&shared.config) {
        Ok(s) => s,
        // No file digest for unreadable files: key the failure on the error
        // itself, so that the periodic check reports each distinct one once.
        Err(e) => return failed(&mut state, metrics, name, trigger, error_digest(&e), e),
    };
    let digest = sources.digest();
    if digest == current.digest {
        state.failed = None;
        metrics.set_reload_pending(name, false);
        if trigger.explicit() {
            metrics.reload_result(name, "unchanged");
            info!(listener = %name, trigger = trigger.as_str(), "certificates unchanged; nothing to reload");
        } else {
            debug!(listener = %name, trigger = trigger.as_str(), "certificates unchanged");
        }
        return Outcome::Unchanged;
    }
    if !trigger.explicit() && state.failed == Some(digest) {
        return Outcome::StillFailing;
    }

    // A new client CA bundle gets new ticket keys (unless they are shared
    // from a file); certificates alone keep them, so devices go on resuming
    // across a rotation.
    let (resumption, tickets_rotated) =
        match Resumption::for_state(&sources, Some((&state.resumption, &current))) {
            Ok(r) => r,
            Err(e) => return failed(&mut state, metrics, name, trigger, digest, e),
        };
    let new = match tls::build_from(
        &shared.config,
        &shared.policy,
        &sources,
        Some(&resumption),
        now,
    ) {
        Ok(new) => new,
        Err(e) => return failed(&mut state, metrics, name, trigger, digest, e),
    };

    let leaf = new.certs[0].leaf().clone();
    state.series = metrics.set_tls_state(name, &new, &state.series);
    // Before the swap, so the new certificates staple from their first
    // handshake when the leaf is unchanged.
    crate::ocsp::sync(&shared.config, &new, &mut state.staplers, metrics);
    let crl_warnings = client_auth::crl_warnings(
        name,
        &new.crls,
        &new.client_cas,
        shared.config.tls.client_auth.expired_crl,
        unix(now),
    );
    state.resumption = resumption;
    state.failed = None;
    shared.tls.store(Arc::new(new));
    metrics.reload_result(name, "success");
    metrics.reload_succeeded(name, unix(now));
    info!(
        listener = %name,
        trigger = trigger.as_str(),
        certificate = %leaf.subject,
        serial = %leaf.serial,
        not_after = %leaf.not_after_rfc3339(),
        days_left = leaf.days_left(now),
        "certificates reloaded"
    );
    for w in crl_warnings {
        warn!("{w}");
    }
    if tickets_rotated {
        if shared.config.tls.session_ticket_keys.is_some() {
            info!(listener = %name, "session ticket keys reloaded from the shared key file");
        } else {
            info!(listener = %name, "client CA bundle changed: session tickets rotated, so every device makes one full handshake against the new bundle");
        }
    }
    Outcome::Reloaded {
        serial: leaf.serial,
    }
}

/// Records a failed reload: the old state stays, the failure is logged and
/// counted once per distinct failure (every time when an operator asked).
fn failed(
    state: &mut ReloadState,
    metrics: &Metrics,
    name: &str,
    trigger: Trigger,
    key: Digest,
    e: CertError,
) -> Outcome {
    let repeat = !trigger.explicit() && state.failed == Some(key);
    state.failed = Some(key);
    metrics.set_reload_pending(name, true);
    if repeat {
        return Outcome::StillFailing;
    }
    metrics.reload_result(name, "failure");
    error!(
        listener = %name,
        trigger = trigger.as_str(),
        file = %e.file.display(),
        error = %e.message,
        hint = %e.hint,
        "certificate reload failed; still serving the previous certificates"
    );
    Outcome::Failed(e)
}

/// A request to the reload worker.
struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<Vec<(String, Outcome)>>>,
}

/// Asks the reload worker for reloads. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<Request>,
}

impl ReloadHandle {
    /// Reloads every listener and waits for the outcome of each.
    pub async fn reload(&self, trigger: Trigger) -> Vec<(String, Outcome)> {
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

/// Starts the reload worker, the file watcher and the periodic check.
pub fn start(
    listeners: Vec<Arc<ListenerShared>>,
    metrics: Arc<Metrics>,
    config: &ReloadConfig,
    shutdown: CancellationToken,
) -> ReloadHandle {
    let (tx, mut rx) = mpsc::channel::<Request>(4);
    let handle = ReloadHandle { tx };

    let worker_listeners = listeners.clone();
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if req.trigger.explicit() {
                info!(trigger = req.trigger.as_str(), "reloading certificates");
            }
            let ls = worker_listeners.clone();
            let m = metrics.clone();
            let trigger = req.trigger;
            let outcomes = tokio::task::spawn_blocking(move || {
                ls.iter()
                    .map(|l| (l.config.name.clone(), reload_listener(l, &m, trigger)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if let Some(reply) = req.reply {
                let _ = reply.send(outcomes);
            }
        }
    });

    if config.watch {
        spawn_watcher(
            &listeners,
            handle.clone(),
            config.debounce.0,
            shutdown.clone(),
        );
    }
    let interval = config.check_interval.0;
    if !interval.is_zero() {
        let h = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => h.request(Trigger::Periodic),
                }
            }
        });
    }
    handle
}

/// Every file a reload reads.
fn configured_files(listeners: &[Arc<ListenerShared>]) -> Vec<PathBuf> {
    listeners
        .iter()
        .flat_map(|l| crate::tls::files::reloadable_files(&l.config))
        .collect()
}

/// Lexically removes `.` and `..` (for symlink targets such as certbot's
/// `../../archive/x/cert1.pem`, once the link itself is resolved).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Every path that decides what `path` reads: the path itself, each
/// symlink on the way (its own path, however deep), and where it ends up.
/// certbot: `live/x/fullchain.pem` -> `archive/x/fullchain2.pem`;
/// Kubernetes: `tls.crt` -> `..data` -> `..2026_01_01.../tls.crt`.
pub fn resolution_hops(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Absolute, so that watched directories and event paths compare.
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let mut cur = normalize(&absolute);
    for _ in 0..32 {
        out.push(cur.clone());
        // The deepest symlink among the path and its ancestors.
        let link = cur
            .ancestors()
            .find(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
            .map(Path::to_path_buf);
        let Some(link) = link else { break };
        let Ok(target) = std::fs::read_link(&link) else {
            break;
        };
        out.push(link.clone());
        let rest = cur
            .strip_prefix(&link)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base = link.parent().unwrap_or(Path::new("/"));
        cur = normalize(&base.join(target).join(rest));
    }
    out.sort();
    out.dedup();
    out
}

/// What to watch: the directories holding every hop of every configured
/// file, and the hops themselves (events on other files in those
/// directories, such as a log file next to the certificates, are ignored).
fn watch_plan(listeners: &[Arc<ListenerShared>]) -> (BTreeSet<PathBuf>, HashSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut relevant = HashSet::new();
    for file in configured_files(listeners) {
        for hop in resolution_hops(&file) {
            if let Some(d) = hop.parent() {
                dirs.insert(d.to_path_buf());
            }
            relevant.insert(hop);
        }
    }
    (dirs, relevant)
}

/// After this long of continuous relevant events, reload anyway.
const MAX_DEBOUNCE_FACTOR: u32 = 4;

fn spawn_watcher(
    listeners: &[Arc<ListenerShared>],
    handle: ReloadHandle,
    debounce: Duration,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let relevant: Arc<std::sync::RwLock<HashSet<PathBuf>>> = Arc::default();
    let filter = relevant.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reading the files ourselves must not look like a change.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => {}
            Ok(e) => {
                let wanted = filter.read().map(|set| {
                    // No paths (a rescan, an overflow): assume it matters.
                    e.paths.is_empty() || e.paths.iter().any(|p| set.contains(&normalize(p)))
                });
                if wanted.unwrap_or(true) {
                    signal.notify_one();
                }
            }
            Err(e) => debug!(error = %e, "file watch error"),
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch certificate files; relying on the periodic check, SIGHUP and POST /reload");
            return;
        }
    };
    let listeners = listeners.to_vec();
    let mut watched = BTreeSet::new();
    let sync = move |watcher: &mut notify::RecommendedWatcher, watched: &mut BTreeSet<PathBuf>| {
        let (dirs, paths) = watch_plan(&listeners);
        if let Ok(mut set) = relevant.write() {
            *set = paths;
        }
        sync_watches(watcher, watched, dirs);
    };
    sync(&mut watcher, &mut watched);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed.notified() => {}
            }
            // Debounce: wait until the files have been quiet for a while,
            // but not for ever.
            let deadline = tokio::time::Instant::now() + debounce * MAX_DEBOUNCE_FACTOR;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changed.notified() => {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(debounce) => break,
                }
            }
            let _ = handle.reload(Trigger::FileChange).await;
            // Symlink targets move on rotation; follow them.
            sync(&mut watcher, &mut watched);
        }
        drop(watcher);
    });
}

fn sync_watches(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    wanted: BTreeSet<PathBuf>,
) {
    for gone in watched.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for dir in wanted.difference(watched) {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => debug!(directory = %dir.display(), "watching for certificate changes"),
            Err(e) => {
                warn!(directory = %dir.display(), error = %e, "cannot watch directory; relying on the periodic check")
            }
        }
    }
    *watched = wanted;
}

/// A summary of outcomes for logs and the admin endpoint.
pub fn all_ok(outcomes: &[(String, Outcome)]) -> bool {
    outcomes
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Reloaded { .. } | Outcome::Unchanged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_follow_kubernetes_and_certbot_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Kubernetes: tls.crt -> ..data/tls.crt, ..data -> ..2026_01
        std::fs::create_dir(d.join("..2026_01")).expect("mkdir");
        std::fs::write(d.join("..2026_01/tls.crt"), "x").expect("write");
        std::os::unix::fs::symlink("..2026_01", d.join("..data")).expect("ln");
        std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).expect("ln");
        let hops = resolution_hops(&d.join("tls.crt"));
        assert!(hops.contains(&d.join("tls.crt")), "{hops:?}");
        assert!(hops.contains(&d.join("..data")), "{hops:?}");
        assert!(hops.contains(&d.join("..2026_01/tls.crt")), "{hops:?}");
        // certbot: live/x/fullchain.pem -> ../../archive/x/fullchain1.pem
        std::fs::create_dir_all(d.join("live/x")).expect("mkdir");
        std::fs::create_dir_all(d.join("archive/x")).expect("mkdir");
        std::fs::write(d.join("archive/x/fullchain1.pem"), "x").expect("write");
        std::os::unix::fs::symlink(
            "../../archive/x/fullchain1.pem",
            d.join("live/x/fullchain.pem"),
        )
        .expect("ln");
        let hops = resolution_hops(&d.join("live/x/fullchain.pem"));
        assert!(hops.contains(&d.join("live/x/fullchain.pem")), "{hops:?}");
        assert!(
            hops.contains(&d.join("archive/x/fullchain1.pem")),
            "{hops:?}"
        );
        // A plain file is its own only hop.
        std::fs::write(d.join("plain.pem"), "x").expect("write");
        assert_eq!(
            resolution_hops(&d.join("plain.pem")),
            vec![d.join("plain.pem")]
        );
    }
}
