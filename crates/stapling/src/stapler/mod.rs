//! The per-certificate stapling task: it gets a staple (disk cache,
//! responder or static file), keeps it fresh on schedule, drops it before
//! it expires, reports every event, and publishes the staple wait-free
//! through a [`StaplerHandle`].
//!
//! This module checks what a stapler needs and starts it
//! ([`Stapler::spawn`]). Its parts: `handle` (the target, what the task
//! publishes and the handles reading it), `task` (the loop), `state` (what
//! every mode holds, and the rules for changing and publishing it),
//! `fetch_mode` (queries and the disk cache), `static_mode` (the static
//! file) and `jitter`.

mod fetch_mode;
mod handle;
mod jitter;
mod state;
mod static_mode;
mod task;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Notify;

use fetch_mode::FetchMode;
use handle::Shared;
use state::State;
use static_mode::StaticMode;
use task::{Mode, Task};

use crate::cache;
use crate::cert::{check_issued_by, must_staple, parse_cert, responder_url};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, StaplingConfig};
use crate::fetch::{FetchError, Fetcher};
use crate::observer::{StapleObserver, StapleStatus};
use crate::verify::VerifyError;

pub use handle::{StapleReader, StapleTarget, StaplerHandle};

/// Why a stapler could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The configuration is invalid.
    Config(Vec<ConfigError>),
    /// The leaf or issuer cannot be used (unparsable, or the issuer did not
    /// issue the leaf).
    Certificate(VerifyError),
    /// The certificate names no OCSP responder, and neither `responder_url`
    /// nor `static_file` is set: there is nothing to staple.
    NoResponderUrl,
    /// The HTTP client could not be built.
    Client(FetchError),
    /// Called outside a Tokio runtime.
    NoRuntime,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(errors) => {
                f.write_str("invalid stapling configuration: ")?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            Self::Certificate(e) => write!(f, "{e}"),
            Self::NoResponderUrl => f.write_str(
                "the certificate names no OCSP responder (no AIA OCSP URL); \
                 set responder_url or static_file to staple it",
            ),
            Self::Client(e) => write!(f, "{e}"),
            Self::NoRuntime => f.write_str("a stapler must be spawned inside a Tokio runtime"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Starts stapling tasks; see [`Stapler::spawn`].
#[derive(Debug)]
pub struct Stapler;

impl Stapler {
    /// Validates `config` and the certificates, then starts the stapling
    /// task for `target` on the current Tokio runtime.
    ///
    /// The task first uses a cached response if one still verifies (with
    /// `cache_dir`), then queries the responder at once if it has no staple,
    /// or loads the static file (with `static_file`). It runs until the
    /// returned handle is dropped or stopped.
    pub fn spawn(
        target: StapleTarget,
        config: StaplingConfig,
        observer: Arc<dyn StapleObserver>,
    ) -> Result<StaplerHandle, SpawnError> {
        Self::spawn_with_clock(target, config, observer, Arc::new(SystemClock))
    }

    /// [`Stapler::spawn`] with an explicit wall clock, for tests and
    /// simulations. The task still sleeps in real time, at most
    /// `recheck_interval` at once, and re-reads the clock when it wakes.
    pub fn spawn_with_clock(
        target: StapleTarget,
        config: StaplingConfig,
        observer: Arc<dyn StapleObserver>,
        clock: Arc<dyn Clock>,
    ) -> Result<StaplerHandle, SpawnError> {
        config.validate().map_err(SpawnError::Config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;

        let leaf = parse_cert(&target.leaf_der, "leaf")
            .map_err(|e| SpawnError::Certificate(VerifyError::BadCertificate(e)))?;
        let issuer = parse_cert(&target.issuer_der, "issuer")
            .map_err(|e| SpawnError::Certificate(VerifyError::BadCertificate(e)))?;
        check_issued_by(&leaf, &issuer)
            .map_err(|e| SpawnError::Certificate(VerifyError::IssuerMismatch(e)))?;
        let must_staple = must_staple(&leaf);
        let aia_url = responder_url(&leaf);

        let mode = match &config.static_file {
            Some(path) => Mode::Static(StaticMode::new(path.clone())),
            None => {
                let fetcher =
                    Fetcher::new(&config, aia_url.as_deref()).map_err(SpawnError::Client)?;
                let url = config
                    .responder_url
                    .clone()
                    .or(aia_url)
                    .ok_or(SpawnError::NoResponderUrl)?;
                let cache = config
                    .cache_dir
                    .as_deref()
                    .map(|dir| cache::cache_path(dir, &target.leaf_der));
                Mode::Fetch(FetchMode::new(Arc::new(fetcher), url, cache))
            }
        };

        let status = StapleStatus {
            name: target.name.clone(),
            must_staple,
            staple: None,
            source: None,
            serve_until: None,
            next_refresh: None,
            last_refresh: None,
            consecutive_failures: 0,
        };
        let shared = Arc::new(Shared {
            target,
            current: ArcSwapOption::empty(),
            status: ArcSwap::from_pointee(status),
            poke: Notify::new(),
            stopped: AtomicBool::new(false),
            clock,
        });
        let now = shared.clock.now();
        // Only fetch mode plans queries: at once, or after the disk cache.
        let next_refresh = matches!(mode, Mode::Fetch(_)).then_some(now);
        let state = State::new(shared.clone(), config, observer, must_staple, next_refresh);
        let task = runtime.spawn(Task::new(state, mode).run());
        Ok(StaplerHandle::new(shared, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let target = StapleTarget {
            name: "x".into(),
            leaf_der: vec![],
            issuer_der: vec![],
        };
        let err = Stapler::spawn(
            target,
            StaplingConfig::default(),
            Arc::new(crate::NoopObserver),
        )
        .unwrap_err();
        assert!(matches!(err, SpawnError::NoRuntime), "{err}");
    }

    #[tokio::test]
    async fn unusable_certificates_are_refused_at_spawn() {
        let target = StapleTarget {
            name: "x".into(),
            leaf_der: b"junk".to_vec(),
            issuer_der: b"junk".to_vec(),
        };
        let err = Stapler::spawn(
            target,
            StaplingConfig::default(),
            Arc::new(crate::NoopObserver),
        )
        .unwrap_err();
        assert!(matches!(err, SpawnError::Certificate(_)), "{err}");
        assert!(err.to_string().contains("cannot parse the leaf"));
    }
}
