//! What a client's bytes travel in once TLS is up: MQTT straight on the
//! TLS stream, or MQTT inside WebSocket frames after an HTTP upgrade, on
//! the same port. [`ClientStream`] is the one byte stream the sessions
//! read and write, whichever it is, so that every check after the
//! handshake (the MQTT guard, ACLs, limits, the PROXY header) is the same
//! for both.
//!
//! - `choose`: pure decisions (which transport, whether an upgrade
//!   request is accepted, the accept key);
//! - `upgrade`: the HTTP/1.1 upgrade, served by hyper;
//! - `frames`: [`WsStream`], the byte stream over WebSocket frames.

mod choose;
mod frames;
mod upgrade;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use choose::{choose, Transport, UpgradeResult};
pub use frames::{Violation, WsStream};
pub use upgrade::upgrade;

use crate::pool::PollReadable;
use crate::tls::stream::TlsStream;

/// A client's byte stream (see the module documentation). The WebSocket
/// state is boxed so that raw TLS connections do not pay for it; the TLS
/// stream is not, since every connection has one and boxing it would cost
/// each an allocation (the whole `Established` is boxed already).
#[allow(clippy::large_enum_variant)]
pub enum ClientStream {
    /// MQTT (or any bytes) on the TLS stream.
    Tls(TlsStream),
    /// MQTT in WebSocket binary frames on the TLS stream.
    WebSocket(Box<WsStream<TlsStream>>),
}

impl ClientStream {
    /// The TLS session underneath.
    pub fn tls(&self) -> &TlsStream {
        match self {
            Self::Tls(t) => t,
            Self::WebSocket(w) => w.get_ref(),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(t) => Pin::new(t).poll_read(cx, buf),
            Self::WebSocket(w) => Pin::new(w.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tls(t) => Pin::new(t).poll_write(cx, data),
            Self::WebSocket(w) => Pin::new(w.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(t) => Pin::new(t).poll_flush(cx),
            Self::WebSocket(w) => Pin::new(w.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tls(t) => Pin::new(t).poll_shutdown(cx),
            Self::WebSocket(w) => Pin::new(w.as_mut()).poll_shutdown(cx),
        }
    }
}

impl PollReadable for ClientStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tls(t) => t.poll_readable(cx),
            Self::WebSocket(w) => w.poll_readable(cx),
        }
    }
}
