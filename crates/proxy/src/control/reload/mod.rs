//! Reloading certificates without a restart.
//!
//! Four triggers lead to the same path: a change in a watched directory
//! (debounced), a periodic content check, SIGHUP, and `POST /reload`. Each
//! reads the configuration file again too, and applies what may change
//! live.
//!
//! - `worker`: one task runs reloads one at a time, whatever asked;
//! - `swap`: one listener's reload: read, compare, build aside, swap;
//! - `recheck`: the live sessions verified again against the new state;
//! - `routes`: SNI routes a reloaded file adds or removes;
//! - `settings`: the configuration file read again, and what may change
//!   without a restart;
//! - `watch`: the file watcher and its debounce.

mod recheck;
mod routes;
mod settings;
mod swap;
mod watch;
mod worker;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::ReloadConfig;
use crate::conn::Catalog;
pub use settings::ConfigSource;
pub use swap::{all_ok, ReloadOutcome, ReloadTarget, Trigger};
pub use watch::resolution_hops;
pub use worker::ReloadHandle;

/// Starts the reload worker for `targets`, the file watcher and the
/// periodic check, as `config` says.
pub fn start(
    targets: Vec<Arc<ReloadTarget>>,
    catalog: Arc<Catalog>,
    source: ConfigSource,
    config: &ReloadConfig,
    shutdown: CancellationToken,
) -> ReloadHandle {
    let config_file = source.path();
    let handle = worker::spawn(targets, catalog.clone(), Arc::new(source));
    if config.watch {
        watch::spawn_watcher(
            catalog,
            config_file,
            handle.clone(),
            config.debounce.0,
            shutdown.clone(),
        );
    }
    let interval = config.check_interval.0;
    if !interval.is_zero() {
        worker::spawn_periodic(handle.clone(), interval, shutdown);
    }
    handle
}
