//! Buffers held only while bytes wait or move: per-thread free lists of
//! byte buffers, shared by the relay and the TLS stream, and
//! [`PollReadable`], which lets a pump wait for data without holding one.
//!
//! Buffers are borrowed only while bytes wait or move, so a few per thread
//! serve any number of connections, and a connection stays on one worker
//! thread (see `workers`). No crate offers exactly a lock-free,
//! thread-local, capped free list without pulling in a general object-pool
//! abstraction, and this one is a dozen lines.

use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll};
use std::thread::LocalKey;

use tokio::net::TcpStream;

/// Buffers kept per thread in each list.
const PER_THREAD: usize = 64;

/// A free list; declare one per kind of buffer with `thread_local!` and a
/// `const` initializer.
pub(crate) struct FreeList<T>(RefCell<Vec<T>>);

impl<T> FreeList<T> {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }
}

/// Takes a buffer from this thread's `list`, if it has one.
pub(crate) fn take<T: 'static>(list: &'static LocalKey<FreeList<T>>) -> Option<T> {
    list.with(|l| l.0.borrow_mut().pop())
}

/// Gives `buf` back to this thread's `list`, or drops it when the list is
/// full.
pub(crate) fn give<T: 'static>(list: &'static LocalKey<FreeList<T>>, buf: T) {
    list.with(|l| {
        let mut l = l.0.borrow_mut();
        if l.len() < PER_THREAD {
            l.push(buf);
        }
    });
}

/// A source that can say "a read would make progress" without being handed
/// a buffer.
pub trait PollReadable {
    /// Ready when a read is likely to return data, EOF or an error.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl PollReadable for TcpStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}
