//! The CONNECT parser: the checks a broker makes before authentication,
//! field by field in packet order, borrowing every field from the packet.

use core::ops::Range;

use super::packet::{
    Connect, ConnectLayout, ConnectProperties, Will, BRIDGE_LEVEL_BIT, FLAG_CLEAN_START,
    FLAG_PASSWORD, FLAG_RESERVED, FLAG_USERNAME, FLAG_WILL, FLAG_WILL_QOS_MASK, FLAG_WILL_RETAIN,
};
use crate::error::Error;
use crate::header::whole_packet;
use crate::properties::{self, id, PropertyValue};
use crate::reader::{mqtt_str, Reader};
use crate::topic::valid_topic_name;
use crate::types::{PacketType, ProtocolVersion, QoS};

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
        let (header, packet) = whole_packet(packet, PacketType::Connect)?;
        let total_len = header.total_len();
        let mut r = Reader::new(packet, header.header_len);

        let (version, protocol_level) = read_protocol(&mut r)?;
        let flags_offset = r.pos();
        let flags = Flags::read(&mut r, version)?;
        let keep_alive = r.u16().ok_or(SHORT)?;
        let properties = ConnectProperties::read(&mut r, version)?;

        let client_id = mqtt_str(
            r.binary().ok_or(SHORT)?,
            "CONNECT client identifier is not valid MQTT UTF-8",
        )?;
        let will = match flags.will {
            Some((qos, retain)) => Some(Will::read(&mut r, version, qos, retain)?),
            None => None,
        };

        let credentials_offset = r.pos();
        let username = optional_field(&mut r, flags.username)?;
        let username_str = match &username {
            Some(field) => Some(mqtt_str(
                field.bytes,
                "CONNECT username is not valid MQTT UTF-8",
            )?),
            None => None,
        };
        let password = optional_field(&mut r, flags.password)?;
        if r.remaining() != 0 {
            return Err(Error::Malformed(
                "bytes after the end of the CONNECT payload",
            ));
        }

        Ok(Connect {
            version,
            protocol_level,
            bridge: protocol_level & BRIDGE_LEVEL_BIT != 0,
            clean_start: flags.clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username: username_str,
            password: password.as_ref().map(|field| field.bytes),
            layout: ConnectLayout {
                header_len: header.header_len,
                flags_offset,
                credentials_offset,
                username: username.map(|field| field.range),
                password: password.map(|field| field.range),
                total_len,
            },
        })
    }
}

/// Reads the protocol name and level: the version the connection speaks,
/// and the level byte as sent (bridge bit included; the version is decoded
/// with it masked off).
fn read_protocol(r: &mut Reader<'_>) -> Result<(ProtocolVersion, u8), Error> {
    let name = r.binary().ok_or(SHORT)?;
    let protocol_level = r.u8().ok_or(SHORT)?;
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
    Ok((version, protocol_level))
}

/// The connect flags, checked against each other and the version.
struct Flags {
    /// The will's QoS and retain flag, if the will flag is set.
    will: Option<(QoS, bool)>,
    username: bool,
    password: bool,
    clean_start: bool,
}

impl Flags {
    fn read(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Flags, Error> {
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
        let username = flags & FLAG_USERNAME != 0;
        let password = flags & FLAG_PASSWORD != 0;
        if password && !username && !version.is_v5() {
            return Err(Error::ProtocolError(
                "CONNECT password flag set without the username flag",
            ));
        }
        Ok(Flags {
            will: has_will.then_some((will_qos, will_retain)),
            username,
            password,
            clean_start: flags & FLAG_CLEAN_START != 0,
        })
    }
}

impl<'a> ConnectProperties<'a> {
    /// Reads the MQTT 5 property block (nothing before MQTT 5: an empty
    /// block at the reader's position), keeping the values the gateway may
    /// act on.
    fn read(r: &mut Reader<'a>, version: ProtocolVersion) -> Result<Self, Error> {
        let mut props = ConnectProperties {
            range: r.pos()..r.pos(),
            ..ConnectProperties::default()
        };
        if !version.is_v5() {
            return Ok(props);
        }
        let block = properties::read_block(r)?.ok_or(SHORT)?;
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
        Ok(props)
    }
}

impl<'a> Will<'a> {
    /// Reads the will fields of the payload: MQTT 5 will properties, topic
    /// and payload.
    fn read(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Result<Self, Error> {
        let properties = if version.is_v5() {
            let block = properties::read_block(r)?.ok_or(SHORT)?;
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
        Ok(Will {
            qos,
            retain,
            properties,
            topic,
            payload,
        })
    }
}

/// A username or password field: its bytes and where it sits, length
/// prefix included.
struct Field<'a> {
    bytes: &'a [u8],
    range: Range<usize>,
}

/// Reads a username or password field if its flag is `present`.
fn optional_field<'a>(r: &mut Reader<'a>, present: bool) -> Result<Option<Field<'a>>, Error> {
    if !present {
        return Ok(None);
    }
    let start = r.pos();
    let bytes = r.binary().ok_or(SHORT)?;
    Ok(Some(Field {
        bytes,
        range: start..r.pos(),
    }))
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

    #[test]
    fn v5_password_without_username_and_auth() {
        let props = [0x15, 0x00, 0x03, b'S', b'C', b'R', 0x16, 0x00, 0x01, 0xAA];
        let bytes = connect_packet(&connect_v5_body(0x42, &props, b"\x00\x01c\x00\x02pw"));
        let c = Connect::parse(&bytes).unwrap();
        assert_eq!(c.username, None);
        assert_eq!(c.password, Some(&b"pw"[..]));
        assert_eq!(c.properties.authentication_method, Some("SCR"));
        assert_eq!(c.properties.authentication_data, Some(&[0xAA][..]));
        // The same in 3.1.1 is a protocol error.
        let bytes = connect_packet(b"\x00\x04MQTT\x04\x42\x00\x0a\x00\x01c\x00\x02pw");
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
            let bytes = connect_packet(body);
            assert!(Connect::parse(&bytes).is_err(), "{what}: accepted");
        }
        assert_eq!(
            Connect::parse(&connect_packet(b"\x00\x04MQTT\x06\x02\x00\x0a\x00\x01c")),
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
        let bytes = connect_packet(b"\x00\x06MQIsdp\x83\x03\x00\x0a\x00\x01c");
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
}
