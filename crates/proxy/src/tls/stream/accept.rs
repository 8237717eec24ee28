//! The start of a TLS session: the ClientHello is read first (with
//! rustls' `Acceptor`), so that the caller can pick the configuration by
//! SNI or by the client's suites, and the same bytes then go to the
//! connection that finishes the handshake.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use rustls::server::{Accepted, Acceptor, ClientHello};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::pending::{poll_fill, Pending, MAX_HANDSHAKE_BUFFER};
use super::session::{tls_error, TlsStream};

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
        let mut tls = TlsStream::new(io, config, received)?;
        tls.handshake().await?;
        Ok(tls)
    }
}
