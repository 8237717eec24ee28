//! Static-file mode, for air-gapped sites: a DER response file is verified
//! like a fetched response, re-read when its directory changes and on every
//! re-check, and a warning says when it is due for replacement. Only
//! changes are logged and reported.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::state::State;
use crate::cache;
use crate::clock::fmt_time;
use crate::observer::{RefreshError, StapleSource};

/// After a change in the static file's directory, wait this long before
/// reading it, so a writer that is not atomic has finished.
pub(super) const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

/// What the last look at the static file found, to log only changes.
#[derive(PartialEq, Eq)]
enum Seen {
    Unreadable(io::ErrorKind),
    Read {
        bytes: Vec<u8>,
        refused: Option<&'static str>,
    },
}

pub(super) struct StaticMode {
    path: PathBuf,
    seen: Option<Seen>,
    /// Whether the held response was reported due for replacement.
    due_warned: bool,
}

impl StaticMode {
    pub(super) fn new(path: PathBuf) -> Self {
        StaticMode {
            path,
            seen: None,
            due_warned: false,
        }
    }

    /// Start-up: watches the file's directory (events go to `events`) and
    /// reads the file. The watch lasts as long as the returned watcher.
    pub(super) async fn start(
        &mut self,
        state: &mut State,
        events: Arc<Notify>,
    ) -> Option<notify::RecommendedWatcher> {
        info!(
            cert = %state.name(),
            file = %self.path.display(),
            must_staple = state.must_staple(),
            "OCSP stapling started from a static response file"
        );
        let watcher = watch(state.name(), &self.path, events);
        self.check(state).await;
        watcher
    }

    /// Reads and verifies the static file; logs and reports only changes.
    pub(super) async fn check(&mut self, state: &mut State) {
        let path = &self.path;
        let read = cache::in_background(path, cache::read_capped).await;
        let now = state.now();
        match read {
            Err(e) => {
                let seen = Seen::Unreadable(e.kind());
                if self.seen.as_ref() != Some(&seen) {
                    self.seen = Some(seen);
                    let err =
                        RefreshError::StaticFile(format!("cannot read {}: {e}", path.display()));
                    error!(
                        cert = %state.name(),
                        file = %path.display(),
                        reason = err.reason(),
                        error = %e,
                        "cannot read the static OCSP response file; keeping the current \
                         staple, if any, until it expires"
                    );
                    state.record(Err(err));
                }
            }
            Ok(bytes) => {
                let outcome = state.accept(&bytes, now);
                let seen = Seen::Read {
                    bytes,
                    refused: outcome.as_ref().err().map(RefreshError::reason),
                };
                let news = self.seen.as_ref() != Some(&seen);
                self.seen = Some(seen);
                match outcome {
                    Ok(staple) => {
                        if news {
                            state.announce(
                                &staple,
                                StapleSource::StaticFile,
                                path,
                                "stapling the static OCSP response file",
                            );
                            state.record(Ok(()));
                        }
                        if state.install(staple, StapleSource::StaticFile) {
                            self.due_warned = false;
                        }
                    }
                    Err(err) if news => {
                        error!(
                            cert = %state.name(),
                            file = %path.display(),
                            reason = err.reason(),
                            error = %err,
                            "refusing the static OCSP response file; keeping the previous \
                             staple, if any, until it expires"
                        );
                        state.record(Err(err));
                    }
                    Err(_) => {}
                }
            }
        }
        state.publish(false);
        state.check_must_staple();
    }

    /// When the held response is due for replacement, until that is
    /// reported.
    pub(super) fn due(&self, state: &State) -> Option<SystemTime> {
        let held = state.held.as_ref()?;
        if self.due_warned || held.source != StapleSource::StaticFile {
            return None;
        }
        Some(
            state
                .policy
                .refresh_due(held.staple.this_update(), held.staple.next_update(), 0.0),
        )
    }

    pub(super) fn warn_if_due(&mut self, state: &State, now: SystemTime) {
        let Some(due) = self.due(state) else {
            return;
        };
        if now < due {
            return;
        }
        if let Some(held) = &state.held {
            warn!(
                cert = %state.name(),
                file = %self.path.display(),
                next_update = %fmt_time(held.staple.next_update()),
                stapled_until = %fmt_time(held.serve_until),
                "the static OCSP response is due for replacement: write a fresh response \
                 to the file before it expires"
            );
        }
        self.due_warned = true;
    }
}

/// Watches the static file's directory; events wake the task. Returns
/// `None` (and logs) if watching is impossible: the periodic re-check
/// still catches changes.
fn watch(name: &str, path: &Path, events: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, EventKind};
    use notify::Watcher as _;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        match event.kind {
            // Our own reads must not wake us; a finished write must.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => events.notify_one(),
            EventKind::Access(_) => {}
            _ => events.notify_one(),
        }
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(
                cert = %name,
                dir = %dir.display(),
                error = %e,
                "cannot watch the static OCSP file's directory; relying on the periodic re-check"
            );
            None
        }
    }
}
