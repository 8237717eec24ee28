//! One active health check of one backend node: a TCP connect (`tcp`), or
//! an MQTT 3.1.1 CONNECT with the prober's own client id answered by a
//! CONNACK with return code 0, then DISCONNECT (`mqtt`). A broker that
//! answers any other code (bad credentials, not authorised, server
//! unavailable) fails the check: it would refuse devices too, or at least
//! is not serving as configured. When the listener sends a PROXY header to
//! the broker, the check sends a LOCAL one first (the broker then takes the
//! connection as the proxy's own).
//!
//! The CONNECT is built here (the moat-mqtt crate parses and rewrites
//! packets but has no encoder for a fresh CONNECT); the CONNACK header is
//! parsed with moat-mqtt.

use std::future::Future;
use std::io;
use std::time::Duration;

use moat_mqtt::{FixedHeader, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{HealthCheck, ProxyProtocol};
use crate::proxy_protocol;

/// Why a check failed: the `result` label and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `connect_failed`, `timeout`, `rejected` or `bad_reply`.
    pub result: &'static str,
    /// What happened, for the log line.
    pub reason: String,
}

impl Failure {
    fn new(result: &'static str, reason: impl Into<String>) -> Self {
        Self {
            result,
            reason: reason.into(),
        }
    }
}

/// Checks a node once, within `timeout`: `connect` is the node's own
/// connect attempt (the caller's, so that this module needs no backend).
pub async fn check(
    connect: impl Future<Output = io::Result<tokio::net::TcpStream>>,
    kind: HealthCheck,
    timeout: Duration,
    proxy: ProxyProtocol,
    client_id: &str,
) -> Result<(), Failure> {
    let run = async {
        let mut s = connect
            .await
            .map_err(|e| Failure::new("connect_failed", e.to_string()))?;
        if kind != HealthCheck::Mqtt {
            return Ok(());
        }
        let mut out = proxy_protocol::encode_local(proxy).unwrap_or_default();
        out.extend_from_slice(&connect_packet(client_id));
        let io = |e: std::io::Error| Failure::new("bad_reply", e.to_string());
        s.write_all(&out).await.map_err(io)?;
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).await.map_err(io)?;
        let code = connack_code(&reply)?;
        // DISCONNECT, so the broker does not publish a will or log an error.
        let _ = s.write_all(&[PacketType::Disconnect.as_u8() << 4, 0]).await;
        match code {
            0 => Ok(()),
            c => Err(Failure::new(
                "rejected",
                format!("the broker refused the check's CONNECT (return code {c})"),
            )),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            "timeout",
            format!("no answer within {}", humantime::format_duration(timeout)),
        )),
    }
}

/// An MQTT 3.1.1 CONNECT: clean session, keep-alive 30 s, no credentials.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    // Short ids only (the prober's own), so the length fits one byte.
    let id = &id[..id.len().min(100)];
    let mut p = vec![PacketType::Connect.as_u8() << 4, (12 + id.len()) as u8];
    p.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30]);
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

/// The return code of a CONNACK, or why `reply` is not one.
fn connack_code(reply: &[u8; 4]) -> Result<u8, Failure> {
    match FixedHeader::parse(reply) {
        Ok(Some(h)) if h.packet_type == PacketType::Connack && h.remaining_len == 2 => Ok(reply[3]),
        _ => Err(Failure::new(
            "bad_reply",
            "the broker did not answer the check's CONNECT with a CONNACK",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_parses_as_mqtt_3_1_1_with_the_client_id() {
        let p = connect_packet("moat-health-7-1");
        let c = moat_mqtt::Connect::parse(&p).expect("a valid CONNECT");
        assert_eq!(c.client_id, "moat-health-7-1");
        assert_eq!(c.version, moat_mqtt::ProtocolVersion::V3_1_1);
        assert!(c.clean_start);
    }

    #[test]
    fn a_connack_gives_its_code_and_anything_else_is_a_bad_reply() {
        assert_eq!(connack_code(&[0x20, 2, 0, 0]), Ok(0));
        assert_eq!(connack_code(&[0x20, 2, 0, 5]), Ok(5));
        assert_eq!(
            connack_code(&[0x30, 2, 0, 0]).unwrap_err().result,
            "bad_reply"
        );
        assert_eq!(
            connack_code(&[0x20, 3, 0, 0]).unwrap_err().result,
            "bad_reply"
        );
    }
}
