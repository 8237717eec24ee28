//! Telling systemd (or any sd_notify supervisor) what moat is doing, for
//! `Type=notify` units: READY once every listener is bound and serving,
//! RELOADING and READY around a SIGHUP reload, STOPPING when the drain
//! starts, and a one-line STATUS.
//!
//! Without `NOTIFY_SOCKET` in the environment every call does nothing.
//! Failures to notify are logged at debug and otherwise ignored: a
//! supervisor that cannot be told is no reason to stop serving.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Every listener is bound and serving.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts (systemd wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading certificates"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading certificates"),
        ]),
    }
}

/// The drain starts.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}
