//! The connection workers: one single-threaded tokio runtime per CPU, each
//! accepting and running its own connections from the first byte to the
//! last.
//!
//! On tokio's multi-threaded runtime a connection's task wanders between
//! threads, and a wake-up on one thread may rouse an idle one to steal it:
//! futex calls and context switches around every message. For an MQTT
//! fleet's small messages that was about a fifth of moat's CPU
//! (docs/benchmarks.md, "What moved the numbers"). Here, as in nginx's
//! worker processes, every worker has its own listening socket of each
//! listener (`SO_REUSEPORT`, see `socket::bind_group`): the kernel spreads
//! new connections over the workers, and a connection stays on the thread
//! that accepted it, with its I/O, its timers and the per-thread buffer
//! pools all local. No socket is handed between threads. The main runtime
//! keeps the admin endpoint, reloads, stapling and signals.

use std::future::Future;
use std::io;
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
    thread: Option<JoinHandle<()>>,
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
                thread: Some(thread),
            });
        }
        Ok(Self { workers, stop })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Runs `task` on worker `index` (modulo the number of workers). What
    /// it spawns with `tokio::spawn` runs on the same worker, and sockets
    /// it registers belong to that worker's runtime.
    pub fn spawn_on<F>(&self, index: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = &self.workers[index % self.workers.len()];
        worker.handle.spawn(task);
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
    use std::time::Duration;

    #[test]
    fn each_worker_runs_its_tasks_and_what_they_spawn_on_its_own_thread() {
        let workers = Workers::start_n(2).expect("start");
        assert_eq!(workers.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        for index in 0..4 {
            let tx = tx.clone();
            workers.spawn_on(index, async move {
                let accepting = std::thread::current().id();
                let child = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    std::thread::current().id()
                });
                let child = child.await.expect("child task");
                let name = std::thread::current().name().map(str::to_string);
                tx.send((index, accepting, child, name)).expect("send");
            });
        }
        let mut by_worker = std::collections::HashMap::new();
        for _ in 0..4 {
            let (index, accepting, child, name) =
                rx.recv_timeout(Duration::from_secs(5)).expect("a task ran");
            assert_eq!(accepting, child, "a spawned task moved to another thread");
            assert_eq!(
                name.as_deref(),
                Some(["moat-worker-0", "moat-worker-1"][index % 2])
            );
            by_worker
                .entry(index % 2)
                .or_insert_with(Vec::new)
                .push(accepting);
        }
        // Indexes 0 and 2 share a thread, 1 and 3 another.
        assert_eq!(by_worker[&0][0], by_worker[&0][1]);
        assert_eq!(by_worker[&1][0], by_worker[&1][1]);
        assert_ne!(by_worker[&0][0], by_worker[&1][0]);
        workers.shutdown();
    }
}
