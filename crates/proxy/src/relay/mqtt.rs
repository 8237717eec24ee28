//! The MQTT pump: the byte pump's directions, with the guard deciding on
//! every packet.
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
use tokio::io::{AsyncRead, AsyncWrite};

use super::direction::{totals, Direction, Totals, BUF_SIZE};
use super::idle::Traffic;
use super::throttle::Throttle;
use crate::config::OnDeny;
use crate::guard::acl::ClientAcl;
use crate::guard::granted::Regranted;
use crate::guard::packets::{PacketGuard, SessionClose, Step, MAX_BUFFERED_PACKET};
use crate::pool::PollReadable;

/// How many bytes of the proxy's own packets may wait for the client before
/// the relay stops reading the client.
const MAX_PENDING_REPLIES: usize = 64 * 1024;

/// How an MQTT-aware relay ended.
#[derive(Debug)]
pub enum End {
    /// Both sides finished.
    Finished(Totals),
    /// The guard closed the connection, for this reason.
    Closed(SessionClose, Totals),
    /// The session was told to stop ([`MqttRelay::stop`]) and closed.
    Stopped(Totals),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
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

/// Where one direction stands after a poll.
enum Flow {
    /// Up waits for Down to write the replies the guard owes the client.
    Blocked,
    /// The direction is over.
    Done,
    /// The guard ends the session.
    Close(SessionClose),
}

/// What the guard made of the input at hand.
enum Decided {
    /// Output was queued or input consumed: go round again.
    Again,
    /// Read more.
    NeedInput,
    /// The guard ends the session.
    Close(SessionClose),
}

/// One direction of the MQTT pump: `buf[start..end]` is read and not yet
/// decided on, unless `carry` holds the undecided bytes instead.
struct Filter {
    way: Way,
    dir: Direction,
    start: usize,
    end: usize,
    carry: Vec<u8>,
    out: Out,
}

impl Filter {
    fn new(way: Way, counter: Counter, initial: Vec<u8>) -> Self {
        Self {
            way,
            dir: Direction::new(counter),
            start: 0,
            end: 0,
            carry: initial,
            out: Out::Idle,
        }
    }

    fn release(&mut self) {
        self.dir.release();
        self.start = 0;
        self.end = 0;
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
                Out::Buf { pos, end } => match &self.dir.buf {
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
            self.dir.sent(n);
            match &mut self.out {
                Out::Buf { pos, .. } | Out::Owned { pos, .. } => *pos += n,
                Out::Idle => {}
            }
        }
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

    /// Lets the guard decide on the input at hand, and queues or consumes
    /// what it says.
    fn decide(&mut self, guard: &mut PacketGuard) -> Decided {
        let input: &[u8] = if !self.carry.is_empty() {
            &self.carry
        } else {
            match &self.dir.buf {
                Some(b) if self.end > self.start => &b[self.start..self.end],
                _ => return Decided::NeedInput,
            }
        };
        let step = match self.way {
            Way::Up => guard.upstream(input),
            Way::Down => guard.downstream(input),
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
                Decided::Again
            }
            Step::Skip(n) => {
                self.consume(n);
                Decided::Again
            }
            Step::Replace { consumed, bytes } => {
                self.consume(consumed);
                self.out = Out::Owned {
                    data: bytes,
                    pos: 0,
                };
                Decided::Again
            }
            Step::Close(reason) => Decided::Close(reason),
            Step::NeedMore => self.keep_undecided(),
        }
    }

    /// The guard needs more bytes than are here: keep the undecided ones
    /// aside, so the buffer can go back to the pool while we wait.
    fn keep_undecided(&mut self) -> Decided {
        if self.carry.is_empty() {
            if let Some(b) = &self.dir.buf {
                self.carry.extend_from_slice(&b[self.start..self.end]);
            }
        }
        self.release();
        if self.carry.len() > MAX_BUFFERED_PACKET + BUF_SIZE {
            return Decided::Close(SessionClose::PacketTooLarge);
        }
        if self.dir.read_done {
            // A truncated packet at the end: nothing to decide.
            self.carry = Vec::new();
        }
        Decided::NeedInput
    }

    /// Bytes of output queued and not yet written.
    fn out_len(&self) -> usize {
        match &self.out {
            Out::Idle => 0,
            Out::Buf { pos, end } => end - pos,
            Out::Owned { data, pos } => data.len() - pos,
        }
    }

    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        (r, w): (&mut R, &mut W),
        guard: &mut PacketGuard,
        mut throttle: Option<&mut Throttle>,
    ) -> Poll<io::Result<Flow>>
    where
        R: AsyncRead + PollReadable + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.dir.done {
            return Poll::Ready(Ok(Flow::Done));
        }
        loop {
            // What the client sent waits here while its device is over
            // its rate, and no more is read from it.
            if let Some(t) = throttle.as_deref_mut() {
                if ready!(t.poll_ready(cx)).is_err() {
                    guard.rate_exceeded();
                    return Poll::Ready(Ok(Flow::Close(SessionClose::RateExceeded)));
                }
            }
            ready!(self.poll_out(cx, w))?;
            if self.way == Way::Down && guard.at_client_boundary() && !guard.to_client.is_empty() {
                self.out = Out::Owned {
                    data: std::mem::take(&mut guard.to_client),
                    pos: 0,
                };
                continue;
            }
            if self.way == Way::Up && guard.to_client.len() > MAX_PENDING_REPLIES {
                // Wait for the other direction to write our replies out.
                ready!(self.dir.poll_flush(cx, w))?;
                return Poll::Ready(Ok(Flow::Blocked));
            }
            let publishes = guard.publishes();
            match self.decide(guard) {
                Decided::Again => {
                    if let Some(t) = throttle.as_deref_mut() {
                        t.charge((guard.publishes() - publishes) as u32, self.out_len());
                    }
                    continue;
                }
                Decided::Close(reason) => return Poll::Ready(Ok(Flow::Close(reason))),
                Decided::NeedInput => {}
            }
            if self.dir.read_done {
                self.release();
                ready!(self.dir.poll_finish(cx, w))?;
                return Poll::Ready(Ok(Flow::Done));
            }
            if let Some(n) = ready!(self.dir.poll_read(cx, r, w))? {
                if self.carry.is_empty() {
                    (self.start, self.end) = (0, n);
                } else if let Some(buf) = &self.dir.buf {
                    self.carry.extend_from_slice(&buf[..n]);
                    (self.start, self.end) = (0, 0);
                }
            }
        }
    }
}

/// The MQTT-aware relay future.
pub struct MqttRelay<'a, C, B> {
    client: &'a mut C,
    backend: &'a mut B,
    guard: PacketGuard,
    up: Filter,
    down: Filter,
    closing: Option<SessionClose>,
    stopping: bool,
    /// Boxed: only sessions with rate limits pay for it.
    throttle: Option<Box<Throttle>>,
}

/// Relays between `client` and `backend` with `guard` deciding on every
/// packet. `pending` holds client bytes already read after the CONNECT.
pub fn relay<'a, C, B>(
    client: &'a mut C,
    backend: &'a mut B,
    guard: PacketGuard,
    pending: Vec<u8>,
    (to_backend, to_client): (Counter, Counter),
    throttle: Option<Box<Throttle>>,
) -> MqttRelay<'a, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    MqttRelay {
        client,
        backend,
        guard,
        up: Filter::new(Way::Up, to_backend, pending),
        down: Filter::new(Way::Down, to_client, Vec::new()),
        closing: None,
        stopping: false,
        throttle,
    }
}

impl<C, B> Traffic for MqttRelay<'_, C, B> {
    fn moved(&self) -> u64 {
        let t = self.totals();
        t.to_backend + t.to_client
    }
}

impl<C, B> MqttRelay<'_, C, B> {
    fn totals(&self) -> Totals {
        totals(&self.up.dir, &self.down.dir)
    }
}

impl<C, B> MqttRelay<'_, C, B>
where
    C: AsyncRead + AsyncWrite + PollReadable + Unpin,
    B: AsyncRead + AsyncWrite + PollReadable + Unpin,
{
    /// Gives the guard a reloaded ACL and limits for the packets that
    /// follow ([`PacketGuard::reload_policy`]).
    pub fn reload_policy(
        &mut self,
        acl: ClientAcl,
        on_deny: OnDeny,
        max_packet_size: u32,
    ) -> Regranted {
        self.guard.reload_policy(acl, on_deny, max_packet_size)
    }

    /// Tells the relay to end the session: a DISCONNECT with `code` goes
    /// to an MQTT 5 client (older versions have none from the server), then
    /// the client side is closed. The relay then resolves to
    /// [`End::Stopped`].
    pub fn stop(&mut self, code: u8) {
        if !self.stopping && self.closing.is_none() {
            moat_mqtt::ack::disconnect(self.guard.version(), code, &mut self.guard.to_client);
        }
        self.stopping = true;
    }

    /// Writes what we owe the client (unless the broker's stream is inside
    /// a packet), then closes the client side.
    fn poll_close(&mut self, cx: &mut Context<'_>, reason: SessionClose) -> Poll<io::Result<End>> {
        ready!(self.poll_last_words(cx))?;
        Poll::Ready(Ok(End::Closed(reason, self.totals())))
    }

    /// Writes what we owe the client and closes the client side, as
    /// [`Self::poll_close`] does.
    fn poll_last_words(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.guard.at_client_boundary() {
            ready!(self.down.poll_out(cx, self.client))?;
            if !self.guard.to_client.is_empty() {
                self.down.out = Out::Owned {
                    data: std::mem::take(&mut self.guard.to_client),
                    pos: 0,
                };
                ready!(self.down.poll_out(cx, self.client))?;
            }
        }
        ready!(Pin::new(&mut *self.client).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
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
            return this.poll_close(cx, reason);
        }
        if this.stopping {
            ready!(this.poll_last_words(cx))?;
            return Poll::Ready(Ok(End::Stopped(this.totals())));
        }
        // Up may queue replies that Down writes, and Down writing them may
        // let Up read again; go round until neither moves.
        for _ in 0..4 {
            let queued = this.guard.to_client.len();
            let up = this.up.poll(
                cx,
                (&mut *this.client, &mut *this.backend),
                &mut this.guard,
                this.throttle.as_deref_mut(),
            )?;
            if let Poll::Ready(Flow::Close(reason)) = up {
                this.closing = Some(reason);
                return this.poll_close(cx, reason);
            }
            let down = this.down.poll(
                cx,
                (&mut *this.backend, &mut *this.client),
                &mut this.guard,
                None,
            )?;
            if let Poll::Ready(Flow::Close(reason)) = down {
                this.closing = Some(reason);
                return this.poll_close(cx, reason);
            }
            if this.up.dir.done && this.down.dir.done {
                return Poll::Ready(Ok(End::Finished(this.totals())));
            }
            let up_blocked = matches!(up, Poll::Ready(Flow::Blocked));
            if !(up_blocked && this.guard.to_client.len() < queued) {
                break;
            }
        }
        Poll::Pending
    }
}
