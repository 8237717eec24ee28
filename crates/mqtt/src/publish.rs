//! PUBLISH: the fixed and variable header of an application message (flags,
//! topic name, packet id, MQTT 5 properties), parsed from a prefix of the
//! packet so that a relay can decide about a message before its payload has
//! arrived, and never has to buffer or copy the payload.

use crate::error::Error;
use crate::header::FixedHeader;
use crate::properties::{self, id, PropertyValue};
use crate::reader::{mqtt_str, Reader};
use crate::topic::valid_topic_name;
use crate::types::{PacketType, ProtocolVersion, QoS};

/// The header of a PUBLISH packet, borrowing from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// DUP: this may be a redelivery (only ever set with QoS 1 or 2).
    pub dup: bool,
    /// The QoS of the message.
    pub qos: QoS,
    /// RETAIN: the broker should keep this message for future subscribers.
    pub retain: bool,
    /// The topic name, validated (no wildcards, no U+0000). Empty only in
    /// MQTT 5 when a [`topic_alias`](Self::topic_alias) stands for a topic
    /// set by an earlier PUBLISH of the connection: resolving it is the
    /// caller's job.
    pub topic: &'a str,
    /// The packet identifier, present for QoS 1 and 2 (never 0).
    pub packet_id: Option<u16>,
    /// The MQTT 5 Topic Alias property (0x23), if present (never 0).
    pub topic_alias: Option<u16>,
    /// The MQTT 5 property block, without its length prefix (empty before
    /// MQTT 5).
    pub properties: &'a [u8],
    /// Bytes from the start of the packet to the start of the payload.
    pub header_len: usize,
    /// Size of the whole packet, fixed header and payload included.
    pub total_len: usize,
}

impl<'a> Publish<'a> {
    /// Parses the header of the PUBLISH at the start of `buf`, which may
    /// hold only a prefix of the packet.
    ///
    /// Returns `Ok(None)` until `buf` holds the fixed header, topic name,
    /// packet id and (MQTT 5) property block; the payload need not be there.
    /// Bytes after the packet are ignored. Errors for QoS 3, DUP at QoS 0,
    /// packet id 0, a topic that is not valid MQTT UTF-8 or contains a
    /// wildcard, an empty topic without a topic alias (or before MQTT 5),
    /// an invalid property block, and a variable header longer than the
    /// packet.
    pub fn parse_prefix(
        buf: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Option<Publish<'a>>, Error> {
        let Some(header) = FixedHeader::parse(buf)? else {
            return Ok(None);
        };
        header.expect(PacketType::Publish)?;
        let total_len = header.total_len();
        let complete = buf.len() >= total_len;
        let available = buf.get(..total_len).unwrap_or(buf);
        let mut r = Reader::new(available, header.header_len);

        // A short read means "wait for more" while the packet is still
        // arriving, and "malformed" once all of it is there.
        macro_rules! need {
            ($read:expr) => {
                match $read {
                    Some(value) => value,
                    None if complete => {
                        return Err(Error::Malformed(
                            "PUBLISH variable header runs past the end of the packet",
                        ))
                    }
                    None => return Ok(None),
                }
            };
        }

        let flags = header.flags;
        let dup = flags & 0b1000 != 0;
        let retain = flags & 0b0001 != 0;
        let qos =
            QoS::from_bits((flags >> 1) & 0b11).ok_or(Error::Malformed("PUBLISH with QoS 3"))?;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::ProtocolError("PUBLISH with DUP set at QoS 0"));
        }

        let topic = mqtt_str(need!(r.binary()), "PUBLISH topic is not valid MQTT UTF-8")?;
        if !topic.is_empty() && !valid_topic_name(topic) {
            return Err(Error::ProtocolError(
                "PUBLISH topic name contains a wildcard",
            ));
        }

        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            let id = need!(r.u16());
            if id == 0 {
                return Err(Error::ProtocolError("PUBLISH with packet identifier 0"));
            }
            Some(id)
        };

        let mut topic_alias = None;
        let mut props: &[u8] = &[];
        if version.is_v5() {
            props = need!(properties::read_block(&mut r)?);
            properties::scan(props, properties::PUBLISH, |p| {
                if let (id::TOPIC_ALIAS, PropertyValue::TwoByteInt(alias)) = (p.id, p.value) {
                    topic_alias = Some(alias);
                }
            })?;
        }
        if topic.is_empty() && topic_alias.is_none() {
            return Err(Error::ProtocolError(
                "PUBLISH with an empty topic name and no Topic Alias",
            ));
        }

        Ok(Some(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            topic_alias,
            properties: props,
            header_len: r.pos(),
            total_len,
        }))
    }

    /// Size of the payload in bytes.
    pub fn payload_len(&self) -> usize {
        self.total_len.saturating_sub(self.header_len)
    }

    /// The payload within `packet` (the buffer this was parsed from), or
    /// `None` if it has not all arrived yet.
    pub fn payload<'b>(&self, packet: &'b [u8]) -> Option<&'b [u8]> {
        packet.get(self.header_len..self.total_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;
    use ProtocolVersion::*;

    fn parse(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Publish<'_>>, Error> {
        Publish::parse_prefix(bytes, version)
    }

    #[test]
    fn captured_qos0() {
        let bytes = hex(PUBLISH_V311_QOS0);
        let p = parse(&bytes, V3_1_1).unwrap().unwrap();
        assert_eq!(p.qos, QoS::AtMostOnce);
        assert!(!p.dup && !p.retain);
        assert_eq!(p.topic, "sensors/dev1/temp");
        assert_eq!(p.packet_id, None);
        assert_eq!(p.topic_alias, None);
        assert_eq!(p.header_len, 2 + 2 + 17);
        assert_eq!(p.total_len, bytes.len());
        assert_eq!(p.payload(&bytes), Some(&b"21.5"[..]));
        assert_eq!(p.payload_len(), 4);
    }

    #[test]
    fn captured_qos1_v31() {
        let bytes = hex(PUBLISH_V31_QOS1);
        let p = parse(&bytes, V3_1).unwrap().unwrap();
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_eq!(p.packet_id, Some(1));
        assert_eq!(p.payload(&bytes), Some(&b"21.5"[..]));
    }

    #[test]
    fn captured_qos2_v5() {
        let bytes = hex(PUBLISH_V5_QOS2);
        let p = parse(&bytes, V5).unwrap().unwrap();
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert_eq!(p.packet_id, Some(1));
        assert_eq!(p.properties, &[]);
        assert_eq!(p.payload(&bytes), Some(&b"21.5"[..]));
    }

    #[test]
    fn captured_retain() {
        let bytes = hex(PUBLISH_V311_QOS1_RETAIN);
        let p = parse(&bytes, V3_1_1).unwrap().unwrap();
        assert!(p.retain);
        assert_eq!(p.topic, "a/b");
        assert_eq!(p.payload(&bytes), Some(&b"hi"[..]));
    }

    #[test]
    fn captured_v5_topic_alias_with_topic() {
        let bytes = hex(PUBLISH_V5_TOPIC_ALIAS);
        let p = parse(&bytes, V5).unwrap().unwrap();
        assert_eq!(p.topic, "alias/topic");
        assert_eq!(p.topic_alias, Some(3));
        assert_eq!(p.packet_id, Some(1));
        assert_eq!(p.properties.len(), 10);
        assert_eq!(p.payload(&bytes), Some(&b"x"[..]));
    }

    #[test]
    fn v5_alias_only() {
        // QoS 1, empty topic, packet id 7, Topic Alias 3, payload "hi".
        let bytes = [
            0x32, 0x0A, 0x00, 0x00, 0x00, 0x07, 0x03, 0x23, 0x00, 0x03, b'h', b'i',
        ];
        let p = parse(&bytes, V5).unwrap().unwrap();
        assert_eq!(p.topic, "");
        assert_eq!(p.topic_alias, Some(3));
        assert_eq!(p.packet_id, Some(7));
        assert_eq!(p.header_len, 10);
        assert_eq!(p.payload(&bytes), Some(&b"hi"[..]));
        // An empty topic without an alias is a protocol error.
        let bytes = [0x30, 0x03, 0x00, 0x00, 0x00];
        assert!(matches!(parse(&bytes, V5), Err(Error::ProtocolError(_))));
        let bytes = [0x30, 0x02, 0x00, 0x00];
        assert!(matches!(
            parse(&bytes, V3_1_1),
            Err(Error::ProtocolError(_))
        ));
    }

    #[test]
    fn v5_without_properties_is_malformed() {
        // A 3.1.1 packet read as MQTT 5: the first payload byte is taken as
        // a property length that runs past the packet.
        let bytes = hex(PUBLISH_V311_QOS0);
        assert!(parse(&bytes, V5).is_err());
    }

    #[test]
    fn prefix_without_payload() {
        let bytes = hex(PUBLISH_V5_TOPIC_ALIAS);
        let full = parse(&bytes, V5).unwrap().unwrap();
        for cut in 0..bytes.len() {
            let got = parse(&bytes[..cut], V5).unwrap();
            if cut < full.header_len {
                assert_eq!(got, None, "cut {cut}");
            } else {
                assert_eq!(got, Some(full), "cut {cut}");
                assert_eq!(got.unwrap().payload(&bytes[..cut]), None);
            }
        }
    }

    #[test]
    fn every_truncation_of_every_vector() {
        for vector in [
            PUBLISH_V311_QOS0,
            PUBLISH_V31_QOS1,
            PUBLISH_V311_QOS1_RETAIN,
        ] {
            let bytes = hex(vector);
            for version in [V3_1, V3_1_1] {
                let full = parse(&bytes, version).unwrap().unwrap();
                for cut in 0..bytes.len() {
                    let got = parse(&bytes[..cut], version).unwrap();
                    assert_eq!(got.is_some(), cut >= full.header_len, "{vector} cut {cut}");
                }
            }
            // Read as MQTT 5 (a wrong guess), truncations are None or errors.
            for cut in 0..=bytes.len() {
                let _ = parse(&bytes[..cut], V5);
            }
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x36, 0x03, 0x00, 0x01, b'a'], "QoS 3"),
            (&[0x38, 0x03, 0x00, 0x01, b'a'], "DUP at QoS 0"),
            (&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], "packet id 0"),
            (&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'], "wildcard"),
            (&[0x30, 0x05, 0x00, 0x03, b'a', b'+', b'b'], "wildcard +"),
            (&[0x30, 0x03, 0x00, 0x01, 0xFF], "not UTF-8"),
            (&[0x30, 0x03, 0x00, 0x01, 0x00], "NUL"),
            (
                &[0x30, 0x03, 0x00, 0x05, b'a'],
                "topic longer than the packet",
            ),
            (&[0x32, 0x03, 0x00, 0x01, b'a'], "packet id missing"),
            (&[0x20, 0x02, 0x00, 0x00], "CONNACK"),
        ];
        for &(bytes, what) in cases {
            assert!(parse(bytes, V3_1_1).is_err(), "{what}: accepted");
        }
        let v5_cases: &[(&[u8], &str)] = &[
            (
                &[0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x23, 0x00],
                "short alias",
            ),
            (
                &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00],
                "alias 0",
            ),
            (
                &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x21, 0x00, 0x01],
                "not allowed",
            ),
            (
                &[
                    0x30, 0x0A, 0x00, 0x01, b'a', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02,
                ],
                "dup",
            ),
        ];
        for &(bytes, what) in v5_cases {
            assert!(parse(bytes, V5).is_err(), "{what}: accepted");
        }
    }

    #[test]
    fn topic_error_before_payload() {
        // The topic is judged as soon as it is in the buffer.
        let bytes = [0x30, 0x7F, 0x00, 0x03, b'a', b'/', b'#'];
        assert!(parse(&bytes, V3_1_1).is_err());
    }
}
