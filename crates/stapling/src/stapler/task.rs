//! The stapler's task: after its mode's start-up, one loop that drops an
//! expiring staple, runs whatever is due (a query, or a re-read of the
//! static file), then sleeps until the next deadline, a refresh request or
//! a change in the static file's directory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::debug;

use super::fetch_mode::FetchMode;
use super::state::State;
use super::static_mode::{StaticMode, FILE_DEBOUNCE};
use crate::clock;

/// How the task gets its responses.
pub(super) enum Mode {
    Fetch(FetchMode),
    Static(StaticMode),
}

/// Why the task woke up.
enum Wake {
    Timer,
    Poke,
    FileEvent,
}

pub(super) struct Task {
    state: State,
    mode: Mode,
}

impl Task {
    pub(super) fn new(state: State, mode: Mode) -> Self {
        Task { state, mode }
    }

    pub(super) async fn run(mut self) {
        let file_events = Arc::new(Notify::new());
        let mut _watcher = None;
        match &mut self.mode {
            Mode::Fetch(fetch) => fetch.start(&mut self.state).await,
            Mode::Static(file) => {
                _watcher = file.start(&mut self.state, file_events.clone()).await;
            }
        }
        let recheck = self.state.config.recheck_interval;
        let mut next_file_check = clock::add(self.state.now(), recheck);

        loop {
            let now = self.state.now();
            self.state.expire(now);
            match &mut self.mode {
                Mode::Fetch(fetch) => {
                    if self.state.next_refresh.is_some_and(|at| now >= at) {
                        fetch.attempt(&mut self.state).await;
                        continue;
                    }
                }
                Mode::Static(file) => {
                    if now >= next_file_check {
                        file.check(&mut self.state).await;
                        next_file_check = clock::add(self.state.now(), recheck);
                        continue;
                    }
                    file.warn_if_due(&self.state, now);
                }
            }

            let mut wake = clock::add(now, recheck);
            if let Some(held) = &self.state.held {
                wake = wake.min(held.serve_until);
            }
            match &self.mode {
                Mode::Fetch(_) => {
                    if let Some(at) = self.state.next_refresh {
                        wake = wake.min(at);
                    }
                }
                Mode::Static(file) => {
                    wake = wake.min(next_file_check);
                    if let Some(due) = file.due(&self.state) {
                        wake = wake.min(due);
                    }
                }
            }
            let sleep = clock::since(wake, now).max(Duration::from_millis(1));

            let shared = self.state.shared.clone();
            let events = file_events.clone();
            let woke = tokio::select! {
                () = tokio::time::sleep(sleep) => Wake::Timer,
                () = shared.poke.notified() => Wake::Poke,
                () = events.notified() => Wake::FileEvent,
            };
            match woke {
                Wake::Timer => {}
                Wake::Poke => {
                    debug!(cert = %self.state.name(), "refresh requested");
                    if let Mode::Fetch(_) = self.mode {
                        self.state.next_refresh = Some(self.state.now());
                    }
                    next_file_check = self.state.now();
                }
                Wake::FileEvent => {
                    tokio::time::sleep(FILE_DEBOUNCE).await;
                    debug!(cert = %self.state.name(), "static OCSP file's directory changed");
                    next_file_check = self.state.now();
                }
            }
        }
    }
}
