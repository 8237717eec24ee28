//! The byte pump: both directions of an opaque connection, each moving
//! whatever it reads, until both have ended.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};

use super::direction::{totals, Direction, Totals};
use super::idle::Traffic;
use crate::pool::PollReadable;

/// One direction of the byte pump: `buf[pos..end]` is read and not yet
/// written.
struct Pump {
    dir: Direction,
    pos: usize,
    end: usize,
}

impl Pump {
    fn new(counter: Counter) -> Self {
        Self {
            dir: Direction::new(counter),
            pos: 0,
            end: 0,
        }
    }

    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + PollReadable + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.dir.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Write out what was read.
            while self.pos < self.end {
                let Some(buf) = &self.dir.buf else { break };
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.dir.sent(n);
            }
            if self.dir.read_done {
                return self.dir.poll_finish(cx, w);
            }
            match ready!(self.dir.poll_read(cx, r, w))? {
                Some(n) => (self.pos, self.end) = (0, n),
                None => (self.pos, self.end) = (0, 0),
            }
        }
    }
}

/// The bidirectional byte pump.
pub struct Relay<'a, C, B> {
    client: &'a mut C,
    backend: &'a mut B,
    up: Pump,
    down: Pump,
}

/// Relays between `client` and `backend` until both directions have ended,
/// or either fails. Byte counts go to the two counters as they move.
///
/// Half-close is kept: when one side finishes sending (FIN, or TLS
/// close_notify), the other side's write half is shut down, and the other
/// direction carries on until it finishes too.
pub fn relay<'a, C, B>(
    client: &'a mut C,
    backend: &'a mut B,
    to_backend: Counter,
    to_client: Counter,
) -> Relay<'a, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    Relay {
        client,
        backend,
        up: Pump::new(to_backend),
        down: Pump::new(to_client),
    }
}

impl<C, B> Relay<'_, C, B> {
    /// Bytes moved so far.
    pub fn totals(&self) -> Totals {
        totals(&self.up.dir, &self.down.dir)
    }
}

impl<C, B> Relay<'_, C, B> {
    /// Whether either direction holds a buffer.
    #[cfg(test)]
    pub(super) fn holds_buffers(&self) -> bool {
        self.up.dir.buf.is_some() || self.down.dir.buf.is_some()
    }
}

impl<C, B> Traffic for Relay<'_, C, B> {
    fn moved(&self) -> u64 {
        let t = self.totals();
        t.to_backend + t.to_client
    }
}

impl<C, B> Future for Relay<'_, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    type Output = io::Result<Totals>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let up = this.up.poll(cx, this.client, this.backend)?;
        let down = this.down.poll(cx, this.backend, this.client)?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(this.totals()))
        } else {
            Poll::Pending
        }
    }
}
