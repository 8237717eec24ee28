//! The naive reference proxy: what a TLS-terminating proxy looks like when
//! written the obvious way with tokio-rustls: accept, handshake, connect the
//! backend, `tokio::io::copy_bidirectional`. Same certificate, TLS 1.3,
//! stateless session tickets, one worker thread per core.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("read {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(cfg))
}

async fn handle(tcp: TcpStream, acceptor: TlsAcceptor, backend: String) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    let Ok(mut b) = TcpStream::connect(&backend).await else {
        return;
    };
    let _ = b.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut b).await;
}

/// `moat-bench naive-proxy`.
pub fn main(listen: &str, backend: &str, cert: &Path, key: &Path) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let acceptor = TlsAcceptor::from(server_config(cert, key)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let l = crate::echo::bind(listen)?;
        println!("listening {}", l.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(handle(s, acceptor.clone(), backend.to_string()));
                }
                Err(e) => {
                    eprintln!("naive-proxy: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
