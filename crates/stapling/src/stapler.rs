//! The per-certificate stapling task: it gets a staple (disk cache,
//! responder or static file), keeps it fresh on schedule, drops it before
//! it expires, reports every event, and publishes the staple wait-free
//! through a [`StaplerHandle`].

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::cache;
use crate::cert::{check_issued_by, must_staple, parse_cert, responder_url};
use crate::clock::{self, fmt_time, Clock, SystemClock};
use crate::config::{ConfigError, StaplingConfig};
use crate::fetch::{FetchError, Fetcher};
use crate::observer::{RefreshError, RefreshRecord, StapleObserver, StapleSource, StapleStatus};
use crate::schedule::Policy;
use crate::verify::{verify_response, CertStatus, Staple, VerifyError};

/// After a change in the static file's directory, wait this long before
/// reading it, so a writer that is not atomic has finished.
const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

/// The certificate to staple for.
#[derive(Clone, PartialEq, Eq)]
pub struct StapleTarget {
    /// A name for logs, metrics and the status (for example the listener
    /// and certificate file). It appears in every log line.
    pub name: String,
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// The certificate that issued the leaf, DER.
    pub issuer_der: Vec<u8>,
}

impl fmt::Debug for StapleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StapleTarget")
            .field("name", &self.name)
            .field("leaf_der_len", &self.leaf_der.len())
            .field("issuer_der_len", &self.issuer_der.len())
            .finish()
    }
}

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

/// A staple and the moment its stapling stops.
struct Served {
    staple: Arc<Staple>,
    serve_until: SystemTime,
}

/// What the task and its handles share.
struct Shared {
    target: StapleTarget,
    current: ArcSwapOption<Served>,
    status: ArcSwap<StapleStatus>,
    poke: Notify,
    stopped: AtomicBool,
    clock: Arc<dyn Clock>,
}

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
            Some(path) => Mode::Static { path: path.clone() },
            None => {
                let fetcher =
                    Fetcher::new(&config, aia_url.as_deref()).map_err(SpawnError::Client)?;
                let url = config
                    .responder_url
                    .clone()
                    .or(aia_url)
                    .ok_or(SpawnError::NoResponderUrl)?;
                Mode::Fetch {
                    fetcher: Arc::new(fetcher),
                    url,
                    cache: config
                        .cache_dir
                        .as_deref()
                        .map(|dir| cache::cache_path(dir, &target.leaf_der)),
                }
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
        let task = Task {
            shared: shared.clone(),
            policy: Policy::from(&config),
            config,
            observer,
            mode,
            must_staple,
            jitter: Jitter::new(),
            held: None,
            next_attempt: now,
            failures: 0,
            last_refresh: None,
            warned_without_staple: false,
            static_seen: None,
            static_due_warned: false,
        };
        let task = runtime.spawn(task.run());
        Ok(StaplerHandle {
            reader: StapleReader { shared },
            task: Some(task),
        })
    }
}

/// A read-only view of a stapler's staple and status. Cheap to clone; it
/// does not keep the task running.
#[derive(Clone)]
pub struct StapleReader {
    shared: Arc<Shared>,
}

impl fmt::Debug for StapleReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StapleReader")
            .field("name", &self.shared.target.name)
            .finish()
    }
}

impl StapleReader {
    /// The staple to send now, if any. Wait-free (an atomic load and a
    /// clock read); never returns a response past its stapling end, even
    /// if the task is late.
    pub fn current(&self) -> Option<Arc<Staple>> {
        let served = self.shared.current.load();
        let served = served.as_ref()?;
        (self.shared.clock.now() < served.serve_until).then(|| served.staple.clone())
    }

    /// The full status, as of the last change.
    pub fn status(&self) -> Arc<StapleStatus> {
        self.shared.status.load_full()
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.shared.target.name
    }

    /// Whether this stapler staples for exactly this leaf and issuer. A
    /// reload that brings the same certificate can keep the stapler.
    pub fn serves(&self, leaf_der: &[u8], issuer_der: &[u8]) -> bool {
        self.shared.target.leaf_der == leaf_der && self.shared.target.issuer_der == issuer_der
    }
}

/// Owns a running stapler. Dropping it stops the task.
pub struct StaplerHandle {
    reader: StapleReader,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for StaplerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaplerHandle")
            .field("name", &self.reader.name())
            .finish()
    }
}

impl StaplerHandle {
    /// See [`StapleReader::current`].
    pub fn current(&self) -> Option<Arc<Staple>> {
        self.reader.current()
    }

    /// See [`StapleReader::status`].
    pub fn status(&self) -> Arc<StapleStatus> {
        self.reader.status()
    }

    /// See [`StapleReader::name`].
    pub fn name(&self) -> &str {
        self.reader.name()
    }

    /// See [`StapleReader::serves`].
    pub fn serves(&self, leaf_der: &[u8], issuer_der: &[u8]) -> bool {
        self.reader.serves(leaf_der, issuer_der)
    }

    /// A read-only view that can be handed to the TLS resolver.
    pub fn reader(&self) -> StapleReader {
        self.reader.clone()
    }

    /// Asks for a query now (in static-file mode: a re-read of the file),
    /// whatever the schedule. Requests made while one is pending merge.
    pub fn refresh_now(&self) {
        self.reader.shared.poke.notify_one();
    }

    /// Stops the task and waits until it is gone. After this returns, the
    /// observer receives no more events from it.
    pub async fn stop(mut self) {
        self.reader.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        debug!(cert = %self.reader.name(), "OCSP stapler stopped");
    }
}

impl Drop for StaplerHandle {
    fn drop(&mut self) {
        self.reader.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
            debug!(cert = %self.reader.name(), "OCSP stapler stopped");
        }
    }
}

enum Mode {
    Fetch {
        fetcher: Arc<Fetcher>,
        url: String,
        cache: Option<PathBuf>,
    },
    Static {
        path: PathBuf,
    },
}

/// A staple the task holds.
struct Held {
    staple: Arc<Staple>,
    source: StapleSource,
    serve_until: SystemTime,
}

/// What the last look at the static file found, to log only changes.
#[derive(PartialEq, Eq)]
enum Seen {
    Unreadable(io::ErrorKind),
    Read {
        bytes: Vec<u8>,
        refused: Option<&'static str>,
    },
}

/// Why the task woke up.
enum Wake {
    Timer,
    Poke,
    FileEvent,
}

struct Task {
    shared: Arc<Shared>,
    config: StaplingConfig,
    policy: Policy,
    observer: Arc<dyn StapleObserver>,
    mode: Mode,
    must_staple: bool,
    jitter: Jitter,
    held: Option<Held>,
    /// Fetch mode: when to query next.
    next_attempt: SystemTime,
    failures: u32,
    last_refresh: Option<RefreshRecord>,
    warned_without_staple: bool,
    static_seen: Option<Seen>,
    static_due_warned: bool,
}

impl Task {
    fn name(&self) -> &str {
        &self.shared.target.name
    }

    fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    async fn run(mut self) {
        let file_events = Arc::new(Notify::new());
        let mut _watcher = None;
        match &self.mode {
            Mode::Fetch { url, cache, .. } => {
                info!(
                    cert = %self.name(),
                    responder = %url,
                    cache = ?cache,
                    must_staple = self.must_staple,
                    "OCSP stapling started"
                );
                self.load_cache().await;
            }
            Mode::Static { path } => {
                info!(
                    cert = %self.name(),
                    file = %path.display(),
                    must_staple = self.must_staple,
                    "OCSP stapling started from a static response file"
                );
                _watcher = watch(self.name(), path, file_events.clone());
                self.check_static_file().await;
            }
        }
        let mut next_file_check = clock::add(self.now(), self.config.recheck_interval);

        loop {
            let now = self.now();
            self.expire(now);
            match &self.mode {
                Mode::Fetch { .. } => {
                    if now >= self.next_attempt {
                        self.attempt().await;
                        continue;
                    }
                }
                Mode::Static { .. } => {
                    if now >= next_file_check {
                        self.check_static_file().await;
                        next_file_check = clock::add(self.now(), self.config.recheck_interval);
                        continue;
                    }
                    self.warn_if_static_due(now);
                }
            }

            let mut wake = clock::add(now, self.config.recheck_interval);
            if let Some(held) = &self.held {
                wake = wake.min(held.serve_until);
            }
            match &self.mode {
                Mode::Fetch { .. } => wake = wake.min(self.next_attempt),
                Mode::Static { .. } => {
                    wake = wake.min(next_file_check);
                    if let Some(due) = self.static_due() {
                        wake = wake.min(due);
                    }
                }
            }
            let sleep = clock::since(wake, now).max(Duration::from_millis(1));

            let shared = self.shared.clone();
            let events = file_events.clone();
            let woke = tokio::select! {
                () = tokio::time::sleep(sleep) => Wake::Timer,
                () = shared.poke.notified() => Wake::Poke,
                () = events.notified() => Wake::FileEvent,
            };
            match woke {
                Wake::Timer => {}
                Wake::Poke => {
                    debug!(cert = %self.name(), "refresh requested");
                    self.next_attempt = self.now();
                    next_file_check = self.now();
                }
                Wake::FileEvent => {
                    tokio::time::sleep(FILE_DEBOUNCE).await;
                    debug!(cert = %self.name(), "static OCSP file's directory changed");
                    next_file_check = self.now();
                }
            }
        }
    }

    /// Verifies a response and applies the stapling policy.
    fn accept(&self, der: &[u8], now: SystemTime) -> Result<Staple, RefreshError> {
        let target = &self.shared.target;
        let staple = verify_response(
            der,
            &target.leaf_der,
            &target.issuer_der,
            now,
            self.config.clock_skew,
        )
        .map_err(RefreshError::Verify)?;
        if *staple.cert_status() == CertStatus::Unknown {
            return Err(RefreshError::UnknownStatus);
        }
        if now
            >= self
                .policy
                .serve_until(staple.this_update(), staple.next_update())
        {
            return Err(RefreshError::ExpiresTooSoon {
                next_update: staple.next_update(),
            });
        }
        Ok(staple)
    }

    /// Holds `staple` unless it is the same response or older than the one
    /// held. Returns whether the staple changed.
    fn install(&mut self, staple: Staple, source: StapleSource) -> bool {
        if let Some(held) = &mut self.held {
            if held.staple.der() == staple.der() {
                held.source = source;
                return false;
            }
            if staple.this_update() < held.staple.this_update() {
                debug!(
                    cert = %self.shared.target.name,
                    held_this_update = %fmt_time(held.staple.this_update()),
                    got_this_update = %fmt_time(staple.this_update()),
                    "got an older OCSP response than the one held; keeping the held one"
                );
                return false;
            }
        }
        let serve_until = self
            .policy
            .serve_until(staple.this_update(), staple.next_update());
        self.held = Some(Held {
            staple: Arc::new(staple),
            source,
            serve_until,
        });
        self.warned_without_staple = false;
        self.static_due_warned = false;
        self.publish(true);
        true
    }

    /// Logs a revoked response at error level: the alarm.
    fn alarm_if_revoked(&self, staple: &Staple, source: StapleSource) {
        if let CertStatus::Revoked {
            revocation_time,
            reason,
        } = staple.cert_status()
        {
            error!(
                cert = %self.name(),
                revocation_time = %fmt_time(*revocation_time),
                reason = %reason.map_or_else(|| "not given".to_string(), |r| r.to_string()),
                source = %source,
                "the certificate is REVOKED according to its OCSP responder; stapling the \
                 revoked response so clients refuse it. Replace the certificate."
            );
        }
    }

    fn status(&self) -> StapleStatus {
        StapleStatus {
            name: self.name().to_string(),
            must_staple: self.must_staple,
            staple: self.held.as_ref().map(|h| h.staple.clone()),
            source: self.held.as_ref().map(|h| h.source),
            serve_until: self.held.as_ref().map(|h| h.serve_until),
            next_refresh: match self.mode {
                Mode::Fetch { .. } => Some(self.next_attempt),
                Mode::Static { .. } => None,
            },
            last_refresh: self.last_refresh.clone(),
            consecutive_failures: self.failures,
        }
    }

    /// Publishes the held staple and status; with `changed`, tells the
    /// observer the staple changed.
    fn publish(&self, changed: bool) {
        if self.stopped() {
            return;
        }
        if changed {
            self.shared.current.store(self.held.as_ref().map(|h| {
                Arc::new(Served {
                    staple: h.staple.clone(),
                    serve_until: h.serve_until,
                })
            }));
        }
        let status = self.status();
        self.shared.status.store(Arc::new(status.clone()));
        if changed {
            self.observer.staple_changed(&status);
        }
    }

    fn record(&mut self, result: Result<(), RefreshError>) {
        match &result {
            Ok(()) => self.failures = 0,
            Err(_) => self.failures = self.failures.saturating_add(1),
        }
        if !self.stopped() {
            self.observer
                .refresh_result(self.name(), result.as_ref().map(|_| ()));
        }
        self.last_refresh = Some(RefreshRecord {
            at: self.now(),
            result,
        });
    }

    /// Drops the staple once its stapling window ends.
    fn expire(&mut self, now: SystemTime) {
        let Some(held) = &self.held else { return };
        if now < held.serve_until {
            return;
        }
        warn!(
            cert = %self.name(),
            next_update = %fmt_time(held.staple.next_update()),
            source = %held.source,
            "the OCSP response is about to expire and no fresh one was obtained: \
             no longer stapling"
        );
        self.held = None;
        self.publish(true);
        self.check_must_staple();
    }

    fn check_must_staple(&mut self) {
        if !self.must_staple || self.held.is_some() || self.warned_without_staple {
            return;
        }
        self.warned_without_staple = true;
        warn!(
            cert = %self.name(),
            "the certificate requires OCSP stapling (Must-Staple) but no valid staple is \
             available: clients that honour Must-Staple will refuse it"
        );
        if !self.stopped() {
            self.observer.must_staple_without_staple(self.name());
        }
    }

    /// Start-up in fetch mode: staple a cached response at once if it is
    /// still good, and plan the first query.
    async fn load_cache(&mut self) {
        let Mode::Fetch {
            cache: Some(path), ..
        } = &self.mode
        else {
            self.next_attempt = self.now();
            return;
        };
        let path = path.clone();
        let read = cache::in_background(&path, cache::read_cached).await;
        let now = self.now();
        match read {
            Ok(None) => debug!(cert = %self.name(), "no cached OCSP response"),
            Ok(Some(der)) => match self.accept(&der, now) {
                Ok(staple) => {
                    info!(
                        cert = %self.name(),
                        file = %path.display(),
                        this_update = %fmt_time(staple.this_update()),
                        next_update = %fmt_time(staple.next_update()),
                        status = %staple.cert_status(),
                        "stapling the cached OCSP response"
                    );
                    self.alarm_if_revoked(&staple, StapleSource::Cache);
                    self.install(staple, StapleSource::Cache);
                }
                Err(e) => info!(
                    cert = %self.name(),
                    file = %path.display(),
                    reason = e.reason(),
                    error = %e,
                    "not using the cached OCSP response"
                ),
            },
            Err(e) => warn!(
                cert = %self.name(),
                file = %path.display(),
                error = %e,
                "cannot read the OCSP cache file"
            ),
        }
        self.next_attempt = match &self.held {
            Some(held) => self.policy.refresh_due(
                held.staple.this_update(),
                held.staple.next_update(),
                self.jitter.next(),
            ),
            None => now,
        };
        self.publish(false);
    }

    /// One query, verified, then scheduled.
    async fn attempt(&mut self) {
        let Mode::Fetch { fetcher, cache, .. } = &self.mode else {
            return;
        };
        let fetcher = fetcher.clone();
        let cache = cache.clone();
        let target = self.shared.clone();
        debug!(cert = %self.name(), "querying the OCSP responder");
        let fetched = isolated(async move {
            fetcher
                .fetch(&target.target.leaf_der, &target.target.issuer_der)
                .await
        })
        .await;
        let now = self.now();
        let outcome = fetched
            .map_err(RefreshError::Fetch)
            .and_then(|der| self.accept(&der, now));
        match outcome {
            Ok(staple) => {
                self.alarm_if_revoked(&staple, StapleSource::Fetched);
                let der = staple.der().to_vec();
                let changed = self.install(staple, StapleSource::Fetched);
                if let Some(held) = &self.held {
                    self.next_attempt = self.policy.refresh_at(
                        held.staple.this_update(),
                        held.staple.next_update(),
                        now,
                        self.jitter.next(),
                    );
                    info!(
                        cert = %self.name(),
                        this_update = %fmt_time(held.staple.this_update()),
                        next_update = %fmt_time(held.staple.next_update()),
                        status = %held.staple.cert_status(),
                        changed,
                        next_refresh = %fmt_time(self.next_attempt),
                        "OCSP response refreshed"
                    );
                }
                self.record(Ok(()));
                if changed {
                    if let Some(path) = cache {
                        self.write_cache(path, der).await;
                    }
                }
            }
            Err(err) => {
                let failures = self.failures.saturating_add(1);
                let held_until = self.held.as_ref().map(|h| h.serve_until);
                self.next_attempt =
                    self.policy
                        .retry_at(failures, now, held_until, self.jitter.next());
                warn!(
                    cert = %self.name(),
                    reason = err.reason(),
                    error = %err,
                    failures,
                    retry_at = %fmt_time(self.next_attempt),
                    still_stapling_until = %held_until.map_or_else(|| "-".to_string(), fmt_time),
                    "OCSP refresh failed"
                );
                self.record(Err(err));
            }
        }
        self.publish(false);
        self.check_must_staple();
    }

    async fn write_cache(&self, path: PathBuf, der: Vec<u8>) {
        let result = cache::in_background(&path, move |path| cache::write_atomic(path, &der)).await;
        match result {
            Ok(()) => debug!(cert = %self.name(), file = %path.display(), "OCSP response cached"),
            Err(e) => {
                warn!(
                    cert = %self.name(),
                    file = %path.display(),
                    error = %e,
                    "cannot write the OCSP cache file; stapling continues, but a restart \
                     would have to query the responder"
                );
                if !self.stopped() {
                    self.observer.cache_write_failed(self.name(), &e);
                }
            }
        }
    }

    /// Reads and verifies the static file; logs and reports only changes.
    async fn check_static_file(&mut self) {
        let Mode::Static { path } = &self.mode else {
            return;
        };
        let path = path.clone();
        let read = cache::in_background(&path, cache::read_capped).await;
        let now = self.now();
        match read {
            Err(e) => {
                let seen = Seen::Unreadable(e.kind());
                if self.static_seen.as_ref() != Some(&seen) {
                    self.static_seen = Some(seen);
                    let err =
                        RefreshError::StaticFile(format!("cannot read {}: {e}", path.display()));
                    error!(
                        cert = %self.name(),
                        file = %path.display(),
                        reason = err.reason(),
                        error = %e,
                        "cannot read the static OCSP response file; keeping the current \
                         staple, if any, until it expires"
                    );
                    self.record(Err(err));
                }
            }
            Ok(bytes) => {
                let outcome = self.accept(&bytes, now);
                let seen = Seen::Read {
                    bytes,
                    refused: outcome.as_ref().err().map(RefreshError::reason),
                };
                let news = self.static_seen.as_ref() != Some(&seen);
                self.static_seen = Some(seen);
                match outcome {
                    Ok(staple) => {
                        if news {
                            info!(
                                cert = %self.name(),
                                file = %path.display(),
                                this_update = %fmt_time(staple.this_update()),
                                next_update = %fmt_time(staple.next_update()),
                                status = %staple.cert_status(),
                                "stapling the static OCSP response file"
                            );
                            self.alarm_if_revoked(&staple, StapleSource::StaticFile);
                            self.record(Ok(()));
                        }
                        self.install(staple, StapleSource::StaticFile);
                    }
                    Err(err) if news => {
                        error!(
                            cert = %self.name(),
                            file = %path.display(),
                            reason = err.reason(),
                            error = %err,
                            "refusing the static OCSP response file; keeping the previous \
                             staple, if any, until it expires"
                        );
                        self.record(Err(err));
                    }
                    Err(_) => {}
                }
            }
        }
        self.publish(false);
        self.check_must_staple();
    }

    /// In static-file mode, when the held response is due for replacement.
    fn static_due(&self) -> Option<SystemTime> {
        let held = self.held.as_ref()?;
        if self.static_due_warned || held.source != StapleSource::StaticFile {
            return None;
        }
        Some(
            self.policy
                .refresh_due(held.staple.this_update(), held.staple.next_update(), 0.0),
        )
    }

    fn warn_if_static_due(&mut self, now: SystemTime) {
        let (Some(due), Mode::Static { path }) = (self.static_due(), &self.mode) else {
            return;
        };
        if now < due {
            return;
        }
        if let Some(held) = &self.held {
            warn!(
                cert = %self.name(),
                file = %path.display(),
                next_update = %fmt_time(held.staple.next_update()),
                stapled_until = %fmt_time(held.serve_until),
                "the static OCSP response is due for replacement: write a fresh response \
                 to the file before it expires"
            );
        }
        self.static_due_warned = true;
    }
}

/// Runs a query in its own task, so a panic in a dependency becomes an
/// error instead of ending the stapler; aborted if the stapler stops.
async fn isolated<F>(query: F) -> Result<Vec<u8>, FetchError>
where
    F: Future<Output = Result<Vec<u8>, FetchError>> + Send + 'static,
{
    struct AbortOnDrop(JoinHandle<Result<Vec<u8>, FetchError>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(query));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(FetchError::Internal("the OCSP query panicked".into())),
        Err(e) => Err(FetchError::Internal(e.to_string())),
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

/// Jitter values in `[-1, 1]` from xorshift64*, seeded from the system's
/// random source. Not for secrets: it only spreads refresh times.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use aws_lc_rs::rand::SecureRandom as _;
        let mut seed = [0u8; 8];
        let seed = match aws_lc_rs::rand::SystemRandom::new().fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => clock::to_unix(SystemTime::now()).unsigned_abs() ^ 0x9e37_79b9_7f4a_7c15,
        };
        Self(seed | 1)
    }

    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (r as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new();
        let values: Vec<f64> = (0..10_000).map(|_| j.next()).collect();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(values.iter().any(|v| *v < -0.9));
        assert!(values.iter().any(|v| *v > 0.9));
    }

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
