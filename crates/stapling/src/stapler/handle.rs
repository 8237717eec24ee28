//! The certificate a stapler serves, what its task publishes for the rest
//! of the process (the staple being served and the status, behind atomic
//! pointers), and the handles that read it wait-free: [`StapleReader`] and
//! the owning [`StaplerHandle`], which stops the task.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::clock::Clock;
use crate::observer::StapleStatus;
use crate::verify::Staple;

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

/// A staple and the moment its stapling stops.
pub(super) struct Served {
    pub(super) staple: Arc<Staple>,
    pub(super) serve_until: SystemTime,
}

/// What the task and its handles share.
pub(super) struct Shared {
    pub(super) target: StapleTarget,
    pub(super) current: ArcSwapOption<Served>,
    pub(super) status: ArcSwap<StapleStatus>,
    pub(super) poke: Notify,
    pub(super) stopped: AtomicBool,
    pub(super) clock: Arc<dyn Clock>,
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
    /// The handle of the task `task`, which publishes into `shared`.
    pub(super) fn new(shared: Arc<Shared>, task: JoinHandle<()>) -> Self {
        StaplerHandle {
            reader: StapleReader { shared },
            task: Some(task),
        }
    }

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
