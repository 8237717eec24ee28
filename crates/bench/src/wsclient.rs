//! The client side of MQTT over WebSockets (RFC 6455), just enough for the
//! idle WSS scenario: the HTTP/1.1 upgrade request, one masked binary frame
//! out, and the server's unmasked binary frames back. Hand-written on
//! purpose: the bench must not hold a WebSocket library's buffers on its
//! side, and these few lines are all a client needs here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::{self, step};

/// The path of moat's WebSocket listener in the bench.
pub const PATH: &str = "/mqtt";

/// One WSS session to `addr` up to its first exchange: TLS handshake, the
/// upgrade to [`PATH`], then `msg` (an MQTT CONNECT) in one masked binary
/// frame, checked against the echo. `n` varies the key and the mask.
pub async fn open(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    msg: &[u8],
    n: u64,
) -> io::Result<TlsStream<TcpStream>> {
    let mut s = client::connect(addr, cfg).await?;
    upgrade(&mut s, PATH, n).await?;
    let mask = ((n as u32).wrapping_mul(0x9e37_79b9) | 1).to_be_bytes();
    step(s.write_all(&masked_binary(msg, mask))).await?;
    read_echo(&mut s, msg).await?;
    Ok(s)
}

/// Longest response head read before giving up.
const MAX_HEAD: usize = 4096;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Sends the upgrade request for `path` and checks the `101` answer.
/// The response head is read a byte at a time up to CRLFCRLF, so that no
/// byte after it (the server may send nothing more, but if it did) is
/// taken from the frame stream.
pub async fn upgrade<S>(s: &mut S, path: &str, nonce: u64) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    step(s.write_all(request(path, nonce).as_bytes())).await?;
    read_101(s).await
}

/// The upgrade request. Sec-WebSocket-Key is any 16 bytes in base64 (24
/// characters); the server only hashes it, and the bench does not check
/// Sec-WebSocket-Accept.
fn request(path: &str, nonce: u64) -> String {
    let key = base64_16(&[nonce.to_be_bytes(), (!nonce).to_be_bytes()].concat());
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
}

/// Reads the response head up to CRLFCRLF and checks it is a 101.
async fn read_101<S>(s: &mut S) -> io::Result<()>
where
    S: AsyncRead + Unpin,
{
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(bad("upgrade response head too long"));
        }
        step(s.read_exact(&mut b)).await?;
        head.push(b[0]);
    }
    let status = head.split(|&c| c == b'\r').next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 101") {
        return Err(bad(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(status)
        )));
    }
    Ok(())
}

/// One client frame: FIN + binary opcode (0x82), the mask bit with the
/// payload length (7-bit, or 126 + 16-bit), the 4-byte mask key, then the
/// payload XORed with the key (RFC 6455 §5.2–5.3).
pub fn masked_binary(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x82);
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads server frames (unmasked binary, FIN; moat may split a payload
/// over several) until `want.len()` payload bytes have arrived, and checks
/// they are `want`.
pub async fn read_echo<S>(s: &mut S, want: &[u8]) -> io::Result<()>
where
    S: AsyncRead + Unpin,
{
    let mut got = Vec::with_capacity(want.len());
    while got.len() < want.len() {
        let mut h = [0u8; 2];
        step(s.read_exact(&mut h)).await?;
        if h[0] & 0x0f != 0x2 || h[1] & 0x80 != 0 {
            return Err(bad(format!("unexpected server frame header {h:02x?}")));
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                step(s.read_exact(&mut l)).await?;
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                step(s.read_exact(&mut l)).await?;
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        if got.len() + len > want.len() {
            return Err(bad("server frame longer than the echo"));
        }
        let start = got.len();
        got.resize(start + len, 0);
        step(s.read_exact(&mut got[start..])).await?;
    }
    if got != want {
        return Err(bad("WebSocket echo differs"));
    }
    Ok(())
}

/// Standard base64 of 16 bytes (24 characters, two `=` of padding).
fn base64_16(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(24);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_sixteen_bytes() {
        // RFC 6455 §1.3's example key is the base64 of "the sample nonce".
        assert_eq!(base64_16(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn masks_the_payload() {
        let f = masked_binary(b"\x10\x00", [1, 2, 3, 4]);
        assert_eq!(f, vec![0x82, 0x82, 1, 2, 3, 4, 0x11, 0x02]);
        let long = masked_binary(&[0u8; 300], [0; 4]);
        assert_eq!(&long[..4], &[0x82, 0xfe, 0x01, 0x2c]);
        assert_eq!(long.len(), 2 + 2 + 4 + 300);
    }

    #[tokio::test]
    async fn reads_split_echo() {
        let (mut a, mut b) = tokio::io::duplex(64);
        b.write_all(&[0x82, 2, 0x10, 0x01, 0x82, 1, 0x02])
            .await
            .unwrap();
        read_echo(&mut a, &[0x10, 1, 2]).await.unwrap();
    }
}
