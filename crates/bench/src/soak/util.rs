//! Small helpers shared by the orchestrator and the workers: time, a
//! seeded random number generator, quantiles, deadlines, and one MQTT
//! session over TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mqtt;

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift64*: jitter and garbage bytes, nothing cryptographic.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn between(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * self.unit())
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// The `q` quantile (nearest rank) of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How an established connection ended, from the client's side.
pub(crate) fn close_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset => "reset".into(),
        K::UnexpectedEof => "eof without close_notify".into(),
        K::BrokenPipe => "broken pipe".into(),
        K::TimedOut => "timed out".into(),
        _ => format!("error: {e}"),
    }
}

/// Runs `f` under `limit`, as an I/O error when it runs out.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} timed out after {limit:?}"),
        )),
    }
}

pub(crate) type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// An MQTT session over TLS, with the bytes read past the last frame.
pub(crate) struct Session {
    pub(crate) s: Tls,
    pub(crate) buf: Vec<u8>,
}

/// Timings of one connection attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectTimes {
    /// TCP connect and TLS handshake.
    pub(crate) handshake: Duration,
    /// Up to the CONNACK.
    pub(crate) total: Duration,
}

/// Connects, completes the TLS handshake, sends CONNECT and waits for a
/// successful CONNACK, all within `limit`.
pub(crate) async fn mqtt_session(
    target: SocketAddr,
    cfg: &Arc<ClientConfig>,
    client_id: &str,
    keep_alive: u16,
    clean: bool,
    limit: Duration,
) -> std::io::Result<(Session, ConnectTimes)> {
    let start = Instant::now();
    let deadline = start + limit;
    let left = || deadline.saturating_duration_since(Instant::now());
    let tcp = within(left(), "TCP connect", TcpStream::connect(target)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut s = within(
        left(),
        "TLS handshake",
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await?;
    let handshake = start.elapsed();
    let frame = mqtt::connect_session(client_id, keep_alive, clean);
    within(left(), "CONNECT", async {
        s.write_all(&frame).await?;
        s.flush().await
    })
    .await?;
    let mut sess = Session { s, buf: Vec::new() };
    let f = within(left(), "CONNACK", sess.next_frame()).await?;
    let body = &sess.buf[f.body_start..f.len];
    if f.kind() != mqtt::CONNACK || body.len() < 2 || body[1] != 0 {
        return Err(std::io::Error::other(format!(
            "expected a successful CONNACK, got {:02x?}",
            &sess.buf[..f.len]
        )));
    }
    sess.buf.drain(..f.len);
    Ok((
        sess,
        ConnectTimes {
            handshake,
            total: start.elapsed(),
        },
    ))
}

impl Session {
    /// Reads until one whole frame is buffered; a clean end is an
    /// `UnexpectedEof` error named "eof".
    pub(crate) async fn next_frame(&mut self) -> std::io::Result<mqtt::Frame> {
        loop {
            if let Some(f) = mqtt::next_frame(&self.buf).map_err(std::io::Error::other)? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Reads once into the buffer; 0 bytes is an error of kind
    /// `UnexpectedEof` with the message "eof".
    pub(crate) async fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 2048];
        let n = self.s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    pub(crate) async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        within(Duration::from_secs(10), "write", async {
            self.s.write_all(frame).await?;
            self.s.flush().await
        })
        .await
    }

    /// Sends DISCONNECT and close_notify, then closes.
    pub(crate) async fn goodbye(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.s.write_all(&mqtt::DISCONNECT).await;
            let _ = self.s.shutdown().await;
        })
        .await;
    }
}

/// How the other side ended an established session ("eof" for a clean
/// close, with or without close_notify).
pub(crate) fn ended_kind(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof && e.to_string() == "eof" {
        "eof".into()
    } else {
        close_kind(e)
    }
}
