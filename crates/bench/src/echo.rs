//! The plaintext backend of most scenarios: an echo server that sends back
//! every byte it receives and closes its side after the peer's FIN. It runs
//! as its own process so its sockets count against neither the proxy's nor
//! the client's open-file limit.

use std::io::Write;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Binds `addr` with a deep accept queue (a storm needs one).
pub fn bind(addr: &str) -> Result<TcpListener> {
    let addr: std::net::SocketAddr = addr.parse().with_context(|| format!("address {addr}"))?;
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr).with_context(|| format!("bind {addr}"))?;
    Ok(s.listen(4096)?)
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}

/// `moat-bench echo-server`: prints `listening ADDR` once bound.
pub fn main(listen: &str) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let l = bind(listen)?;
        println!("listening {}", l.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(echo(s));
                }
                Err(e) => {
                    eprintln!("echo-server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
