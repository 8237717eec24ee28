//! The connection workers: one single-threaded tokio runtime per CPU, each
//! running the connections handed to it from the first byte to the last.
//!
//! On tokio's multi-threaded runtime a connection's task wanders between
//! threads, and a wake-up on one thread may rouse an idle one to steal it:
//! futex calls and context switches around every message. For an MQTT
//! fleet's small messages that was about a fifth of moat's CPU
//! (docs/benchmarks.md, "What moved the numbers"). Here the accept loop, on
//! the main runtime, hands each accepted socket to the worker with the
//! fewest connections, and the connection stays on that one thread, as in
//! nginx's worker processes: its I/O, its timers and the per-thread buffer
//! pools are all local. The main runtime keeps the accept loops, the admin
//! endpoint, reloads, stapling and signals.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The worker threads.
pub struct Workers {
    workers: Vec<Worker>,
    stop: CancellationToken,
}

struct Worker {
    handle: Handle,
    /// Connections running on this worker.
    load: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Counts a connection out of its worker however its future ends
/// (finished, or dropped at shutdown).
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A connection's future with its load guard beside it. A struct, not
    /// an `async` block: an `async` block keeps the future it captured and
    /// the one it awaits as two copies, which every idle connection would
    /// pay for.
    struct Counted<F> {
        #[pin]
        connection: F,
        _guard: LoadGuard,
    }
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().connection.poll(cx)
    }
}

impl Workers {
    /// How many workers to start: one per CPU this process may use (the
    /// CPU affinity, and a cgroup CPU quota rounded down), at least one.
    /// Ask before the sandbox: the quota is read from /sys/fs/cgroup.
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts `n` workers (at least one).
    pub fn start_n(n: usize) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let mut workers = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let until = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("moat-worker-{i}"))
                // Dropping the runtime at the end drops the connections
                // still on it, which closes their sockets.
                .spawn(move || runtime.block_on(until.cancelled()))?;
            workers.push(Worker {
                handle,
                load: Arc::default(),
                thread: Some(thread),
            });
        }
        Ok(Self { workers, stop })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are no workers (never, once started).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `connection` on the worker with the fewest connections. The
    /// future is first polled on that worker, so sockets it registers
    /// belong to that worker's runtime.
    pub fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one worker");
        worker.load.fetch_add(1, Ordering::Relaxed);
        worker.handle.spawn(Counted {
            connection,
            _guard: LoadGuard(worker.load.clone()),
        });
    }

    /// Stops every worker, dropping the connections still running, and
    /// waits for the threads to end. Call it outside any runtime.
    pub fn shutdown(mut self) {
        self.stop.cancel();
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_loaded_worker_and_stay_on_its_thread() {
        let workers = Workers::start_n(2).expect("start");
        assert_eq!(workers.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        let hold = CancellationToken::new();
        for _ in 0..4 {
            let tx = tx.clone();
            let hold = hold.clone();
            workers.spawn(async move {
                let before = std::thread::current().id();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                tx.send((
                    before,
                    std::thread::current().id(),
                    std::thread::current().name().map(str::to_string),
                ))
                .expect("send");
                hold.cancelled().await;
            });
        }
        let mut threads = std::collections::HashMap::new();
        for _ in 0..4 {
            let (before, after, name) = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("a connection ran");
            assert_eq!(before, after, "a connection moved between threads");
            assert!(name.is_some_and(|n| n.starts_with("moat-worker-")));
            *threads.entry(after).or_insert(0) += 1;
        }
        // Four long-lived connections over two workers: two each.
        assert_eq!(threads.len(), 2);
        assert!(threads.values().all(|&n| n == 2), "{threads:?}");
        let loads: Vec<usize> = workers
            .workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect();
        assert_eq!(loads, [2, 2]);
        hold.cancel();
        // Finished connections are counted out.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while workers
            .workers
            .iter()
            .any(|w| w.load.load(Ordering::Relaxed) > 0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "loads never went back to 0"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        workers.shutdown();
    }
}
