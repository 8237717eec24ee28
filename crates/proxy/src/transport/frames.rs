//! MQTT inside WebSocket binary frames (RFC 6455), seen by the sessions as
//! the same byte stream raw MQTT over TLS is: [`WsStream`] unwraps the
//! client's frames into bytes and wraps bytes for the client into frames.
//!
//! MQTT over WebSockets carries a byte stream: a packet may be split
//! across frames and a frame may hold several packets (MQTT 5.0 §6), so
//! frame boundaries mean nothing here and the guard reads packets exactly
//! as on raw TLS. Frame headers are parsed and written by `tungstenite`;
//! its message layer (`WebSocket`) is not used because it keeps a read
//! buffer and a write buffer for the connection's whole life, and an idle
//! device here must hold no buffer (docs/benchmarks.md, idle memory). What
//! is written here is the state between headers: how much of a frame's
//! payload is left, its mask (applied by hand: tungstenite's is private
//! and cannot resume mid-frame), and the control frames owed.
//!
//! Pings are answered with pongs, a close frame with a close frame, then
//! the read side ends. A text frame, an unmasked frame, reserved bits or
//! opcodes, a fragmented or oversized control frame, a frame or message
//! over the limits, or a bad close frame end the connection with the close
//! code RFC 6455 gives for it, and read as an [`io::ErrorKind::InvalidData`]
//! error wrapping a [`ProtocolError`].

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use std::sync::Arc;

use crate::metrics::reason::{reasons, ByReason};
use crate::pool::{self, FreeList, PollReadable};

/// The most payload moat puts in one frame to the client: one frame per
/// TLS record (16 KiB of plaintext, less the 4-byte header).
const MAX_OUT_PAYLOAD: usize = 16 * 1024 - 4;

/// Payload of a control frame at its largest (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

thread_local! {
    static OUT: FreeList<Vec<u8>> = const { FreeList::new() };
}

reasons! {
    /// Why moat ended a WebSocket session (`moat_websocket_closed_total`).
    pub enum Violation {
        /// A text frame: MQTT travels in binary frames only (close 1003).
        TextFrame => "text_frame",
        /// A client frame without a mask (close 1002).
        Unmasked => "unmasked",
        /// Reserved bits or a reserved opcode (close 1002).
        Reserved => "reserved",
        /// A control frame fragmented or over 125 bytes (close 1002).
        BadControl => "bad_control",
        /// A continuation with no message, or a new message inside one
        /// (close 1002).
        BadContinuation => "bad_continuation",
        /// A frame over `websocket.max_frame_size` (close 1009).
        FrameTooBig => "frame_too_big",
        /// A message over `websocket.max_message_size` (close 1009).
        MessageTooBig => "message_too_big",
        /// A close frame with a 1-byte body, a reserved code or a reason
        /// that is not UTF-8 (close 1002 or 1007).
        BadClose => "bad_close",
    }
}

impl Violation {
    /// The close code sent for it.
    pub fn close_code(self) -> u16 {
        match self {
            Self::TextFrame => 1003,
            Self::FrameTooBig | Self::MessageTooBig => 1009,
            _ => 1002,
        }
    }
}

/// The error a violation reads as, inside an [`io::Error`].
#[derive(Debug, Clone, Copy)]
pub struct ProtocolError(pub Violation);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.0 {
            Violation::TextFrame => "the client sent a text frame; MQTT needs binary frames",
            Violation::Unmasked => "the client sent an unmasked frame",
            Violation::Reserved => "the client used reserved bits or a reserved opcode",
            Violation::BadControl => "the client sent a fragmented or oversized control frame",
            Violation::BadContinuation => "the client broke message fragmentation",
            Violation::FrameTooBig => "the client sent a frame over websocket.max_frame_size",
            Violation::MessageTooBig => "the client sent a message over websocket.max_message_size",
            Violation::BadClose => "the client sent a malformed close frame",
        };
        write!(f, "{what} (WebSocket close {})", self.0.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// The limits a listener's `websocket:` sets, and where violations are
/// counted (`moat_websocket_closed_total`, shared by the listener).
pub struct Limits {
    /// Largest frame payload accepted.
    pub max_frame: u64,
    /// Largest message (frames up to the final one) accepted.
    pub max_message: u64,
    /// One counter per violation.
    pub violations: Arc<ByReason<Violation>>,
}

/// Where the reader is in the client's frames.
enum Read {
    /// Between frames: `have` bytes of the next header are in `head`.
    Header { head: [u8; 14], have: u8 },
    /// In a data frame: `left` payload bytes to go, unmasked with `mask`
    /// from its byte `at`.
    Data { left: u64, mask: [u8; 4], at: u8 },
    /// In a control frame; its payload is gathered only while it lasts.
    Control(Box<ControlIn>),
    /// The client's close frame came, or a violation: reads end.
    Closed,
}

impl Read {
    const fn header() -> Self {
        Read::Header {
            head: [0; 14],
            have: 0,
        }
    }
}

/// A control frame being read.
struct ControlIn {
    op: Control,
    mask: [u8; 4],
    len: usize,
    have: usize,
    payload: [u8; MAX_CONTROL],
}

/// A byte stream over a client's WebSocket frames (see the module
/// documentation).
pub struct WsStream<S> {
    inner: S,
    /// Bytes the client sent behind its upgrade request, read first.
    early: Bytes,
    read: Read,
    /// Payload bytes of the message in progress when its last frame was
    /// not final (the next frame must be a continuation).
    message: Option<u64>,
    limits: Limits,
    /// A frame to the client not yet taken by `inner`, and how much of it
    /// was; in a pooled buffer held only while it waits.
    out: Vec<u8>,
    out_at: usize,
    /// A pong owed, held until `out` is free.
    pong: Option<Box<([u8; MAX_CONTROL], usize)>>,
    /// The close code owed (a reply, a violation, or moat's own close).
    close: Option<u16>,
    /// The close frame went into `out`: nothing more may be sent.
    close_sent: bool,
    /// What ended the reads, reported once the close frame is sent.
    violation: Option<Violation>,
}

impl<S> WsStream<S> {
    /// A stream over `inner`, after the upgrade; `early` are the bytes the
    /// client sent behind its request (the start of its first frames).
    pub fn new(inner: S, early: Bytes, limits: Limits) -> Self {
        Self {
            inner,
            early,
            read: Read::header(),
            message: None,
            limits,
            out: Vec::new(),
            out_at: 0,
            pong: None,
            close: None,
            close_sent: false,
            violation: None,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether a buffer is held (for the idle-memory tests).
    #[cfg(test)]
    pub(super) fn holds_buffer(&self) -> bool {
        self.out.capacity() > 0 || self.pong.is_some() || matches!(self.read, Read::Control(_))
    }

    /// Decides on a frame header: what to read next, or the violation.
    fn start(&mut self, h: FrameHeader, len: u64) -> Result<Read, Violation> {
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(Violation::Reserved);
        }
        let mask = h.mask.ok_or(Violation::Unmasked)?;
        match h.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Err(Violation::Reserved)
            }
            OpCode::Control(op) => {
                if !h.is_final || len > MAX_CONTROL as u64 {
                    return Err(Violation::BadControl);
                }
                Ok(Read::Control(Box::new(ControlIn {
                    op,
                    mask,
                    len: len as usize,
                    have: 0,
                    payload: [0; MAX_CONTROL],
                })))
            }
            OpCode::Data(Data::Text) => Err(Violation::TextFrame),
            OpCode::Data(kind) => {
                let so_far = match (kind, self.message) {
                    (Data::Binary, None) => 0,
                    (Data::Continue, Some(n)) => n,
                    _ => return Err(Violation::BadContinuation),
                };
                if len > self.limits.max_frame {
                    return Err(Violation::FrameTooBig);
                }
                let total = so_far.saturating_add(len);
                if total > self.limits.max_message {
                    return Err(Violation::MessageTooBig);
                }
                self.message = (!h.is_final).then_some(total);
                Ok(Read::Data {
                    left: len,
                    mask,
                    at: 0,
                })
            }
        }
    }

    /// Acts on a complete control frame.
    fn control(&mut self, c: &mut ControlIn) -> Result<(), Violation> {
        let payload = &mut c.payload[..c.len];
        unmask(payload, c.mask, 0);
        match c.op {
            Control::Ping => {
                let mut pong = Box::new(([0; MAX_CONTROL], c.len));
                pong.0[..c.len].copy_from_slice(payload);
                self.pong = Some(pong);
                Ok(())
            }
            Control::Pong => Ok(()),
            Control::Close => {
                let code = close_reply(payload)?;
                self.close.get_or_insert(code);
                self.read = Read::Closed;
                Ok(())
            }
            Control::Reserved(_) => Err(Violation::Reserved),
        }
    }

    /// Ends the reads on `v`: the close frame saying why is owed.
    fn fail(&mut self, v: Violation) {
        self.limits.violations.inc(v);
        self.violation = Some(v);
        self.close.get_or_insert(v.close_code());
        self.read = Read::Closed;
    }
}

/// The code to answer a client's close frame with (its own, as RFC 6455
/// §5.5.1 suggests; 1000 when it gave none), or why it is malformed.
fn close_reply(payload: &[u8]) -> Result<u16, Violation> {
    match payload {
        [] => Ok(1000),
        [_] => Err(Violation::BadClose),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !CloseCode::from(code).is_allowed() || std::str::from_utf8(reason).is_err() {
                return Err(Violation::BadClose);
            }
            Ok(code)
        }
    }
}

/// XORs `buf` with `mask`, `buf[0]` being byte `at` of the payload.
/// Hand-written: tungstenite's `apply_mask` is private to it and starts
/// at payload byte 0, and a frame's payload arrives here in pieces.
fn unmask(buf: &mut [u8], mask: [u8; 4], at: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(i + at as usize) & 3];
    }
}

/// The header's length so far: 2 bytes, then the extended length and the
/// mask key the second byte announces.
fn header_len(head: &[u8]) -> usize {
    match head {
        [_, second, ..] => {
            let ext = match second & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            2 + ext + if second & 0x80 != 0 { 4 } else { 0 }
        }
        _ => 2,
    }
}

/// Reads into `dst` from `early`, else from `inner`: the count read (0
/// at EOF).
fn poll_read_into<S: AsyncRead + Unpin>(
    (inner, early): (&mut S, &mut Bytes),
    cx: &mut Context<'_>,
    dst: &mut [u8],
) -> Poll<io::Result<usize>> {
    if !early.is_empty() {
        let n = dst.len().min(early.len());
        dst[..n].copy_from_slice(&early.split_to(n));
        return Poll::Ready(Ok(n));
    }
    let mut rb = ReadBuf::new(dst);
    ready!(Pin::new(inner).poll_read(cx, &mut rb))?;
    Poll::Ready(Ok(rb.filled().len()))
}

/// The end of a frame's bytes before it was complete.
fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the client closed the connection in the middle of a WebSocket frame",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Hands `out` to `inner`; ready once it is all taken (or there was
    /// none), and the buffer is back in the pool.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        if self.out.capacity() > 0 {
            let mut buf = std::mem::take(&mut self.out);
            buf.clear();
            pool::give(&OUT, buf);
            self.out_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Puts one frame (header, then `payload`) in `out`, which is free.
    fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut out = pool::take(&OUT).unwrap_or_else(|| Vec::with_capacity(16 * 1024));
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        // Writing to a Vec cannot fail.
        let _ = header.format(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        self.out = out;
        self.out_at = 0;
    }

    /// Sends the control frames owed: a pong, then a close.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_push(cx))?;
        if let Some(pong) = self.pong.take() {
            if !self.close_sent {
                self.frame(OpCode::Control(Control::Pong), &pong.0[..pong.1]);
                ready!(self.poll_push(cx))?;
            }
        }
        if let (Some(code), false) = (self.close, self.close_sent) {
            self.close_sent = true;
            self.frame(OpCode::Control(Control::Close), &code.to_be_bytes());
            ready!(self.poll_push(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the rest of the header being read; a new state once it is
    /// complete.
    fn poll_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<()>>> {
        let Read::Header { head, have } = &mut self.read else {
            return Poll::Ready(Ok(Some(())));
        };
        let need = header_len(&head[..*have as usize]);
        if (*have as usize) < need {
            let n = ready!(poll_read_into(
                (&mut self.inner, &mut self.early),
                cx,
                &mut head[*have as usize..need]
            ))?;
            if n == 0 {
                // A clean end between frames (the TLS layer says whether
                // close_notify came); in a header, a cut.
                return Poll::Ready(if *have == 0 {
                    Ok(None)
                } else {
                    Err(cut_short())
                });
            }
            *have += n as u8;
            return Poll::Ready(Ok(Some(())));
        }
        let parsed = FrameHeader::parse(&mut Cursor::new(&head[..need]));
        let next = match parsed {
            Ok(Some((h, len))) => self.start(h, len),
            _ => Err(Violation::Reserved),
        };
        match next {
            Ok(next) => self.read = next,
            Err(v) => self.fail(v),
        }
        Poll::Ready(Ok(Some(())))
    }

    /// Reads the rest of the control frame being read.
    fn poll_control_in(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Read::Control(c) = &mut self.read else {
            return Poll::Ready(Ok(()));
        };
        if c.have < c.len {
            let (have, len) = (c.have, c.len);
            let n = ready!(poll_read_into(
                (&mut self.inner, &mut self.early),
                cx,
                &mut c.payload[have..len]
            ))?;
            if n == 0 {
                return Poll::Ready(Err(cut_short()));
            }
            c.have += n;
            return Poll::Ready(Ok(()));
        }
        let Read::Control(mut c) = std::mem::replace(&mut self.read, Read::header()) else {
            unreachable!("matched above");
        };
        if let Err(v) = self.control(&mut c) {
            self.fail(v);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_control(cx))?;
            match &mut this.read {
                Read::Closed => {
                    return Poll::Ready(match this.violation {
                        Some(v) => {
                            Err(io::Error::new(io::ErrorKind::InvalidData, ProtocolError(v)))
                        }
                        None => Ok(()),
                    })
                }
                Read::Header { .. } => {
                    if ready!(this.poll_header(cx))?.is_none() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Read::Control(_) => ready!(this.poll_control_in(cx))?,
                Read::Data { left: 0, .. } => this.read = Read::header(),
                Read::Data { left, mask, at } => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let max = buf
                        .remaining()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let dst = &mut buf.initialize_unfilled_to(max)[..max];
                    let n = ready!(poll_read_into((&mut this.inner, &mut this.early), cx, dst))?;
                    if n == 0 {
                        return Poll::Ready(Err(cut_short()));
                    }
                    unmask(&mut dst[..n], *mask, *at);
                    *at = ((*at as usize + n) & 3) as u8;
                    *left -= n as u64;
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    /// Takes up to one frame's worth of `data` into a frame; ready as soon
    /// as the previous frame has been taken by the TLS layer.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_control(cx))?;
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebSocket session is closed",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_OUT_PAYLOAD);
        this.frame(OpCode::Data(Data::Binary), &data[..n]);
        // What `inner` does not take now goes with the next call.
        if let Poll::Ready(Err(e)) = this.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_control(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Sends a close frame (1000, unless one is owed already), then shuts
    /// the TLS session down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.close.get_or_insert(1000);
        ready!(this.poll_control(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + PollReadable + Unpin> PollReadable for WsStream<S> {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A frame waiting for the TLS layer moves whenever the connection
        // is polled, as the TLS layer's own queue does.
        if let Poll::Ready(Err(e)) = self.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        let owed = !self.early.is_empty()
            || self.pong.is_some()
            || (self.close.is_some() && !self.close_sent);
        if owed || matches!(self.read, Read::Closed | Read::Control(_)) {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_readable(cx)
    }
}

#[cfg(test)]
mod tests;
