//! CONNECT, the first packet of every connection: parsing it (protocol
//! version, flags, keep-alive, MQTT 5 properties, client identifier, will,
//! credentials) and rewriting its username and password before it goes to
//! the broker.

use core::fmt;
use core::ops::Range;

use crate::error::Error;
use crate::header::{encode_fixed_header, FixedHeader};
use crate::properties::{self, id, PropertyValue};
use crate::reader::{mqtt_str, Reader};
use crate::topic::valid_topic_name;
use crate::types::{PacketType, ProtocolVersion, QoS};

/// Connect flag: a username is present.
pub const FLAG_USERNAME: u8 = 0x80;
/// Connect flag: a password is present.
pub const FLAG_PASSWORD: u8 = 0x40;
/// Connect flag: the will message is retained.
pub const FLAG_WILL_RETAIN: u8 = 0x20;
/// Connect flags: the will QoS (two bits).
pub const FLAG_WILL_QOS_MASK: u8 = 0x18;
/// Connect flag: a will is present.
pub const FLAG_WILL: u8 = 0x04;
/// Connect flag: clean session (3.x) / clean start (5).
pub const FLAG_CLEAN_START: u8 = 0x02;
/// Connect flag: reserved, must be 0 (checked from MQTT 3.1.1 on).
pub const FLAG_RESERVED: u8 = 0x01;

/// Bit 7 of the protocol level, set by Mosquitto bridges
/// (`try_private true`) to announce themselves.
pub const BRIDGE_LEVEL_BIT: u8 = 0x80;

/// A parsed CONNECT packet, borrowing from the packet bytes.
///
/// `Debug` output redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The protocol version the connection speaks from now on.
    pub version: ProtocolVersion,
    /// The protocol level byte as sent, bridge bit included.
    pub protocol_level: u8,
    /// Whether the protocol level has [`BRIDGE_LEVEL_BIT`] set (a Mosquitto
    /// bridge). The version is decoded with the bit masked off.
    pub bridge: bool,
    /// Clean session (MQTT 3.x) / clean start (MQTT 5).
    pub clean_start: bool,
    /// Keep-alive interval in seconds (0 disables it).
    pub keep_alive: u16,
    /// MQTT 5 CONNECT properties; all `None` and an empty block otherwise.
    pub properties: ConnectProperties<'a>,
    /// The client identifier (may be empty: the broker then assigns one).
    pub client_id: &'a str,
    /// The will, if the will flag is set. Its topic needs the same publish
    /// ACL check as a PUBLISH.
    pub will: Option<Will<'a>>,
    /// The username, if the username flag is set.
    pub username: Option<&'a str>,
    /// The password, if the password flag is set.
    pub password: Option<&'a [u8]>,
    /// Where the fields sit in the packet, for [`rewrite_connect`].
    pub layout: ConnectLayout,
}

/// The MQTT 5 CONNECT properties the gateway may act on, plus the raw block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties<'a> {
    /// Offsets of the property block in the packet, without its length
    /// prefix (empty, at the end of the variable header, before MQTT 5).
    pub range: Range<usize>,
    /// The property block itself (iterate it with
    /// [`Properties`](crate::properties::Properties)).
    pub raw: &'a [u8],
    /// Session Expiry Interval (0x11), seconds.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (0x21): how many QoS 1/2 publishes the client accepts
    /// in flight.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27) the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum (0x22) the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Authentication Method (0x15): present when the client wants MQTT 5
    /// enhanced authentication (an AUTH exchange).
    pub authentication_method: Option<&'a str>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<&'a [u8]>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// The MQTT 5 will property block (empty before MQTT 5).
    pub properties: &'a [u8],
    /// The will topic, a validated topic name.
    pub topic: &'a str,
    /// The will payload.
    pub payload: &'a [u8],
}

/// Byte offsets of a CONNECT's fields, from the start of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLayout {
    /// Size of the fixed header.
    pub header_len: usize,
    /// Offset of the connect-flags byte.
    pub flags_offset: usize,
    /// Offset where the credentials start: the end of the will (or of the
    /// client identifier), where a username is or would be inserted.
    pub credentials_offset: usize,
    /// The username field, two-byte length prefix included.
    pub username: Option<Range<usize>>,
    /// The password field, two-byte length prefix included.
    pub password: Option<Range<usize>>,
    /// Size of the whole packet.
    pub total_len: usize,
}

const SHORT: Error = Error::Malformed("CONNECT field runs past the end of the packet");

impl<'a> Connect<'a> {
    /// Parses a CONNECT packet.
    ///
    /// `packet` starts with the fixed header and holds at least the whole
    /// packet; bytes after it (the next packet in a relay buffer) are
    /// ignored. Returns [`Error::Incomplete`] if the packet is not all
    /// there.
    ///
    /// Checks what a broker checks before authentication: protocol name
    /// `MQTT` (levels 4 and 5) or `MQIsdp` (level 3), connect flags (reserved
    /// bit clear from 3.1.1 on, will QoS and retain only with a will, no
    /// password without a username before MQTT 5), MQTT 5 properties (known,
    /// allowed in CONNECT, not duplicated), MQTT UTF-8 strings, a valid will
    /// topic, and no bytes after the payload.
    pub fn parse(packet: &'a [u8]) -> Result<Connect<'a>, Error> {
        let header = FixedHeader::parse(packet)?.ok_or(Error::Incomplete)?;
        if header.packet_type != PacketType::Connect {
            return Err(Error::UnexpectedPacketType {
                expected: PacketType::Connect,
                found: header.packet_type,
            });
        }
        let total_len = header.total_len();
        let packet = packet.get(..total_len).ok_or(Error::Incomplete)?;
        let mut r = Reader::new(packet, header.header_len);

        let name = r.binary().ok_or(SHORT)?;
        let protocol_level = r.u8().ok_or(SHORT)?;
        let bridge = protocol_level & BRIDGE_LEVEL_BIT != 0;
        let version = match (name, protocol_level & !BRIDGE_LEVEL_BIT) {
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp" | b"MQTT", _) => {
                return Err(Error::UnsupportedProtocol {
                    level: protocol_level,
                })
            }
            _ => {
                return Err(Error::ProtocolError(
                    "CONNECT protocol name is neither \"MQTT\" nor \"MQIsdp\"",
                ))
            }
        };

        let flags_offset = r.pos();
        let flags = r.u8().ok_or(SHORT)?;
        if flags & FLAG_RESERVED != 0 && version != ProtocolVersion::V3_1 {
            return Err(Error::Malformed("reserved CONNECT flag (bit 0) is set"));
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        let will_qos = QoS::from_bits((flags & FLAG_WILL_QOS_MASK) >> 3)
            .ok_or(Error::Malformed("CONNECT will QoS is 3"))?;
        if !has_will && (will_retain || will_qos != QoS::AtMostOnce) {
            return Err(Error::ProtocolError(
                "CONNECT will QoS or will retain set without the will flag",
            ));
        }
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        if has_password && !has_username && !version.is_v5() {
            return Err(Error::ProtocolError(
                "CONNECT password flag set without the username flag",
            ));
        }
        let keep_alive = r.u16().ok_or(SHORT)?;

        let mut props = ConnectProperties {
            range: r.pos()..r.pos(),
            ..ConnectProperties::default()
        };
        if version.is_v5() {
            let block = properties::read_block(&mut r)?.ok_or(SHORT)?;
            props.range = r.pos() - block.len()..r.pos();
            props.raw = block;
            properties::scan(block, properties::CONNECT, |p| match (p.id, p.value) {
                (id::SESSION_EXPIRY_INTERVAL, PropertyValue::FourByteInt(v)) => {
                    props.session_expiry_interval = Some(v);
                }
                (id::RECEIVE_MAXIMUM, PropertyValue::TwoByteInt(v)) => {
                    props.receive_maximum = Some(v);
                }
                (id::MAXIMUM_PACKET_SIZE, PropertyValue::FourByteInt(v)) => {
                    props.maximum_packet_size = Some(v);
                }
                (id::TOPIC_ALIAS_MAXIMUM, PropertyValue::TwoByteInt(v)) => {
                    props.topic_alias_maximum = Some(v);
                }
                (id::AUTHENTICATION_METHOD, PropertyValue::Utf8(v)) => {
                    props.authentication_method = Some(v);
                }
                (id::AUTHENTICATION_DATA, PropertyValue::Binary(v)) => {
                    props.authentication_data = Some(v);
                }
                _ => {}
            })?;
            if props.authentication_data.is_some() && props.authentication_method.is_none() {
                return Err(Error::ProtocolError(
                    "CONNECT Authentication Data without Authentication Method",
                ));
            }
        }

        let client_id = mqtt_str(
            r.binary().ok_or(SHORT)?,
            "CONNECT client identifier is not valid MQTT UTF-8",
        )?;

        let will = if has_will {
            let will_props = if version.is_v5() {
                let block = properties::read_block(&mut r)?.ok_or(SHORT)?;
                properties::scan(block, properties::WILL, |_| {})?;
                block
            } else {
                &[]
            };
            let topic = mqtt_str(
                r.binary().ok_or(SHORT)?,
                "CONNECT will topic is not valid MQTT UTF-8",
            )?;
            if !valid_topic_name(topic) {
                return Err(Error::ProtocolError(
                    "CONNECT will topic is empty or contains a wildcard",
                ));
            }
            let payload = r.binary().ok_or(SHORT)?;
            Some(Will {
                qos: will_qos,
                retain: will_retain,
                properties: will_props,
                topic,
                payload,
            })
        } else {
            None
        };

        let credentials_offset = r.pos();
        let (username, username_range) = if has_username {
            let start = r.pos();
            let name = mqtt_str(
                r.binary().ok_or(SHORT)?,
                "CONNECT username is not valid MQTT UTF-8",
            )?;
            (Some(name), Some(start..r.pos()))
        } else {
            (None, None)
        };
        let (password, password_range) = if has_password {
            let start = r.pos();
            let pw = r.binary().ok_or(SHORT)?;
            (Some(pw), Some(start..r.pos()))
        } else {
            (None, None)
        };
        if r.remaining() != 0 {
            return Err(Error::Malformed(
                "bytes after the end of the CONNECT payload",
            ));
        }

        Ok(Connect {
            version,
            protocol_level,
            bridge,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            properties: props,
            client_id,
            will,
            username,
            password,
            layout: ConnectLayout {
                header_len: header.header_len,
                flags_offset,
                credentials_offset,
                username: username_range,
                password: password_range,
                total_len,
            },
        })
    }

    /// Size of the whole packet, fixed header included.
    pub fn total_len(&self) -> usize {
        self.layout.total_len
    }
}

impl fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("version", &self.version)
            .field("protocol_level", &self.protocol_level)
            .field("bridge", &self.bridge)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("layout", &self.layout)
            .finish()
    }
}

/// Writes to `out` a copy of the CONNECT `packet` with its credentials
/// changed, every other byte preserved.
///
/// * `new_username`: `Some(name)` replaces the username, or inserts one (and
///   sets the username flag) if the client sent none; `None` keeps the
///   client's username, or its absence, unchanged.
/// * `drop_password`: removes the password and clears the password flag.
///
/// The remaining length is recomputed (and written in its minimal form).
/// The result never has a password without a username unless the input
/// did, which [`Connect::parse`] only allows in MQTT 5, so the MQTT 3.x rule
/// against it holds. `connect` must come from parsing this same `packet`;
/// a mismatch that would be unsafe is reported as
/// [`Error::InvalidArgument`]. The output is appended: `out` is not cleared.
/// Nothing is written on error.
pub fn rewrite_connect(
    packet: &[u8],
    connect: &Connect<'_>,
    new_username: Option<&str>,
    drop_password: bool,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    const MISMATCH: Error = Error::InvalidArgument("the Connect was not parsed from this packet");
    let layout = &connect.layout;
    let packet = packet.get(..layout.total_len).ok_or(MISMATCH)?;
    let flags = *packet.get(layout.flags_offset).ok_or(MISMATCH)?;
    let before_flags = packet
        .get(layout.header_len..layout.flags_offset)
        .ok_or(MISMATCH)?;
    let after_flags = packet
        .get(layout.flags_offset.saturating_add(1)..layout.credentials_offset)
        .ok_or(MISMATCH)?;
    let field = |range: &Option<Range<usize>>| match range {
        Some(range) => packet.get(range.clone()).ok_or(MISMATCH),
        None => Ok(&[][..]),
    };
    let old_username = field(&layout.username)?;
    let old_password = field(&layout.password)?;
    if (flags & FLAG_USERNAME != 0) != layout.username.is_some()
        || (flags & FLAG_PASSWORD != 0) != layout.password.is_some()
        || layout
            .credentials_offset
            .checked_add(old_username.len() + old_password.len())
            != Some(layout.total_len)
    {
        return Err(MISMATCH);
    }

    let username_field_len = match new_username {
        Some(name) => {
            if name.len() > usize::from(u16::MAX) {
                return Err(Error::InvalidArgument(
                    "replacement username is longer than 65535 bytes",
                ));
            }
            if name.as_bytes().contains(&0) {
                return Err(Error::InvalidArgument(
                    "replacement username contains U+0000",
                ));
            }
            2 + name.len()
        }
        None => old_username.len(),
    };
    let password = if drop_password { &[][..] } else { old_password };
    let remaining_len =
        before_flags.len() + 1 + after_flags.len() + username_field_len + password.len();

    let mut new_flags = flags;
    if new_username.is_some() {
        new_flags |= FLAG_USERNAME;
    }
    if drop_password {
        new_flags &= !FLAG_PASSWORD;
    }

    out.reserve(5 + remaining_len);
    encode_fixed_header(PacketType::Connect.as_u8() << 4, remaining_len, out)?;
    out.extend_from_slice(before_flags);
    out.push(new_flags);
    out.extend_from_slice(after_flags);
    match new_username {
        Some(name) => {
            // Length checked above.
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        None => out.extend_from_slice(old_username),
    }
    out.extend_from_slice(password);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;

    #[test]
    fn mosquitto_pub_v311() {
        let bytes = hex(CONNECT_V311_USER_PW);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.version, ProtocolVersion::V3_1_1);
        assert_eq!(c.protocol_level, 4);
        assert!(!c.bridge);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.client_id, "dev1");
        assert_eq!(c.will, None);
        assert_eq!(c.username, Some("alice"));
        assert_eq!(c.password, Some(&b"pw"[..]));
        assert_eq!(
            c.properties,
            ConnectProperties {
                range: 12..12,
                ..Default::default()
            }
        );
        assert_eq!(c.total_len(), bytes.len());
        assert_eq!(c.layout.flags_offset, 9);
        assert_eq!(c.layout.credentials_offset, 18);
        assert_eq!(c.layout.username, Some(18..25));
        assert_eq!(c.layout.password, Some(25..29));
        let debug = format!("{c:?}");
        assert!(
            debug.contains("<redacted>") && !debug.contains("112, 119"),
            "{debug}"
        );
    }

    #[test]
    fn mosquitto_pub_v31() {
        let bytes = hex(CONNECT_V31_USER_PW);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.version, ProtocolVersion::V3_1);
        assert_eq!(c.client_id, "dev1");
        assert_eq!(c.username, Some("alice"));
        assert_eq!(c.password, Some(&b"pw"[..]));
    }

    #[test]
    fn mosquitto_pub_v5() {
        let bytes = hex(CONNECT_V5_USER_PW);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.version, ProtocolVersion::V5);
        assert_eq!(c.properties.receive_maximum, Some(20));
        assert_eq!(c.properties.range, 13..16);
        assert_eq!(c.properties.raw, &[0x21, 0x00, 0x14]);
        assert_eq!(c.client_id, "dev1");
        assert_eq!(c.username, Some("alice"));
        assert_eq!(c.password, Some(&b"pw"[..]));
    }

    #[test]
    fn mosquitto_pub_v311_will() {
        let bytes = hex(CONNECT_V311_WILL);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.keep_alive, 30);
        assert_eq!(c.client_id, "dev2");
        assert_eq!(
            c.will,
            Some(Will {
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: &[],
                topic: "status/dev2",
                payload: b"offline",
            })
        );
        assert_eq!(c.username, None);
        assert_eq!(c.password, None);
        assert_eq!(c.layout.credentials_offset, bytes.len());
    }

    #[test]
    fn mosquitto_pub_v5_will_and_properties() {
        let bytes = hex(CONNECT_V5_WILL_PROPS);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.version, ProtocolVersion::V5);
        assert_eq!(c.properties.session_expiry_interval, Some(3600));
        assert_eq!(c.properties.receive_maximum, Some(20));
        assert_eq!(c.properties.maximum_packet_size, Some(65536));
        assert_eq!(c.properties.topic_alias_maximum, Some(10));
        assert_eq!(c.properties.authentication_method, None);
        assert_eq!(c.properties.raw.len(), 0x17);
        assert_eq!(&bytes[c.properties.range.clone()], c.properties.raw);
        assert_eq!(c.client_id, "dev3");
        let will = c.will.as_ref().unwrap();
        assert_eq!(will.qos, QoS::ExactlyOnce);
        assert!(!will.retain);
        assert_eq!(will.properties.len(), 0x12);
        assert_eq!(will.topic, "status/dev3");
        assert_eq!(will.payload, b"gone");
        assert_eq!(c.username, Some("bob"));
        assert_eq!(c.password, None);
    }

    #[test]
    fn mosquitto_sub_connects() {
        for (vector, version, client_id) in [
            (CONNECT_V311_SUB, ProtocolVersion::V3_1_1, "sub1"),
            (CONNECT_V31_NO_CREDENTIALS, ProtocolVersion::V3_1, "sub2"),
            (CONNECT_V5_SESSION_EXPIRY, ProtocolVersion::V5, "sub3"),
        ] {
            let bytes = hex(vector);
            let c = Connect::parse(&bytes).unwrap();
            assert_eq!(c.version, version);
            assert_eq!(c.client_id, client_id);
        }
    }

    /// Builds a CONNECT from parts; `body` is everything after the fixed
    /// header.
    fn packet(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_fixed_header(0x10, body.len(), &mut out).unwrap();
        out.extend_from_slice(body);
        out
    }

    fn v5_body(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut body = b"\x00\x04MQTT\x05".to_vec();
        body.push(flags);
        body.extend_from_slice(&[0x00, 0x0A]);
        body.push(props.len() as u8);
        body.extend_from_slice(props);
        body.extend_from_slice(payload);
        body
    }

    #[test]
    fn v5_password_without_username_and_auth() {
        let props = [0x15, 0x00, 0x03, b'S', b'C', b'R', 0x16, 0x00, 0x01, 0xAA];
        let bytes = packet(&v5_body(0x42, &props, b"\x00\x01c\x00\x02pw"));
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.username, None);
        assert_eq!(c.password, Some(&b"pw"[..]));
        assert_eq!(c.properties.authentication_method, Some("SCR"));
        assert_eq!(c.properties.authentication_data, Some(&[0xAA][..]));
        // The same in 3.1.1 is a protocol error.
        let bytes = packet(b"\x00\x04MQTT\x04\x42\x00\x0a\x00\x01c\x00\x02pw");
        assert!(matches!(
            Connect::parse(&bytes),
            Err(Error::ProtocolError(_))
        ));
    }

    #[test]
    fn rejects() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x00\x04MQTT\x04\x03\x00\x0a\x00\x01c", "reserved flag"),
            (
                b"\x00\x04MQTT\x04\x1e\x00\x0a\x00\x01c\x00\x01t\x00\x00",
                "will QoS 3",
            ),
            (
                b"\x00\x04MQTT\x04\x0a\x00\x0a\x00\x01c",
                "will QoS without will",
            ),
            (
                b"\x00\x04MQTT\x04\x22\x00\x0a\x00\x01c",
                "will retain without will",
            ),
            (b"\x00\x04MQTT\x06\x02\x00\x0a\x00\x01c", "level 6"),
            (
                b"\x00\x04MQTT\x03\x02\x00\x0a\x00\x01c",
                "MQTT with level 3",
            ),
            (
                b"\x00\x06MQIsdp\x04\x02\x00\x0a\x00\x01c",
                "MQIsdp with level 4",
            ),
            (b"\x00\x04MQTX\x04\x02\x00\x0a\x00\x01c", "protocol name"),
            (
                b"\x00\x04MQTT\x04\x02\x00\x0a\x00\x01c\x00",
                "trailing byte",
            ),
            (b"\x00\x04MQTT\x04\x02\x00\x0a\x00\x02c", "short client id"),
            (
                b"\x00\x04MQTT\x04\x02\x00\x0a\x00\x01\xff",
                "client id not UTF-8",
            ),
            (b"\x00\x04MQTT\x04\x02\x00\x0a\x00\x01\x00", "client id NUL"),
            (
                b"\x00\x04MQTT\x04\x06\x00\x0a\x00\x01c\x00\x03a/#\x00\x00",
                "will wildcard",
            ),
            (
                b"\x00\x04MQTT\x04\x06\x00\x0a\x00\x01c\x00\x00\x00\x00",
                "empty will topic",
            ),
            (b"\x00\x04MQTT\x04\x82\x00\x0a\x00\x01c", "username missing"),
            (
                b"\x00\x04MQTT\x04\xc2\x00\x0a\x00\x01c\x00\x01u",
                "password missing",
            ),
            (
                b"\x00\x04MQTT\x05\x02\x00\x0a\x03\x23\x00\x01\x00\x01c",
                "topic alias in CONNECT",
            ),
            (
                b"\x00\x04MQTT\x05\x02\x00\x0a\x06\x21\x00\x01\x21\x00\x02\x00\x01c",
                "duplicate",
            ),
            (
                b"\x00\x04MQTT\x05\x02\x00\x0a\x04\x16\x00\x01\xaa\x00\x01c",
                "auth data alone",
            ),
            (
                b"\x00\x04MQTT\x05\x02\x00\x0a\x09\x00\x01c",
                "property block too long",
            ),
        ];
        for &(body, what) in cases {
            let bytes = packet(body);
            assert!(Connect::parse(&bytes).is_err(), "{what}: accepted");
        }
        assert_eq!(
            Connect::parse(&packet(b"\x00\x04MQTT\x06\x02\x00\x0a\x00\x01c")),
            Err(Error::UnsupportedProtocol { level: 6 })
        );
        assert_eq!(
            Connect::parse(&[0x30, 0x00]),
            Err(Error::UnexpectedPacketType {
                expected: PacketType::Connect,
                found: PacketType::Publish
            })
        );
    }

    #[test]
    fn v31_ignores_reserved_flag_and_bridge_bit() {
        let bytes = packet(b"\x00\x06MQIsdp\x83\x03\x00\x0a\x00\x01c");
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.version, ProtocolVersion::V3_1);
        assert!(c.bridge);
        assert_eq!(c.protocol_level, 0x83);
    }

    #[test]
    fn trailing_bytes_after_packet_ignored() {
        let mut bytes = hex(CONNECT_V311_USER_PW);
        let len = bytes.len();
        bytes.extend_from_slice(&[0xC0, 0x00]);
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.total_len(), len);
    }

    #[test]
    fn truncated_is_incomplete() {
        let bytes = hex(CONNECT_V5_WILL_PROPS);
        for cut in 0..bytes.len() {
            assert_eq!(
                Connect::parse(&bytes[..cut]),
                Err(Error::Incomplete),
                "cut {cut}"
            );
        }
    }

    /// A packet whose remaining length is shortened (so fields overrun the
    /// packet) is malformed, never a panic.
    #[test]
    fn shortened_remaining_length() {
        for vector in ALL_CONNECTS {
            let bytes = hex(vector);
            for cut in 0..(bytes.len() - 2) {
                let mut shorter = bytes[2..2 + cut].to_vec();
                shorter.insert(0, cut as u8);
                shorter.insert(0, 0x10);
                assert!(Connect::parse(&shorter).is_err(), "{vector} cut {cut}");
            }
        }
    }

    fn rewrite(bytes: &[u8], user: Option<&str>, drop: bool) -> Vec<u8> {
        let c = Connect::parse(bytes).unwrap();
        let mut out = Vec::new();
        rewrite_connect(bytes, &c, user, drop, &mut out).unwrap();
        out
    }

    #[test]
    fn rewrite_round_trips() {
        for vector in ALL_CONNECTS {
            let bytes = hex(vector);
            let before = Connect::parse(&bytes).unwrap();
            for drop in [false, true] {
                for user in [
                    None,
                    Some(""),
                    Some("gateway-user"),
                    Some(&*"u".repeat(300)),
                ] {
                    let out = rewrite(&bytes, user, drop);
                    let after = Connect::parse(&out).unwrap();
                    assert_eq!(after.version, before.version);
                    assert_eq!(after.protocol_level, before.protocol_level);
                    assert_eq!(after.clean_start, before.clean_start);
                    assert_eq!(after.keep_alive, before.keep_alive);
                    assert_eq!(after.properties.raw, before.properties.raw);
                    assert_eq!(
                        after.properties.receive_maximum,
                        before.properties.receive_maximum
                    );
                    assert_eq!(after.client_id, before.client_id);
                    assert_eq!(after.will, before.will);
                    assert_eq!(after.username, user.or(before.username));
                    if drop {
                        assert_eq!(after.password, None);
                    } else {
                        assert_eq!(after.password, before.password);
                    }
                    assert_eq!(after.total_len(), out.len());
                }
            }
        }
    }

    #[test]
    fn rewrite_is_byte_exact() {
        // Replacing alice/pw with bob and no password.
        let bytes = hex(CONNECT_V311_USER_PW);
        let out = rewrite(&bytes, Some("bob"), true);
        let expected = hex("101500044d51545404 82 003c 000464657631 0003626f62");
        assert_eq!(out, expected);
        // Keeping everything reproduces the input.
        assert_eq!(rewrite(&bytes, None, false), bytes);
        assert_eq!(rewrite(&bytes, Some("alice"), false), bytes);
        // Inserting a username where there was none.
        let bytes = hex(CONNECT_V311_WILL);
        let out = rewrite(&bytes, Some("carol"), false);
        let mut expected = bytes.clone();
        expected[1] += 7;
        expected[9] |= FLAG_USERNAME;
        expected.extend_from_slice(b"\x00\x05carol");
        assert_eq!(out, expected);
    }

    #[test]
    fn rewrite_grows_remaining_length_varint() {
        let bytes = hex(CONNECT_V311_USER_PW);
        let long = "x".repeat(200);
        let out = rewrite(&bytes, Some(&long), false);
        assert_eq!(out[1] & 0x80, 0x80, "two-byte remaining length");
        let c = Connect::parse(&out).unwrap();
        assert_eq!(c.username, Some(long.as_str()));
        assert_eq!(c.password, Some(&b"pw"[..]));
    }

    #[test]
    fn rewrite_v5_password_only() {
        let bytes = packet(&v5_body(0x42, &[], b"\x00\x01c\x00\x02pw"));
        // Drop the password: no credentials left.
        let out = rewrite(&bytes, None, true);
        let c = Connect::parse(&out).unwrap();
        assert_eq!((c.username, c.password), (None, None));
        // Add a username: it goes before the password.
        let out = rewrite(&bytes, Some("u"), false);
        let c = Connect::parse(&out).unwrap();
        assert_eq!((c.username, c.password), (Some("u"), Some(&b"pw"[..])));
    }

    #[test]
    fn rewrite_rejects_bad_arguments() {
        let bytes = hex(CONNECT_V311_USER_PW);
        let c = Connect::parse(&bytes).unwrap();
        let mut out = vec![0xEE];
        let long = "x".repeat(65_536);
        assert!(matches!(
            rewrite_connect(&bytes, &c, Some(&long), false, &mut out),
            Err(Error::InvalidArgument(_))
        ));
        assert!(rewrite_connect(&bytes, &c, Some("a\0b"), false, &mut out).is_err());
        // A Connect from another packet.
        let other = hex(CONNECT_V311_WILL);
        assert!(rewrite_connect(&other, &c, Some("x"), false, &mut out).is_err());
        assert!(rewrite_connect(&bytes[..10], &c, Some("x"), false, &mut out).is_err());
        assert_eq!(out, [0xEE], "nothing written on error");
        // Appends rather than overwriting.
        rewrite_connect(&bytes, &c, None, false, &mut out).unwrap();
        assert_eq!(out[0], 0xEE);
        assert_eq!(&out[1..], &bytes[..]);
    }
}
