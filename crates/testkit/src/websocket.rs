//! A hand-driven WebSocket client over [`RustlsConn`], for the tests of
//! what moat does with bad upgrade requests and bad frames: the request
//! and the frames are written byte by byte, as a broken or hostile client
//! would, and what comes back is read raw. Well-behaved WebSocket clients
//! in the tests are real ones (paho-mqtt, MQTT.js in Chromium).

use std::sync::Arc;

use crate::clients::RustlsConn;

/// An upgrade request for `path`, with `headers` (each `Name: value`)
/// after the usual ones (Host, Upgrade, Connection, key, version 13).
pub fn upgrade_request(path: &str, headers: &[&str]) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// A client frame with `opcode` (0x2 binary, 0x1 text, 0x8 close...),
/// final, masked unless `masked` is false.
pub fn client_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![
        0x80 | opcode,
        payload.len() as u8 | if masked { 0x80 } else { 0 },
    ];
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Sends `request` on a new TLS connection (with `alpn`, if any) and
/// returns the HTTP status and everything read until the server closed.
pub fn http_exchange(port: u16, cfg: Arc<rustls::ClientConfig>, request: &[u8]) -> (u16, String) {
    let mut c = RustlsConn::connect(port, "localhost", cfg).expect("TLS to moat");
    c.write_all(request).expect("send the request");
    let (answer, err) = c.read_until_close();
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(err.is_none(), "after {text:?}: {err:?}");
    (status_of(&text), text)
}

/// The status code of an HTTP response (0 if it is not one).
pub fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A WebSocket session over TLS, after a successful upgrade (asserted).
pub fn ws_session(port: u16, cfg: Arc<rustls::ClientConfig>, path: &str) -> RustlsConn {
    let mut c = RustlsConn::connect(port, "localhost", cfg).expect("TLS to moat");
    c.write_all(upgrade_request(path, &["Sec-WebSocket-Protocol: mqtt"]).as_bytes())
        .expect("send the upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(c.read_exact(1).expect("the upgrade's answer"));
    }
    let text = String::from_utf8_lossy(&head);
    assert_eq!(status_of(&text), 101, "{text}");
    assert!(
        text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{text}"
    );
    c
}

/// Reads one short server frame: (first byte, payload).
pub fn read_frame(c: &mut RustlsConn) -> (u8, Vec<u8>) {
    let head = c.read_exact(2).expect("a frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7f {
        126 => {
            let l = c.read_exact(2).expect("length");
            u16::from_be_bytes([l[0], l[1]]) as usize
        }
        n => n as usize,
    };
    (head[0], c.read_exact(len).expect("a frame payload"))
}

/// A rustls client configuration trusting `ca` that offers `alpn`.
pub fn rustls_client_alpn(ca: &std::path::Path, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*crate::clients::rustls_client(ca, None)).clone();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}
