//! The TLS client side of the load generator: tokio-rustls with aws-lc-rs,
//! TLS 1.3 only, X25519 only (so every proxy does the same key exchange:
//! OpenSSL 3.0 has no post-quantum hybrid, which moat would otherwise
//! prefer), trusting the benchmark CA. It lists TLS_AES_128_GCM_SHA256
//! first, so that every proxy negotiates the same suite: the OpenSSL-based
//! peers follow the client's order, and moat's default order would pick it
//! over the stock client's first choice, AES-256-GCM, anyway.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Client settings; `resume` keeps session tickets for resumption.
pub fn config(ca: &CertificateDer<'static>, resume: bool) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("benchmark CA is valid");
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = if resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    Arc::new(cfg)
}

/// How long one step (connect, handshake, a read) may take before the
/// connection counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "step timed out")
}

/// Runs `f` under [`STEP_TIMEOUT`].
pub async fn step<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| timed_out())?
}

/// Connects and completes a TLS handshake.
pub async fn connect(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = step(TcpStream::connect(addr)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("valid name");
    step(TlsConnector::from(cfg.clone()).connect(name, tcp)).await
}

/// Whether the handshake of `s` was a resumption.
pub fn resumed(s: &TlsStream<TcpStream>) -> bool {
    s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// Writes `msg` and reads back exactly as many bytes (the echo).
pub async fn echo_once<S>(s: &mut S, msg: &[u8]) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    step(s.write_all(msg)).await?;
    let mut back = vec![0u8; msg.len()];
    step(s.read_exact(&mut back)).await?;
    if back != msg {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
    }
    Ok(())
}

/// Sends close_notify and FIN, then waits (briefly) for the other side to
/// close too.
pub async fn close<S>(mut s: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = s.shutdown().await;
        let mut sink = [0u8; 256];
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
