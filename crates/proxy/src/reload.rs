//! Reloading a listener's certificates without a restart.
//!
//! A reload reads every file the listener names, builds a complete new TLS
//! state off to the side and publishes it with one atomic swap. Handshakes
//! that start afterwards use the new state; established connections are
//! never touched. If anything is wrong, the listener keeps serving its
//! last good state and the failure is logged with the file and the reason.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{error, info};

use crate::listener::ListenerShared;
use crate::tls::{self, certs::CertError};

/// Rebuilds one listener's TLS state from its files and swaps it in.
pub fn reload(shared: &ListenerShared) -> Result<(), CertError> {
    let state = tls::build(
        &shared.config,
        &shared.policy,
        Some(&shared.resumption),
        SystemTime::now(),
    )?;
    shared.tls.store(Arc::new(state));
    Ok(())
}

/// Reloads every listener; each one succeeds or fails on its own.
pub fn reload_all(listeners: &[Arc<ListenerShared>], trigger: &str) {
    info!(trigger, "reloading certificates");
    for shared in listeners {
        match reload(shared) {
            Ok(()) => {
                let tls = shared.tls.load();
                let leaf = tls.certs[0].leaf();
                info!(
                    listener = %shared.config.name,
                    certificate = %leaf.subject,
                    serial = %leaf.serial,
                    not_after = %leaf.not_after_rfc3339(),
                    "certificates reloaded"
                );
            }
            Err(e) => error!(
                listener = %shared.config.name,
                file = %e.file.display(),
                error = %e.message,
                hint = %e.hint,
                "reload failed; still serving the previous certificates"
            ),
        }
    }
}
