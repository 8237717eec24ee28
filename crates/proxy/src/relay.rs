//! Moving bytes between a device and the broker, both ways, until both sides
//! are done.
//!
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers for the whole
//! life of a connection. An MQTT fleet is mostly idle connections, so that
//! would pin 1.6 GB for 100k devices doing nothing. This relay holds a
//! buffer only while data is moving: each direction first waits for the
//! source to become readable with no buffer at all, then borrows one from a
//! per-thread pool, reads and writes until the source would block, and
//! gives the buffer back. An idle connection holds no relay buffer.
//!
//! Half-close is kept: when one side finishes sending (FIN, or TLS
//! close_notify), the other side's write half is shut down, and the other
//! direction carries on until it finishes too.

use std::future::Future;
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

/// Borrows a relay buffer from this thread's pool.
pub(crate) fn take_buffer() -> Box<[u8]> {
    pool::take(&POOL).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

/// Returns a relay buffer to this thread's pool.
pub(crate) fn give_buffer(buf: Box<[u8]>) {
    pool::give(&POOL, buf);
}

/// One direction of the relay.
struct Pump {
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    bytes: u64,
    counter: Counter,
}

impl Pump {
    fn new(counter: Counter) -> Self {
        Self {
            buf: None,
            pos: 0,
            end: 0,
            read_done: false,
            need_flush: false,
            done: false,
            bytes: 0,
            counter,
        }
    }

    fn release(&mut self) {
        if let Some(b) = self.buf.take() {
            give_buffer(b);
        }
    }

    /// Flushes the writer if something was written since the last flush.
    fn poll_flush_if_needed<W: AsyncWrite + Unpin>(
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

    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + PollReadable + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Write out what was read.
            if let Some(buf) = &self.buf {
                while self.pos < self.end {
                    let n = ready!(Pin::new(&mut *w).poll_write(cx, &buf[self.pos..self.end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pos += n;
                    self.bytes += n as u64;
                    self.counter.inc_by(n as u64);
                    self.need_flush = true;
                }
            }

            if self.read_done {
                self.release();
                // Shutting down flushes first (and sends close_notify on TLS).
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            if self.buf.is_none() {
                match r.poll_readable(cx) {
                    Poll::Pending => {
                        ready!(self.poll_flush_if_needed(cx, w))?;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => self.buf = Some(take_buffer()),
                }
            }

            let Some(buf) = self.buf.as_mut() else {
                continue;
            };
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // Nothing more for now: give the buffer back while idle.
                    self.release();
                    ready!(self.poll_flush_if_needed(cx, w))?;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_done = true;
                    } else {
                        self.pos = 0;
                        self.end = n;
                    }
                }
                // A peer that closes TCP without TLS close_notify: MQTT is
                // self-delimiting, so treat it as an ordinary end of stream.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.read_done = true;
                    self.pos = 0;
                    self.end = 0;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.release();
    }
}

/// Bytes moved by a finished relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// From the client to the backend.
    pub to_backend: u64,
    /// From the backend to the client.
    pub to_client: u64,
}

/// The bidirectional relay future.
pub struct Relay<'a, C, B> {
    client: &'a mut C,
    backend: &'a mut B,
    up: Pump,
    down: Pump,
}

/// Relays between `client` and `backend` until both directions have ended,
/// or either fails. Byte counts go to the two counters as they move.
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
        Totals {
            to_backend: self.up.bytes,
            to_client: self.down.bytes,
        }
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

/// A relay that can say how many bytes it has moved, for idle detection.
pub trait Progress {
    /// Bytes moved so far, both ways.
    fn progress(&self) -> u64;
}

impl<C, B> Progress for Relay<'_, C, B> {
    fn progress(&self) -> u64 {
        self.up.bytes + self.down.bytes
    }
}

/// A relay that ends with [`io::ErrorKind::TimedOut`] once no byte has
/// moved either way for `idle`. The timer is re-armed only when it fires,
/// not on every byte, so a busy connection costs nothing extra.
pub struct IdleTimeout<F> {
    inner: F,
    idle: std::time::Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    seen: u64,
}

/// Wraps `relay` with an idle timeout.
pub fn idle_timeout<F: Progress>(relay: F, idle: std::time::Duration) -> IdleTimeout<F> {
    IdleTimeout {
        seen: relay.progress(),
        inner: relay,
        idle,
        sleep: Box::pin(tokio::time::sleep(idle)),
    }
}

impl<F, T> Future for IdleTimeout<F>
where
    F: Future<Output = io::Result<T>> + Progress + Unpin,
{
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(out);
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = self.inner.progress();
            if now == self.seen {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no traffic for {}", humantime::format_duration(self.idle)),
                )));
            }
            self.seen = now;
            let deadline = tokio::time::Instant::now() + self.idle;
            self.sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        // client_end <-> [a | relay | b] <-> backend_end
        let (mut client_end, mut a) = pair().await;
        let (mut b, mut backend_end) = pair().await;
        let up = Counter::default();
        let down = Counter::default();
        let (u, d) = (up.clone(), down.clone());
        let task = tokio::spawn(async move { relay(&mut a, &mut b, u, d).await });

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        client_end.write_all(&big).await.expect("write");
        client_end.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        backend_end
            .read_to_end(&mut got)
            .await
            .expect("backend reads to EOF");
        assert_eq!(got, big);

        // The other direction still works after the client's half-close.
        backend_end.write_all(b"connack").await.expect("write back");
        backend_end.shutdown().await.expect("close");
        let mut back = Vec::new();
        client_end
            .read_to_end(&mut back)
            .await
            .expect("client reads");
        assert_eq!(back, b"connack");

        let totals = task.await.expect("join").expect("relay ok");
        assert_eq!(totals.to_backend, big.len() as u64);
        assert_eq!(totals.to_client, 7);
        assert_eq!(up.get(), big.len() as u64);
        assert_eq!(down.get(), 7);
    }

    #[tokio::test]
    async fn idle_relay_holds_no_buffer() {
        let (_client_end, mut a) = pair().await;
        let (mut b, _backend_end) = pair().await;
        let mut r = relay(&mut a, &mut b, Counter::default(), Counter::default());
        let polled = futures_poll_once(&mut r).await;
        assert!(polled.is_pending());
        assert!(r.up.buf.is_none() && r.down.buf.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_relay_times_out_and_busy_one_does_not() {
        let (mut client_end, mut a) = pair().await;
        let (mut b, mut backend_end) = pair().await;
        let idle = std::time::Duration::from_secs(30);
        let task = tokio::spawn(async move {
            idle_timeout(
                relay(&mut a, &mut b, Counter::default(), Counter::default()),
                idle,
            )
            .await
        });
        // Traffic every 20 s keeps it open past several idle periods.
        for _ in 0..4 {
            tokio::time::sleep(std::time::Duration::from_secs(20)).await;
            client_end.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            backend_end.read_exact(&mut got).await.expect("read");
        }
        assert!(!task.is_finished());
        tokio::time::sleep(std::time::Duration::from_secs(61)).await;
        let err = task.await.expect("join").expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
    }
}
