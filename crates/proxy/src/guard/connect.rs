//! The CONNECT phase of an MQTT-aware connection, decided before the
//! broker is even connected: the first packet must be a CONNECT, its
//! client id must fit the device's certificate identity, the username the
//! broker sees may become that identity, the will topic must pass the
//! ACL, and the client's ACL is resolved once for the session.
//!
//! Pure logic: bytes and settings in, a decision out.

use std::sync::Arc;

use moat_mqtt::{
    ack, rewrite_connect, Connect, Error as MqttError, FixedHeader, PacketType, ProtocolVersion,
};

use super::acl::{ClientAcl, Subject};
use super::packets::{GuardCounters, PacketGuard, MAX_BUFFERED_PACKET};
use crate::config::{ClientIdPolicy, IdentitySource, MqttConfig, UsernamePolicy};
use crate::metrics::reason::reasons;
use crate::tls::allow::DeviceFacts;

reasons! {
    /// Why a connection was refused at its CONNECT
    /// (`moat_mqtt_connect_rejected_total`).
    pub enum ConnectRefusal {
        /// The first packet is not a CONNECT.
        NotConnect => "not_connect",
        /// No CONNECT within `connect_timeout`.
        ConnectTimeout => "connect_timeout",
        /// A CONNECT that does not parse.
        Malformed => "malformed",
        /// A protocol level moat does not speak.
        UnsupportedProtocol => "unsupported_protocol",
        /// A CONNECT over `max_packet_size`.
        PacketTooLarge => "packet_too_large",
        /// The binding needs a certificate identity and there is none.
        NoIdentity => "no_identity",
        /// The client id does not fit the identity.
        ClientIdMismatch => "client_id_mismatch",
        /// The will topic is denied by the ACL.
        WillDenied => "will_denied",
        /// The broker could not be reached.
        BackendUnavailable => "backend_unavailable",
        /// The client went away before its CONNECT.
        ClientClosed => "client_closed",
        /// The client id is banned (`POST /bans`).
        Banned => "banned",
        /// The device is over `mqtt.limits.connections_per_minute`.
        ConnectionRate => "connection_rate",
    }
}

/// The device identity the configuration asks for, from its certificate.
pub fn identity(facts: Option<&DeviceFacts>, source: IdentitySource) -> Option<String> {
    let f = facts?;
    match source {
        IdentitySource::CommonName => f.common_names.first().cloned(),
        IdentitySource::Uri => f.uris.first().cloned(),
        IdentitySource::Dns => f.dns.first().cloned(),
        IdentitySource::Subject => Some(f.subject.clone()),
    }
}

/// How many bytes the CONNECT at the front of `buf` needs in all, once its
/// fixed header is there; `Err` for a first packet that cannot be a CONNECT.
pub fn connect_len(buf: &[u8], max: u32) -> Result<Option<usize>, ConnectRefusal> {
    match FixedHeader::parse(buf) {
        Ok(None) => Ok(None),
        Ok(Some(h)) if h.packet_type != PacketType::Connect => Err(ConnectRefusal::NotConnect),
        Ok(Some(h)) if h.exceeds(max) || h.total_len() > MAX_BUFFERED_PACKET => {
            Err(ConnectRefusal::PacketTooLarge)
        }
        Ok(Some(h)) => Ok(Some(h.total_len())),
        Err(_) => Err(ConnectRefusal::NotConnect),
    }
}

/// What to do with a client's CONNECT.
pub enum ConnectDecision {
    /// Connect the broker and send it `forward` (the CONNECT, rewritten
    /// when the username changes), then relay with `session`.
    Accept {
        /// The bytes to send the broker first.
        forward: Vec<u8>,
        /// The packet-level state for the rest of the connection.
        session: Box<PacketGuard>,
        /// The client id (for logs).
        client_id: String,
        /// The username the broker sees (for logs).
        username: Option<String>,
        /// The client's keep-alive, in seconds (0: none).
        keep_alive: u16,
    },
    /// Answer with `reply` (a CONNACK, or nothing) and close.
    Refuse {
        /// What to send the client before closing.
        reply: Vec<u8>,
        /// Why (a metric label).
        reason: ConnectRefusal,
    },
}

fn refuse(version: ProtocolVersion, code: u8, reason: ConnectRefusal) -> ConnectDecision {
    let mut reply = Vec::new();
    ack::connack(version, false, code, &mut reply);
    ConnectDecision::Refuse { reply, reason }
}

/// Decides on a complete CONNECT packet. `identity` is the device's
/// certificate identity, if it presented one.
pub fn decide_connect(
    packet: &[u8],
    config: &MqttConfig,
    identity: Option<&str>,
    counters: Arc<GuardCounters>,
) -> ConnectDecision {
    let connect = match Connect::parse(packet) {
        Ok(c) => c,
        Err(MqttError::UnsupportedProtocol { .. }) => {
            // MQTT 3.1.1 answers an unknown level with return code 0x01.
            return refuse(
                ProtocolVersion::V3_1_1,
                ack::connack_v3::UNACCEPTABLE_PROTOCOL_VERSION,
                ConnectRefusal::UnsupportedProtocol,
            );
        }
        Err(_) => {
            return ConnectDecision::Refuse {
                reply: Vec::new(),
                reason: ConnectRefusal::Malformed,
            }
        }
    };
    let v = connect.version;
    let not_authorized = ack::connack_not_authorized(v);
    let needs_identity =
        config.client_id != ClientIdPolicy::Any || config.username == UsernamePolicy::Identity;
    if needs_identity && identity.is_none() {
        return refuse(v, not_authorized, ConnectRefusal::NoIdentity);
    }
    let id = identity.unwrap_or("");
    let client_id_ok = match config.client_id {
        ClientIdPolicy::Any => true,
        ClientIdPolicy::EqualToIdentity => connect.client_id == id,
        ClientIdPolicy::PrefixedByIdentity => connect.client_id.starts_with(id),
    };
    if !client_id_ok {
        tracing::info!(
            client_id = connect.client_id,
            identity = id,
            "client id does not match the certificate identity"
        );
        return refuse(v, not_authorized, ConnectRefusal::ClientIdMismatch);
    }
    let (forward, username) = match config.username {
        UsernamePolicy::Passthrough => (packet.to_vec(), connect.username.map(str::to_string)),
        UsernamePolicy::Identity => {
            let mut out = Vec::with_capacity(packet.len() + id.len());
            if rewrite_connect(packet, &connect, Some(id), true, &mut out).is_err() {
                return ConnectDecision::Refuse {
                    reply: Vec::new(),
                    reason: ConnectRefusal::Malformed,
                };
            }
            (out, Some(id.to_string()))
        }
    };
    let acl = client_acl(
        config,
        &Subject {
            client_id: connect.client_id,
            username: username.as_deref(),
            identity,
        },
    );
    if let Some(will) = &connect.will {
        if !acl.may_publish(will.topic) {
            tracing::info!(topic = will.topic, "will topic denied by the topic ACL");
            return refuse(v, not_authorized, ConnectRefusal::WillDenied);
        }
    }
    ConnectDecision::Accept {
        forward,
        session: Box::new(PacketGuard::new(
            v,
            acl,
            config.on_deny,
            config.max_packet_size,
            counters,
        )),
        client_id: connect.client_id.to_string(),
        username,
        keep_alive: connect.keep_alive,
    }
}

/// The topic ACL of one client under `config` (everything allowed when
/// it has none); at CONNECT, and again when the configuration reloads.
pub fn client_acl(config: &MqttConfig, subject: &Subject<'_>) -> ClientAcl {
    match &config.acl {
        None => ClientAcl::allow_all(),
        Some(rules) => ClientAcl::resolve(rules, subject),
    }
}

/// The CONNACK for a broker that cannot be reached, in the client's
/// protocol version (read from the CONNECT).
pub fn server_unavailable(version: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    ack::connack(
        version,
        false,
        ack::connack_server_unavailable(version),
        &mut out,
    );
    out
}

/// The CONNACK refusing a client as not authorized, in its protocol
/// version.
pub fn not_authorized(version: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    ack::connack(
        version,
        false,
        ack::connack_not_authorized(version),
        &mut out,
    );
    out
}

/// The CONNACK refusing a device over its connections a minute: MQTT 5
/// "connection rate exceeded", before it "server unavailable".
pub fn connection_rate_exceeded(version: ProtocolVersion) -> Vec<u8> {
    let code = if version.is_v5() {
        ack::reason::CONNECTION_RATE_EXCEEDED
    } else {
        ack::connack_server_unavailable(version)
    };
    let mut out = Vec::new();
    ack::connack(version, false, code, &mut out);
    out
}

/// A label for the protocol version.
pub fn version_label(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT_311: &[u8] = &[
        0x10, 0x1b, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xc2, 0x00, 0x3c, 0x00, 0x04, b'd',
        b'e', b'v', b'1', 0x00, 0x05, b'a', b'l', b'i', b'c', b'e', 0x00, 0x02, b'p', b'w',
    ];

    fn config(yaml: &str) -> MqttConfig {
        serde_yaml::from_str(yaml).expect("mqtt config")
    }

    fn decide(yaml: &str, identity: Option<&str>) -> ConnectDecision {
        decide_connect(
            CONNECT_311,
            &config(yaml),
            identity,
            Arc::new(GuardCounters::default()),
        )
    }

    #[test]
    fn client_id_binding() {
        assert!(matches!(
            decide("client_id: equal_to_identity", Some("dev1")),
            ConnectDecision::Accept { .. }
        ));
        let ConnectDecision::Refuse { reply, reason } =
            decide("client_id: equal_to_identity", Some("dev2"))
        else {
            panic!("mismatch must be refused")
        };
        assert_eq!(reason, ConnectRefusal::ClientIdMismatch);
        assert_eq!(reply, [0x20, 0x02, 0x00, 0x05]);
        assert!(matches!(
            decide("client_id: prefixed_by_identity", Some("dev")),
            ConnectDecision::Accept { .. }
        ));
        let ConnectDecision::Refuse { reason, .. } =
            decide("client_id: prefixed_by_identity", None)
        else {
            panic!("no identity")
        };
        assert_eq!(reason, ConnectRefusal::NoIdentity);
    }

    #[test]
    fn username_becomes_the_identity_and_the_password_goes() {
        let ConnectDecision::Accept {
            forward, username, ..
        } = decide("username: identity", Some("sensor-7"))
        else {
            panic!("accepted")
        };
        assert_eq!(username.as_deref(), Some("sensor-7"));
        let c = Connect::parse(&forward).expect("rewritten CONNECT parses");
        assert_eq!(c.username, Some("sensor-7"));
        assert_eq!(c.password, None);
        assert_eq!(c.client_id, "dev1");
    }

    #[test]
    fn first_packet_must_be_connect() {
        assert_eq!(
            connect_len(&[0x30, 0x00], 1000),
            Err(ConnectRefusal::NotConnect)
        );
        assert_eq!(connect_len(&[0x10], 1000), Ok(None));
        assert_eq!(connect_len(CONNECT_311, 1000), Ok(Some(CONNECT_311.len())));
        assert_eq!(
            connect_len(CONNECT_311, 10),
            Err(ConnectRefusal::PacketTooLarge)
        );
        assert_eq!(
            connect_len(b"GET / HTTP/1.1", 1000),
            Err(ConnectRefusal::NotConnect)
        );
    }

    #[test]
    fn unavailable_connack_per_version() {
        assert_eq!(
            server_unavailable(ProtocolVersion::V3_1_1),
            [0x20, 0x02, 0x00, 0x03]
        );
        assert_eq!(
            server_unavailable(ProtocolVersion::V5),
            [0x20, 0x03, 0x00, 0x88, 0x00]
        );
    }
}
