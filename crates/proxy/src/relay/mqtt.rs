//! The MQTT-aware relay: the byte pump of `crate::relay`, with the guard
//! deciding on every packet.
//!
//! Each direction reads into a pooled buffer only while bytes move, exactly
//! like the opaque relay, so an idle connection holds no buffer. The guard
//! looks at the bytes in the buffer and says, one step at a time, what to
//! forward, skip or replace; forwarded bytes are written straight from the
//! buffer. Only a packet that straddles two reads and must be seen whole (a
//! SUBSCRIBE, a PUBLISH header) is copied aside, into a per-connection
//! `carry` that is empty, and unallocated, between packets.
//!
//! Packets the proxy owes the client are written by the broker-to-client
//! direction when the broker's stream is between two packets, so they never
//! land inside one. While they are not yet written, the client-to-broker
//! direction stops reading, so a client cannot make moat queue without
//! bound.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::guard::{Session, Step, MAX_BUFFERED_PACKET};
use crate::pool::PollReadable;
use crate::relay::{give_buffer, take_buffer, Totals, BUF_SIZE};

/// How many bytes of the proxy's own packets may wait for the client before
/// the relay stops reading the client.
const MAX_PENDING_REPLIES: usize = 64 * 1024;

/// How an MQTT-aware relay ended.
#[derive(Debug)]
pub enum End {
    /// Both sides finished.
    Finished(Totals),
    /// The guard closed the connection, for this reason.
    Closed(&'static str, Totals),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Output waiting to be written.
enum Out {
    Idle,
    /// `buf[pos..end]`.
    Buf {
        pos: usize,
        end: usize,
    },
    Owned {
        data: Vec<u8>,
        pos: usize,
    },
}

struct Filter {
    dir: Dir,
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    carry: Vec<u8>,
    out: Out,
    read_done: bool,
    need_flush: bool,
    done: bool,
    bytes: u64,
    counter: Counter,
}

enum Progress {
    Pending,
    Done,
    Close(&'static str),
}

impl Filter {
    fn new(dir: Dir, counter: Counter, initial: Vec<u8>) -> Self {
        Self {
            dir,
            buf: None,
            start: 0,
            end: 0,
            carry: initial,
            out: Out::Idle,
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
        self.start = 0;
        self.end = 0;
    }

    fn sent(&mut self, n: usize) {
        self.bytes += n as u64;
        self.counter.inc_by(n as u64);
        self.need_flush = true;
    }

    /// Writes the pending output completely.
    fn poll_out<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        loop {
            let chunk: &[u8] = match &self.out {
                Out::Idle => return Poll::Ready(Ok(())),
                Out::Buf { pos, end } => match &self.buf {
                    Some(b) => &b[*pos..*end],
                    None => &[],
                },
                Out::Owned { data, pos } => &data[*pos..],
            };
            if chunk.is_empty() {
                self.out = Out::Idle;
                continue;
            }
            let n = ready!(Pin::new(&mut *w).poll_write(cx, chunk))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent(n);
            match &mut self.out {
                Out::Buf { pos, .. } | Out::Owned { pos, .. } => *pos += n,
                Out::Idle => {}
            }
        }
    }

    fn poll_flush<W: AsyncWrite + Unpin>(
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

    /// Consumes `n` bytes of input (from the carry if it is in use).
    fn consume(&mut self, n: usize) {
        if self.carry.is_empty() {
            self.start += n;
        } else {
            self.carry.drain(..n);
            if self.carry.is_empty() {
                self.carry = Vec::new();
            }
        }
    }

    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        session: &mut Session,
    ) -> Poll<io::Result<Progress>>
    where
        R: AsyncRead + PollReadable + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(Progress::Done));
        }
        loop {
            ready!(self.poll_out(cx, w))?;

            if self.dir == Dir::Down
                && session.at_client_boundary()
                && !session.to_client.is_empty()
            {
                self.out = Out::Owned {
                    data: std::mem::take(&mut session.to_client),
                    pos: 0,
                };
                continue;
            }
            if self.dir == Dir::Up && session.to_client.len() > MAX_PENDING_REPLIES {
                // Wait for the other direction to write our replies out.
                ready!(self.poll_flush(cx, w))?;
                return Poll::Ready(Ok(Progress::Pending));
            }

            // Decide on what we have.
            let have = if self.carry.is_empty() {
                self.end - self.start
            } else {
                self.carry.len()
            };
            if have > 0 {
                let input: &[u8] = if self.carry.is_empty() {
                    match &self.buf {
                        Some(b) => &b[self.start..self.end],
                        None => &[],
                    }
                } else {
                    &self.carry
                };
                let step = match self.dir {
                    Dir::Up => session.upstream(input),
                    Dir::Down => session.downstream(input),
                };
                match step {
                    Step::Forward(n) => {
                        if self.carry.is_empty() {
                            self.out = Out::Buf {
                                pos: self.start,
                                end: self.start + n,
                            };
                            self.start += n;
                        } else {
                            let data: Vec<u8> = self.carry.drain(..n).collect();
                            if self.carry.is_empty() {
                                self.carry = Vec::new();
                            }
                            self.out = Out::Owned { data, pos: 0 };
                        }
                        continue;
                    }
                    Step::Skip(n) => {
                        self.consume(n);
                        continue;
                    }
                    Step::Replace { consumed, bytes } => {
                        self.consume(consumed);
                        self.out = Out::Owned {
                            data: bytes,
                            pos: 0,
                        };
                        continue;
                    }
                    Step::Close(reason) => return Poll::Ready(Ok(Progress::Close(reason))),
                    Step::NeedMore => {
                        if self.carry.is_empty() {
                            // Keep the undecided bytes aside, so the buffer
                            // can go back to the pool while we wait.
                            if let Some(b) = &self.buf {
                                self.carry.extend_from_slice(&b[self.start..self.end]);
                            }
                        }
                        self.release();
                        if self.carry.len() > MAX_BUFFERED_PACKET + BUF_SIZE {
                            return Poll::Ready(Ok(Progress::Close("packet_too_large")));
                        }
                        if self.read_done {
                            // A truncated packet at the end: nothing to decide.
                            self.carry = Vec::new();
                        }
                    }
                }
            }

            if self.read_done {
                self.release();
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(Progress::Done));
            }

            if self.buf.is_none() {
                match r.poll_readable(cx) {
                    Poll::Pending => {
                        ready!(self.poll_flush(cx, w))?;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        self.buf = Some(take_buffer());
                        self.start = 0;
                        self.end = 0;
                    }
                }
            }
            let Some(buf) = self.buf.as_mut() else {
                continue;
            };
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    self.release();
                    ready!(self.poll_flush(cx, w))?;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_done = true;
                    } else if self.carry.is_empty() {
                        self.start = 0;
                        self.end = n;
                    } else {
                        self.carry.extend_from_slice(&buf[..n]);
                        self.start = 0;
                        self.end = 0;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.read_done = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        self.release();
    }
}

/// The MQTT-aware relay future.
pub struct MqttRelay<'a, C, B> {
    client: &'a mut C,
    backend: &'a mut B,
    session: Session,
    up: Filter,
    down: Filter,
    closing: Option<&'static str>,
}

/// Relays between `client` and `backend` with `session` deciding on every
/// packet. `pending` holds client bytes already read after the CONNECT.
pub fn relay<'a, C, B>(
    client: &'a mut C,
    backend: &'a mut B,
    session: Session,
    pending: Vec<u8>,
    to_backend: Counter,
    to_client: Counter,
) -> MqttRelay<'a, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    MqttRelay {
        client,
        backend,
        session,
        up: Filter::new(Dir::Up, to_backend, pending),
        down: Filter::new(Dir::Down, to_client, Vec::new()),
        closing: None,
    }
}

impl<C, B> crate::relay::Progress for MqttRelay<'_, C, B> {
    fn progress(&self) -> u64 {
        self.up.bytes + self.down.bytes
    }
}

impl<C, B> MqttRelay<'_, C, B> {
    fn totals(&self) -> Totals {
        Totals {
            to_backend: self.up.bytes,
            to_client: self.down.bytes,
        }
    }
}

impl<C, B> Future for MqttRelay<'_, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    type Output = io::Result<End>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(reason) = this.closing {
            // Write what we owe the client (unless the broker's stream is
            // inside a packet), then close the client side.
            if this.session.at_client_boundary() {
                ready!(this.down.poll_out(cx, this.client))?;
                if !this.session.to_client.is_empty() {
                    this.down.out = Out::Owned {
                        data: std::mem::take(&mut this.session.to_client),
                        pos: 0,
                    };
                    ready!(this.down.poll_out(cx, this.client))?;
                }
            }
            ready!(Pin::new(&mut *this.client).poll_shutdown(cx))?;
            return Poll::Ready(Ok(End::Closed(reason, this.totals())));
        }
        // Up may queue replies that Down writes, and Down writing them may
        // let Up read again; go round until neither moves.
        for _ in 0..4 {
            let queued = this.session.to_client.len();
            let up = this
                .up
                .poll(cx, this.client, this.backend, &mut this.session)?;
            if let Poll::Ready(Progress::Close(reason)) = up {
                this.closing = Some(reason);
                return Pin::new(this).poll(cx);
            }
            let down = this
                .down
                .poll(cx, this.backend, this.client, &mut this.session)?;
            if let Poll::Ready(Progress::Close(reason)) = down {
                this.closing = Some(reason);
                return Pin::new(this).poll(cx);
            }
            if this.up.done && this.down.done {
                return Poll::Ready(Ok(End::Finished(this.totals())));
            }
            let up_blocked = matches!(up, Poll::Ready(Progress::Pending));
            if !(up_blocked && this.session.to_client.len() < queued) {
                break;
            }
        }
        Poll::Pending
    }
}
