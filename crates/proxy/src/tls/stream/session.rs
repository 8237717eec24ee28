//! [`TlsStream`]: one client's TLS session over its TCP socket, on
//! rustls' unbuffered API, holding no buffer while idle.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ServerConfig};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::pending::{deliver, poll_fill, write_with, Pending, BUF_CAPACITY, MAX_HANDSHAKE_BUFFER};
use crate::pool::PollReadable;

/// The most plaintext encrypted by one write: one full record.
const MAX_WRITE: usize = 16 * 1024;

/// Turns a rustls error into the I/O error tokio-rustls would return.
pub(super) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn encode_error(e: EncodeError) -> Option<InsufficientSizeError> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s),
        _ => None,
    }
}

fn encrypt_error(e: EncryptError) -> Option<InsufficientSizeError> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s),
        _ => None,
    }
}

/// A server-side TLS stream over TCP (see the module documentation).
pub struct TlsStream {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed: a partial record, at rest.
    incoming: Pending,
    /// Plaintext decrypted and not yet read.
    plaintext: Pending,
    /// Ciphertext not yet sent.
    outgoing: Pending,
    /// The client sent close_notify: reads end cleanly.
    peer_closed: bool,
    /// The socket reached EOF.
    tcp_eof: bool,
    /// close_notify has been queued.
    close_queued: bool,
}

impl TlsStream {
    /// A session for `io` whose received bytes so far (the ClientHello,
    /// and whatever came after it) are `received`.
    pub(super) fn new(
        io: TcpStream,
        config: Arc<ServerConfig>,
        received: Pending,
    ) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        Ok(Self {
            io,
            conn,
            incoming: received,
            plaintext: Pending::default(),
            outgoing: Pending::default(),
            peer_closed: false,
            tcp_eof: false,
            close_queued: false,
        })
    }

    /// Whether each of the three buffers (received, decrypted, to send) is
    /// held.
    #[cfg(test)]
    pub(super) fn holds_buffers(&self) -> [bool; 3] {
        [
            self.incoming.holds_buffer(),
            self.plaintext.holds_buffer(),
            self.outgoing.holds_buffer(),
        ]
    }

    /// What the handshake negotiated, and the client's certificates.
    pub fn connection(&self) -> &CommonState {
        &self.conn
    }

    pub(super) async fn handshake(&mut self) -> io::Result<()> {
        loop {
            if let Err(e) = self.process(None, &[], false) {
                let _ = poll_fn(|cx| self.poll_send(cx)).await;
                return Err(e);
            }
            poll_fn(|cx| self.poll_send(cx)).await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            if self.peer_closed {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during the TLS handshake",
                ));
            }
            let n =
                poll_fn(|cx| poll_fill(&mut self.io, &mut self.incoming, MAX_HANDSHAKE_BUFFER, cx))
                    .await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                ));
            }
        }
    }

    /// Lets rustls handle every complete record received so far. Decrypted
    /// data goes to `read` while it has room, then to `self.plaintext`;
    /// records rustls wants sent go to `self.outgoing`. Then, once rustls
    /// allows application data, encrypts (a record's worth of) `write` and
    /// returns how much of it, and queues close_notify if `close`.
    fn process(
        &mut self,
        mut read: Option<&mut ReadBuf<'_>>,
        write: &[u8],
        close: bool,
    ) -> io::Result<usize> {
        let mut written = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(self.incoming.data_mut());
            let stop = match state {
                Err(e) => {
                    self.incoming.consume(discard);
                    self.queue_alerts();
                    return Err(tls_error(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut failed = None;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                deliver(record.payload, &mut read, &mut self.plaintext);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        self.incoming.consume(discard);
                        return Err(tls_error(e));
                    }
                    false
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    write_with(self.outgoing.vec(), 1024, |out| {
                        data.encode(out).map_err(encode_error)
                    })?;
                    false
                }
                // The encoded bytes wait in `outgoing`, ahead of anything
                // encrypted later, and go out with it.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    false
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    true
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    if !write.is_empty() {
                        let n = write.len().min(MAX_WRITE);
                        write_with(self.outgoing.vec(), n + 64, |out| {
                            traffic.encrypt(&write[..n], out).map_err(encrypt_error)
                        })?;
                        written = n;
                    }
                    if close && !self.close_queued {
                        write_with(self.outgoing.vec(), 64, |out| {
                            traffic.queue_close_notify(out).map_err(encrypt_error)
                        })?;
                        self.close_queued = true;
                    }
                    true
                }
                // moat's configurations accept no early data, so rustls
                // never offers it; and anything newer than this code knows
                // is left for the next call.
                Ok(_) => true,
            };
            self.incoming.consume(discard);
            if stop {
                return Ok(written);
            }
        }
    }

    /// After an error, queues the alert rustls wants the client to see.
    fn queue_alerts(&mut self) {
        loop {
            // The same received bytes as before, never an empty slice:
            // rustls may still point into them for a handshake message it
            // was assembling (and panics if they are gone).
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(self.incoming.data_mut());
            let more = match state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    write_with(self.outgoing.vec(), 64, |out| {
                        data.encode(out).map_err(encode_error)
                    })
                    .is_ok()
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                _ => false,
            };
            self.incoming.consume(discard);
            if !more {
                return;
            }
        }
    }

    /// Sends what is queued; ready once all of it is with the kernel.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_queued(cx, false)
    }

    /// Sends what is queued; with `before_fin`, every write carries
    /// `MSG_MORE`: the kernel holds the last segment back, and the FIN of
    /// the shutdown that follows at once leaves in it. close_notify and FIN
    /// are one packet instead of two, for moat and for the device's radio
    /// (docs/benchmarks.md, "What moved the numbers").
    fn poll_send_queued(&mut self, cx: &mut Context<'_>, before_fin: bool) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = if before_fin {
                ready!(self.poll_write_more(cx))?
            } else {
                ready!(Pin::new(&mut self.io).poll_write(cx, self.outgoing.data()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.consume(n);
        }
        // Nothing waits: a buffer still held (empty) goes back.
        self.outgoing.release();
        Poll::Ready(Ok(()))
    }

    /// One write of the queued bytes with `MSG_MORE`. Neither tokio nor
    /// socket2 sends with flags on an async socket, so the write readiness
    /// is driven here, as tokio's `poll_write` does.
    fn poll_write_more(&self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_write_ready(cx))?;
            let sent = self.io.try_io(tokio::io::Interest::WRITABLE, || {
                socket2::SockRef::from(&self.io)
                    .send_with_flags(self.outgoing.data(), libc::MSG_MORE | libc::MSG_NOSIGNAL)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    /// Sends what is queued as far as the socket takes it now, without
    /// waiting; the task is woken when the socket has room again.
    fn send_queued(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.poll_send(cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// [`Self::process`] for writers: a record decrypted on the way is
    /// kept for the reader, whose task is woken for it, and an alert after
    /// an error is sent as far as the socket takes it.
    fn process_for_write(
        &mut self,
        cx: &mut Context<'_>,
        write: &[u8],
        close: bool,
    ) -> io::Result<usize> {
        let had_plaintext = !self.plaintext.is_empty();
        let result = self.process(None, write, close);
        if result.is_err() {
            let _ = self.send_queued(cx);
        }
        if !had_plaintext && !self.plaintext.is_empty() {
            cx.waker().wake_by_ref();
        }
        result
    }
}

impl TlsStream {
    /// The first byte of plaintext from the client, left unread (for the
    /// transport choice on a port that serves raw MQTT and WebSockets);
    /// `None` when the session ended first.
    pub async fn peek_first(&mut self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.plaintext.data().first() {
            return Ok(Some(b));
        }
        let mut one = [0u8; 1];
        if tokio::io::AsyncReadExt::read(self, &mut one).await? == 0 {
            return Ok(None);
        }
        // Back in front of whatever else the record held.
        self.plaintext.compact();
        self.plaintext.vec().insert(0, one[0]);
        Ok(Some(one[0]))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let data = this.plaintext.data();
                let n = data.len().min(buf.remaining());
                buf.put_slice(&data[..n]);
                this.plaintext.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.tcp_eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection without sending TLS close_notify",
                )));
            }
            let before = buf.filled().len();
            if let Err(e) = this.process(Some(buf), &[], false) {
                let _ = this.send_queued(cx);
                return Poll::Ready(Err(e));
            }
            // A reply rustls owes the client (a key update) goes out now.
            this.send_queued(cx)?;
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            if !this.plaintext.is_empty() || this.peer_closed {
                continue;
            }
            let limit = if this.conn.is_handshaking() {
                MAX_HANDSHAKE_BUFFER
            } else {
                BUF_CAPACITY
            };
            if ready!(poll_fill(&mut this.io, &mut this.incoming, limit, cx))? == 0 {
                this.tcp_eof = true;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was encrypted before goes out first: at most one write's
        // worth of ciphertext waits per connection.
        ready!(this.poll_send(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = this.process_for_write(cx, data, false)?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session is closed",
            )));
        }
        this.send_queued(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            // A session that already failed has no close_notify to send;
            // the TCP shutdown below still happens.
            let _ = this.process_for_write(cx, &[], true);
            this.close_queued = true;
        }
        ready!(this.poll_send_queued(cx, true))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl PollReadable for TlsStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Whatever polls the connection also moves what rustls queued.
        self.send_queued(cx)?;
        if !self.plaintext.is_empty() || self.peer_closed || self.tcp_eof {
            return Poll::Ready(Ok(()));
        }
        self.io.poll_read_ready(cx)
    }
}
