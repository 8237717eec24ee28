//! Bytes waiting around rustls: ciphertext received, plaintext decrypted
//! and ciphertext to send, each in a buffer borrowed from a per-thread pool
//! only while it holds some, and the moves in and out of them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::unbuffered::InsufficientSizeError;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use crate::pool::{self, FreeList};

/// Capacity of a pooled buffer: one TLS record at its largest (16 KiB of
/// plaintext, up to 256 bytes of expansion and a 5-byte header) with room
/// for the start of the next.
pub(super) const BUF_CAPACITY: usize = 18 * 1024;

/// The most received bytes held while a handshake is in progress: a
/// handshake message at its largest (64 KiB, as rustls' own limit), split
/// over records, plus one more record.
pub(super) const MAX_HANDSHAKE_BUFFER: usize = 0xffff + BUF_CAPACITY + 16 * 5;

thread_local! {
    static POOL: FreeList<Vec<u8>> = const { FreeList::new() };
}

/// Bytes waiting, in a buffer borrowed from the pool only while there are
/// some.
#[derive(Default)]
pub(super) struct Pending {
    /// The buffer; `accept` reads the ClientHello from it.
    pub(super) buf: Vec<u8>,
    pos: usize,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(super) fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub(super) fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.pos..]
    }

    /// Drops `n` bytes from the front; an emptied buffer goes back.
    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.is_empty() {
            self.release();
        }
    }

    /// Gives the buffer back to the pool. One that grew past the usual
    /// size (a large handshake message) is freed instead.
    pub(super) fn release(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        self.pos = 0;
        if buf.capacity() == BUF_CAPACITY {
            buf.clear();
            pool::give(&POOL, buf);
        }
    }

    /// The buffer to append to, borrowed from the pool if there is none.
    pub(super) fn vec(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = pool::take(&POOL).unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY));
        }
        &mut self.buf
    }

    /// Moves the waiting bytes to the front, to make room behind them.
    pub(super) fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Whether a buffer is held (empty or not).
    #[cfg(test)]
    pub(super) fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

/// Lets rustls write into spare room at the end of `out`: `guess` bytes
/// first, and as many as it says it needs if that was too few.
pub(super) fn write_with(
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

/// Reads what the socket has into `into`, holding at most `limit` bytes.
/// Ready with 0 at EOF. While the socket has nothing, an empty `into` gives
/// its buffer back.
///
/// Through tokio's `poll_read` rather than `try_read`: a read that does not
/// fill the buffer tells tokio the socket is drained, which saves the
/// extra read that would only say "would block" after every message.
pub(super) fn poll_fill(
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
pub(super) fn deliver(mut payload: &[u8], read: &mut Option<&mut ReadBuf<'_>>, rest: &mut Pending) {
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
