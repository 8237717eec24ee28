//! Noticing certificate and configuration changes: the directories of
//! `moat.yaml` and of every configured file, and of every symlink on the way
//! to them (certbot's `live/` links,
//! Kubernetes' `..data`), are watched; relevant events are debounced into
//! one reload, and the watches follow the links when they move.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::swap::Trigger;
use super::worker::ReloadHandle;
use crate::conn::{Catalog, Context};

/// Every file a reload reads: the configuration file, and what the
/// listeners' settings in service name.
fn configured_files(listeners: &[Arc<Context>], config_file: &Path) -> Vec<PathBuf> {
    std::iter::once(config_file.to_path_buf())
        .chain(
            listeners
                .iter()
                .flat_map(|l| crate::tls::files::reloadable_files(&l.live.load().config)),
        )
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
fn watch_plan(
    listeners: &[Arc<Context>],
    config_file: &Path,
) -> (BTreeSet<PathBuf>, HashSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut relevant = HashSet::new();
    for file in configured_files(listeners, config_file) {
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

/// Watches the directories of `config_file` and of every file the
/// listeners read, and asks `handle` for a reload once changes have been
/// quiet for `debounce`.
pub fn spawn_watcher(
    listeners: Arc<Catalog>,
    config_file: PathBuf,
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
    let mut watched = BTreeSet::new();
    let sync = move |watcher: &mut notify::RecommendedWatcher, watched: &mut BTreeSet<PathBuf>| {
        let (dirs, paths) = watch_plan(&listeners.load(), &config_file);
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
