//! Test support of this crate: set-up, a recording observer and a clock
//! the tests move. The PKI (`OpensslCa`, OCSP responses made by
//! `openssl ocsp`) and the HTTP OCSP responder on 127.0.0.1 are shared
//! with the end-to-end tests, in `moat-e2e` (tests/src/ocsp.rs).

#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use moat_stapling::{Clock, RefreshError, StapleObserver, StapleSource, StapleStatus};

/// Installs the process-wide rustls provider and a log subscriber, as the
/// gateway does at start.
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "moat_stapling=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One observed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Changed {
        stapled: bool,
        source: Option<StapleSource>,
        status: Option<&'static str>,
    },
    Refresh(Result<(), &'static str>),
    CacheWriteFailed,
    MustStapleUnmet,
}

/// Records every event.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl StapleObserver for Recorder {
    fn staple_changed(&self, status: &StapleStatus) {
        self.events.lock().unwrap().push(Event::Changed {
            stapled: status.staple.is_some(),
            source: status.source,
            status: status.staple.as_ref().map(|s| s.cert_status().label()),
        });
    }

    fn refresh_result(&self, _name: &str, result: Result<(), &RefreshError>) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Refresh(result.map_err(|e| e.reason())));
    }

    fn cache_write_failed(&self, _name: &str, _error: &std::io::Error) {
        self.events.lock().unwrap().push(Event::CacheWriteFailed);
    }

    fn must_staple_without_staple(&self, _name: &str) {
        self.events.lock().unwrap().push(Event::MustStapleUnmet);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, event: &Event) -> usize {
        self.events().iter().filter(|e| *e == event).count()
    }

    /// Waits (at most `timeout`) until `pred` holds for the events.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; events: {:#?}",
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits (at most `timeout`) until `pred` holds.
pub async fn wait_until(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The system clock plus an offset the test moves.
#[derive(Default)]
pub struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Moves the clock so that `now()` is about `t`.
    pub fn set(&self, t: SystemTime) {
        let real = SystemTime::now();
        let offset = match t.duration_since(real) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        self.offset_ms.store(offset, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let real = SystemTime::now();
        if offset >= 0 {
            real + Duration::from_millis(offset as u64)
        } else {
            real - Duration::from_millis(offset.unsigned_abs())
        }
    }
}
