//! A minimal HTTP/1.1 client for the admin endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A minimal HTTP/1.1 request to 127.0.0.1:`port` (the admin endpoint).
pub fn http_request(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_request_with(port, method, path, &[])
}

/// [`http_request`] with extra header lines such as
/// `"Authorization: Bearer ..."`.
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
