//! What both pumps share for one direction of a connection: the buffer,
//! borrowed from a per-thread pool only while bytes move; the wait for
//! readability that holds no buffer; the byte count and its counter; the
//! flush owed after writes; and the shutdown that passes an end of stream
//! on.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::pool::{self, FreeList, PollReadable};

/// Size of a relay buffer: one full TLS record of plaintext.
pub const BUF_SIZE: usize = 16 * 1024;

thread_local! {
    static POOL: FreeList<Box<[u8]>> = const { FreeList::new() };
}

/// Bytes moved by a finished relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// From the client to the backend.
    pub to_backend: u64,
    /// From the backend to the client.
    pub to_client: u64,
}

/// One direction's state, whatever decides what to write.
pub(super) struct Direction {
    /// The buffer, while bytes move.
    pub(super) buf: Option<Box<[u8]>>,
    /// The source has ended (EOF, close_notify, or a TCP end without it).
    pub(super) read_done: bool,
    /// The destination has been shut down: this direction is over.
    pub(super) done: bool,
    /// Bytes written since the last flush.
    need_flush: bool,
    /// Bytes written so far.
    pub(super) bytes: u64,
    counter: Counter,
}

impl Direction {
    pub(super) fn new(counter: Counter) -> Self {
        Self {
            buf: None,
            read_done: false,
            done: false,
            need_flush: false,
            bytes: 0,
            counter,
        }
    }

    /// Gives the buffer back to the pool.
    pub(super) fn release(&mut self) {
        if let Some(b) = self.buf.take() {
            pool::give(&POOL, b);
        }
    }

    /// Counts `n` bytes written to the destination.
    pub(super) fn sent(&mut self, n: usize) {
        self.bytes += n as u64;
        self.counter.inc_by(n as u64);
        self.need_flush = true;
    }

    /// Flushes the destination if something was written since the last
    /// flush.
    pub(super) fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        if self.need_flush {
            ready!(Pin::new(w).poll_flush(cx))?;
            self.need_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// After the source ended: gives the buffer back and shuts the
    /// destination down (which flushes first, and sends close_notify on
    /// TLS). Ready once this direction is over.
    pub(super) fn poll_finish<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        self.release();
        ready!(Pin::new(w).poll_shutdown(cx))?;
        self.done = true;
        Poll::Ready(Ok(()))
    }

    /// Reads from `r` into the buffer, borrowing one only once `r` is
    /// readable. Ready with `Some(n)` for `n` bytes at the buffer's start,
    /// or `None` at the end of the stream (`read_done` is then set). When
    /// `r` has nothing, the buffer goes back to the pool and `w` is flushed
    /// before waiting, so an idle direction holds no buffer.
    ///
    /// A peer that closes TCP without TLS close_notify reads as an ordinary
    /// end: MQTT is self-delimiting, so nothing can be cut off unnoticed.
    pub(super) fn poll_read<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
    ) -> Poll<io::Result<Option<usize>>>
    where
        R: AsyncRead + PollReadable + Unpin,
        W: AsyncWrite + Unpin,
    {
        let buf = match &mut self.buf {
            Some(buf) => buf,
            None => match r.poll_readable(cx) {
                Poll::Pending => {
                    ready!(self.poll_flush(cx, w))?;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => self.buf.insert(take_buffer()),
            },
        };
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *r).poll_read(cx, &mut rb) {
            Poll::Pending => {
                // Nothing more for now: give the buffer back while idle.
                self.release();
                ready!(self.poll_flush(cx, w))?;
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    self.read_done = true;
                    Poll::Ready(Ok(None))
                } else {
                    Poll::Ready(Ok(Some(n)))
                }
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.read_done = true;
                Poll::Ready(Ok(None))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

/// What the two directions of a relay moved so far.
pub(super) fn totals(up: &Direction, down: &Direction) -> Totals {
    Totals {
        to_backend: up.bytes,
        to_client: down.bytes,
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.release();
    }
}

/// Borrows a relay buffer from this thread's pool.
fn take_buffer() -> Box<[u8]> {
    pool::take(&POOL).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}
