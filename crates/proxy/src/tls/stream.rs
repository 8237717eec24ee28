//! The TLS session of one client connection, over its TCP socket, holding no
//! buffer while the connection is idle.
//!
//! This is hand-written instead of using tokio-rustls. tokio-rustls drives
//! rustls' buffered `ServerConnection`, which keeps a receive buffer of at
//! least 4 KiB for the connection's whole life: rustls sizes it before every
//! socket read and never gives it back. For a fleet of mostly idle devices
//! that buffer was 40% of moat's memory per connection (docs/benchmarks.md,
//! idle memory). Here rustls' unbuffered API does all of the TLS work, and
//! this module only owns the bytes: ciphertext received but not yet
//! processed, plaintext decrypted but not yet read, and ciphertext not yet
//! sent. Each lives in a buffer borrowed from a per-thread pool only while it
//! holds bytes, so an idle connection holds rustls' state and nothing else.
//!
//! [`accept`] reads the ClientHello, so that the caller can pick the
//! configuration by SNI or by the client's suites (as rustls' `Acceptor`
//! allows), and [`StartHandshake::finish`] completes the handshake. The
//! resulting [`TlsStream`] behaves as tokio-rustls' stream does: a TCP end
//! without close_notify reads as [`io::ErrorKind::UnexpectedEof`], shutdown
//! sends close_notify, and rustls errors come back as
//! [`io::ErrorKind::InvalidData`] errors wrapping the [`rustls::Error`].

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{Accepted, Acceptor, ClientHello, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::pool::{self, FreeList};
use crate::relay::PollReadable;

/// Capacity of a pooled buffer: one TLS record at its largest (16 KiB of
/// plaintext, up to 256 bytes of expansion and a 5-byte header) with room
/// for the start of the next.
const BUF_CAPACITY: usize = 18 * 1024;

/// The most received bytes held while a handshake is in progress: a
/// handshake message at its largest (64 KiB, as rustls' own limit), split
/// over records, plus one more record.
const MAX_HANDSHAKE_BUFFER: usize = 0xffff + BUF_CAPACITY + 16 * 5;

/// The most plaintext encrypted by one write: one full record.
const MAX_WRITE: usize = 16 * 1024;

thread_local! {
    static POOL: FreeList<Vec<u8>> = const { FreeList::new() };
}

/// Bytes waiting, in a buffer borrowed from the pool only while there are
/// some.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    pos: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.pos..]
    }

    /// Drops `n` bytes from the front; an emptied buffer goes back.
    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.is_empty() {
            self.release();
        }
    }

    /// Gives the buffer back to the pool. One that grew past the usual
    /// size (a large handshake message) is freed instead.
    fn release(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        self.pos = 0;
        if buf.capacity() == BUF_CAPACITY {
            buf.clear();
            pool::give(&POOL, buf);
        }
    }

    /// The buffer to append to, borrowed from the pool if there is none.
    fn vec(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool::take(&POOL).unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY));
        }
        &mut self.buf
    }

    /// Moves the waiting bytes to the front, to make room behind them.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Whether a buffer is held (empty or not).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

/// Turns a rustls error into the I/O error tokio-rustls would return.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Lets rustls write into spare room at the end of `out`: `guess` bytes
/// first, and as many as it says it needs if that was too few.
fn write_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(InsufficientSizeError { required_size })) if required_size > room => {
                room = required_size;
            }
            Err(_) => {
                out.truncate(start);
                return Err(io::Error::other(
                    "rustls refused to encode a TLS record (keys exhausted or state lost)",
                ));
            }
        }
    }
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

/// Reads what the socket has into `into`, holding at most `limit` bytes.
/// Ready with 0 at EOF. While the socket has nothing, an empty `into` gives
/// its buffer back.
///
/// Through tokio's `poll_read` rather than `try_read`: a read that does not
/// fill the buffer tells tokio the socket is drained, which saves the
/// extra read that would only say "would block" after every message.
fn poll_fill(
    io: &mut TcpStream,
    into: &mut Pending,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    into.compact();
    let buf = into.vec();
    if buf.len() >= limit {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS handshake message larger than 64 KiB",
        )));
    }
    if buf.len() == buf.capacity() {
        buf.reserve_exact(BUF_CAPACITY.min(limit - buf.len()));
    }
    let read = tokio_util::io::poll_read_buf(Pin::new(io), cx, buf);
    if read.is_pending() && into.is_empty() {
        into.release();
    }
    read
}

/// Puts a decrypted record's bytes in the reader's buffer while it has
/// room (and nothing is waiting ahead of them), the rest in `rest`.
fn deliver(mut payload: &[u8], read: &mut Option<&mut ReadBuf<'_>>, rest: &mut Pending) {
    if rest.is_empty() {
        if let Some(buf) = read {
            let n = payload.len().min(buf.remaining());
            buf.put_slice(&payload[..n]);
            payload = &payload[n..];
        }
    }
    if !payload.is_empty() {
        rest.vec().extend_from_slice(payload);
    }
}

/// A connection whose ClientHello has been read. The caller looks at it,
/// picks the configuration, and finishes the handshake.
pub struct StartHandshake {
    io: TcpStream,
    received: Pending,
    accepted: Accepted,
}

/// Reads a connection's ClientHello. A malformed one gets the alert rustls
/// chooses and an error.
pub async fn accept(mut io: TcpStream) -> io::Result<StartHandshake> {
    let mut acceptor = Acceptor::default();
    let mut received = Pending::default();
    loop {
        let start = received.buf.len();
        let n = poll_fn(|cx| poll_fill(&mut io, &mut received, MAX_HANDSHAKE_BUFFER, cx)).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tls handshake eof",
            ));
        }
        // rustls' Acceptor reads a copy: the same bytes go to the real
        // connection once the configuration is chosen.
        let mut fresh = &received.buf[start..];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(StartHandshake {
                    io,
                    received,
                    accepted,
                })
            }
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut bytes = Vec::new();
                if alert.write_all(&mut bytes).is_ok() {
                    let _ = io.write_all(&bytes).await;
                }
                return Err(tls_error(e));
            }
        }
    }
}

impl StartHandshake {
    /// The ClientHello.
    pub fn client_hello(&self) -> ClientHello<'_> {
        self.accepted.client_hello()
    }

    /// Completes the handshake with `config`.
    pub async fn finish(self, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let Self { io, received, .. } = self;
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut tls = TlsStream {
            io,
            conn,
            incoming: received,
            plaintext: Pending::default(),
            outgoing: Pending::default(),
            peer_closed: false,
            tcp_eof: false,
            close_queued: false,
        };
        tls.handshake().await?;
        Ok(tls)
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
    /// What the handshake negotiated, and the client's certificates.
    pub fn connection(&self) -> &CommonState {
        &self.conn
    }

    async fn handshake(&mut self) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server configuration and a client that trusts it, for "localhost".
    fn configs() -> (Arc<ServerConfig>, tokio_rustls::TlsConnector) {
        configs_with(rustls::server::WebPkiClientVerifier::no_client_auth())
    }

    /// The same, with `verifier` checking client certificates.
    fn configs_with(
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> (Arc<ServerConfig>, tokio_rustls::TlsConnector) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = CertificateDer::from(cert.der().to_vec());
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            Arc::new(server),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    /// A TLS client connected to a handshaken server stream.
    async fn pair() -> (tokio_rustls::client::TlsStream<TcpStream>, TlsStream) {
        let (server, connector) = configs();
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let serve = async {
            let (tcp, _) = l.accept().await.expect("accept");
            let start = accept(tcp).await.expect("ClientHello");
            assert_eq!(start.client_hello().server_name(), Some("localhost"));
            start.finish(server).await.expect("handshake")
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            connector
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        tokio::join!(connect, serve)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn carries_data_both_ways_and_closes_cleanly() {
        let (mut client, mut server) = pair().await;
        let sent = data(300_000);
        let client_side = async {
            client.write_all(&sent).await.expect("client writes");
            client.shutdown().await.expect("client close_notify");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client reads");
            back
        };
        let server_side = async {
            let mut got = Vec::new();
            // The client's close_notify ends the read cleanly.
            server.read_to_end(&mut got).await.expect("server reads");
            server.write_all(&got).await.expect("server writes");
            server.shutdown().await.expect("server close_notify");
            got
        };
        let (back, got) = tokio::join!(client_side, server_side);
        assert_eq!(got, sent);
        assert_eq!(back, sent);
    }

    #[tokio::test]
    async fn reads_and_writes_at_once() {
        // Both directions busy at the same time through one task's halves,
        // as the relay drives them.
        let (client, server) = pair().await;
        let (mut sr, mut sw) = tokio::io::split(server);
        let echo = tokio::spawn(async move {
            let n = tokio::io::copy(&mut sr, &mut sw).await.expect("echo");
            sw.shutdown().await.expect("close");
            n
        });
        let (mut cr, mut cw) = tokio::io::split(client);
        let sent = data(2_000_000);
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(7_000) {
                cw.write_all(chunk).await.expect("write");
            }
            cw.shutdown().await.expect("close");
        });
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(echo.await.expect("echo task"), expected.len() as u64);
        assert_eq!(back, expected);
    }

    #[tokio::test]
    async fn an_idle_session_holds_no_buffer() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.expect("read");
        server.write_all(b"pong").await.expect("write back");
        client.read_exact(&mut got).await.expect("read back");
        assert_eq!(&got, b"pong");
        assert!(!server.incoming.holds_buffer());
        assert!(!server.plaintext.holds_buffer());
        assert!(!server.outgoing.holds_buffer());
    }

    #[tokio::test]
    async fn key_updates_keep_the_session_going() {
        let (mut client, mut server) = pair().await;
        for round in 0..5u8 {
            client
                .get_mut()
                .1
                .refresh_traffic_keys()
                .expect("key update");
            client.write_all(&[round; 100]).await.expect("write");
            let mut got = [0u8; 100];
            server
                .read_exact(&mut got)
                .await
                .expect("read after key update");
            assert_eq!(got, [round; 100]);
            server.write_all(&got).await.expect("write back");
            client.read_exact(&mut got).await.expect("read back");
            assert_eq!(got, [round; 100]);
        }
    }

    #[tokio::test]
    async fn a_tcp_end_without_close_notify_is_an_unexpected_eof() {
        let (client, mut server) = pair().await;
        let (mut tcp, _) = client.into_inner();
        // A FIN, not a reset: the client's socket still holds unread
        // session tickets, and dropping it would send RST.
        tcp.shutdown().await.expect("FIN");
        let mut got = Vec::new();
        let err = server
            .read_to_end(&mut got)
            .await
            .expect_err("no close_notify");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn not_tls_gets_an_alert_and_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let client = async {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let mut reply = Vec::new();
            let _ = tcp.read_to_end(&mut reply).await;
            reply
        };
        let server = async {
            let (tcp, _) = l.accept().await.expect("accept");
            accept(tcp).await.err().expect("refused")
        };
        let (reply, err) = tokio::join!(client, server);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(inner, Some(rustls::Error::InvalidMessage(_))),
            "{err}"
        );
        // A TLS alert record: content type 21.
        assert_eq!(reply.first(), Some(&21), "{reply:?}");
    }

    /// Runs a handshake the server ends with an error. Returns the
    /// client's error (from the handshake, or from its first read when a
    /// TLS 1.3 client finished first) and the server's, each with the
    /// rustls error inside it.
    async fn refused(
        server: Arc<ServerConfig>,
        connector: tokio_rustls::TlsConnector,
    ) -> (
        (io::Error, Option<rustls::Error>),
        (io::Error, Option<rustls::Error>),
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let serve = async {
            let (tcp, _) = l.accept().await.expect("accept");
            let start = accept(tcp).await.expect("ClientHello");
            start.finish(server).await.err().expect("handshake refused")
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            match connector.connect(name, tcp).await {
                Err(e) => e,
                Ok(mut tls) => {
                    let mut byte = [0u8; 1];
                    tls.read(&mut byte)
                        .await
                        .expect_err("refused after the client's handshake")
                }
            }
        };
        let (client, server) = tokio::join!(connect, serve);
        let inner = |e: &io::Error| {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned()
        };
        let (c, s) = (inner(&client), inner(&server));
        ((client, c), (server, s))
    }

    #[tokio::test]
    async fn a_client_alert_fails_the_handshake() {
        // The client does not trust the certificate: it sends the alert,
        // and the server reports having received it.
        let (server, _) = configs();
        let client_config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let ((client, _), (server, inner)) = refused(server, connector).await;
        assert!(
            matches!(inner, Some(rustls::Error::AlertReceived(_))),
            "{server}"
        );
        assert_eq!(client.kind(), io::ErrorKind::InvalidData, "{client}");
    }

    #[tokio::test]
    async fn a_refused_handshake_tells_the_client_why() {
        // The server speaks only "mqtt", the client only "h2": rustls
        // refuses mid-handshake, and its alert must reach the client.
        let (server, connector) = configs();
        let mut server = (*server).clone();
        server.alpn_protocols = vec![b"mqtt".to_vec()];
        let mut client = (*connector.config()).as_ref().clone();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let ((client, client_inner), (server, server_inner)) =
            refused(Arc::new(server), connector).await;
        assert!(
            matches!(server_inner, Some(rustls::Error::NoApplicationProtocol)),
            "{server}"
        );
        assert!(
            matches!(
                client_inner,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::NoApplicationProtocol
                ))
            ),
            "{client}"
        );
    }

    #[tokio::test]
    async fn a_missing_client_certificate_is_refused_with_an_alert() {
        // TLS 1.3: the client's empty Certificate and its Finished arrive
        // together, so rustls fails while still holding the Finished.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&ca_key)
            .expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.der().to_vec()))
            .expect("root");
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .expect("verifier");
        let (server, connector) = configs_with(verifier);
        let ((client, client_inner), (server, server_inner)) = refused(server, connector).await;
        assert!(
            matches!(server_inner, Some(rustls::Error::NoCertificatesPresented)),
            "{server}"
        );
        assert!(
            matches!(
                client_inner,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CertificateRequired
                ))
            ),
            "{client}"
        );
    }

    /// Copies `from` to `to` a few bytes per write, each flushed on its own
    /// with no delay, so that the reader sees records in pieces.
    async fn trickle(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buf = [0u8; 64];
        let mut step = 1;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for piece in buf[..n].chunks(step) {
                if to.write_all(piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            step = step % 5 + 1;
        }
        let _ = to.shutdown().await;
    }

    #[tokio::test]
    async fn records_arriving_in_pieces_are_put_together() {
        let (server_config, connector) = configs();
        let server_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server_l.local_addr().expect("addr");
        let middle_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let middle_addr = middle_l.local_addr().expect("addr");
        tokio::spawn(async move {
            let (a, _) = middle_l.accept().await.expect("accept");
            let b = TcpStream::connect(server_addr).await.expect("connect");
            a.set_nodelay(true).expect("nodelay");
            b.set_nodelay(true).expect("nodelay");
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            tokio::join!(trickle(ar, bw), trickle(br, aw));
        });
        let sent = data(40_000);
        let serve = async {
            let (tcp, _) = server_l.accept().await.expect("accept");
            let start = accept(tcp).await.expect("ClientHello");
            let mut tls = start.finish(server_config).await.expect("handshake");
            let mut got = vec![0u8; sent.len()];
            tls.read_exact(&mut got).await.expect("read");
            tls.write_all(&got).await.expect("write");
            tls.shutdown().await.expect("close");
            got
        };
        let connect = async {
            let tcp = TcpStream::connect(middle_addr).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            let mut tls = connector.connect(name, tcp).await.expect("handshake");
            tls.write_all(&sent).await.expect("write");
            let mut back = Vec::new();
            tls.read_to_end(&mut back).await.expect("read");
            back
        };
        let (back, got) = tokio::join!(connect, serve);
        assert_eq!(got, sent);
        assert_eq!(back, sent);
    }
}
