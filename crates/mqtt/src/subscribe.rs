//! SUBSCRIBE and UNSUBSCRIBE: the packet id, the MQTT 5 properties and the
//! list of topic filters (with subscription options for SUBSCRIBE). The
//! whole list is validated when the packet is parsed; iterating it afterwards
//! re-reads the packet in place and cannot fail.

use crate::error::Error;
use crate::header::whole_packet;
use crate::properties::{self, id, PropertyValue, Rules};
use crate::reader::{mqtt_str, Reader};
use crate::topic::{shared_subscription, valid_topic_filter, SHARE_PREFIX};
use crate::types::{PacketType, ProtocolVersion, QoS};

/// Subscription options: maximum QoS (two bits).
pub const OPTION_QOS_MASK: u8 = 0b0000_0011;
/// Subscription option (MQTT 5): No Local.
pub const OPTION_NO_LOCAL: u8 = 0b0000_0100;
/// Subscription option (MQTT 5): Retain As Published.
pub const OPTION_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
/// Subscription options (MQTT 5): Retain Handling (two bits).
pub const OPTION_RETAIN_HANDLING_MASK: u8 = 0b0011_0000;

/// A parsed SUBSCRIBE packet, borrowing from the packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// The packet identifier (never 0), echoed by the SUBACK.
    pub packet_id: u16,
    /// The MQTT 5 property block, without its length prefix (empty before
    /// MQTT 5).
    pub properties: &'a [u8],
    /// The MQTT 5 Subscription Identifier property, if present.
    pub subscription_identifier: Option<u32>,
    /// The number of topic filters (at least 1); a SUBACK needs one return
    /// code per filter.
    pub count: usize,
    /// Size of the whole packet.
    pub total_len: usize,
    payload: &'a [u8],
}

/// One entry of a SUBSCRIBE: a topic filter and its options byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeFilter<'a> {
    /// The topic filter, validated (a shared subscription keeps its
    /// `$share/group/` prefix).
    pub filter: &'a str,
    /// The subscription options byte: QoS in bits 0-1; MQTT 5 adds No
    /// Local, Retain As Published and Retain Handling.
    pub options: u8,
}

impl SubscribeFilter<'_> {
    /// The maximum QoS requested.
    pub fn max_qos(&self) -> QoS {
        // Validated at parse time; 3 cannot occur.
        QoS::from_bits(self.options & OPTION_QOS_MASK).unwrap_or(QoS::ExactlyOnce)
    }
}

/// Iterator over the entries of a [`Subscribe`].
#[derive(Debug, Clone)]
pub struct SubscribeFilters<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for SubscribeFilters<'a> {
    type Item = SubscribeFilter<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let filter = core::str::from_utf8(self.reader.binary()?).ok()?;
        let options = self.reader.u8()?;
        Some(SubscribeFilter { filter, options })
    }
}

/// A parsed UNSUBSCRIBE packet, borrowing from the packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// The packet identifier (never 0), echoed by the UNSUBACK.
    pub packet_id: u16,
    /// The MQTT 5 property block, without its length prefix (empty before
    /// MQTT 5).
    pub properties: &'a [u8],
    /// The number of topic filters (at least 1).
    pub count: usize,
    /// Size of the whole packet.
    pub total_len: usize,
    payload: &'a [u8],
}

/// Iterator over the topic filters of an [`Unsubscribe`].
#[derive(Debug, Clone)]
pub struct UnsubscribeFilters<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for UnsubscribeFilters<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<Self::Item> {
        core::str::from_utf8(self.reader.binary()?).ok()
    }
}

/// What SUBSCRIBE and UNSUBSCRIBE share: the header, packet id and
/// property block, and the reader positioned at the payload.
struct Common<'a> {
    packet_id: u16,
    properties: &'a [u8],
    total_len: usize,
    payload: Reader<'a>,
}

fn parse_common<'a>(
    packet: &'a [u8],
    expected: PacketType,
    version: ProtocolVersion,
    rules: Rules,
    mut on_property: impl FnMut(&properties::Property<'a>),
) -> Result<Common<'a>, Error> {
    let (header, packet) = whole_packet(packet, expected)?;
    let total_len = header.total_len();
    let mut r = Reader::new(packet, header.header_len);
    let packet_id = r
        .u16()
        .ok_or(Error::Malformed("packet identifier missing"))?;
    if packet_id == 0 {
        return Err(Error::ProtocolError("packet identifier 0"));
    }
    let properties = if version.is_v5() {
        let block = properties::read_block(&mut r)?.ok_or(Error::Malformed(
            "property block runs past the end of the packet",
        ))?;
        properties::scan(block, rules, &mut on_property)?;
        block
    } else {
        &[]
    };
    Ok(Common {
        packet_id,
        properties,
        total_len,
        payload: r,
    })
}

impl<'a> Common<'a> {
    /// Reads the payload's entries with `entry`, one after the other to its
    /// end, and returns how many there are: at least one, or the protocol
    /// error `empty`.
    fn count_entries(
        &self,
        empty: &'static str,
        mut entry: impl FnMut(&mut Reader<'a>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mut r = self.payload.clone();
        let mut count = 0usize;
        while r.remaining() > 0 {
            entry(&mut r)?;
            count += 1;
        }
        if count == 0 {
            return Err(Error::ProtocolError(empty));
        }
        Ok(count)
    }
}

/// Reads one topic filter and checks it.
fn read_filter<'a>(
    r: &mut Reader<'a>,
    version: ProtocolVersion,
    short: &'static str,
) -> Result<&'a str, Error> {
    let filter = mqtt_str(
        r.binary().ok_or(Error::Malformed(short))?,
        "topic filter is not valid MQTT UTF-8",
    )?;
    if !valid_topic_filter(filter) {
        return Err(Error::ProtocolError("invalid topic filter"));
    }
    if version.is_v5() && filter.starts_with(SHARE_PREFIX) && shared_subscription(filter).is_none()
    {
        return Err(Error::ProtocolError("invalid shared subscription filter"));
    }
    Ok(filter)
}

impl<'a> Subscribe<'a> {
    /// Parses a whole SUBSCRIBE packet (bytes after it are ignored;
    /// [`Error::Incomplete`] if it is not all in `packet`).
    ///
    /// Checks the packet id (not 0), the MQTT 5 properties (only
    /// Subscription Identifier, once, and User Property), every filter
    /// (valid MQTT UTF-8, valid topic filter, well-formed `$share/` in MQTT
    /// 5) and every options byte (reserved bits clear, QoS not 3, Retain
    /// Handling not 3, no No Local on a shared subscription), and that there
    /// is at least one filter.
    pub fn parse(packet: &'a [u8], version: ProtocolVersion) -> Result<Subscribe<'a>, Error> {
        let mut subscription_identifier = None;
        let common = parse_common(
            packet,
            PacketType::Subscribe,
            version,
            properties::SUBSCRIBE,
            |p| {
                if let (id::SUBSCRIPTION_IDENTIFIER, PropertyValue::VarInt(v)) = (p.id, p.value) {
                    subscription_identifier = Some(v);
                }
            },
        )?;
        let count = common.count_entries("SUBSCRIBE without a topic filter", |r| {
            let filter = read_filter(r, version, "SUBSCRIBE topic filter runs past the end")?;
            let options = r
                .u8()
                .ok_or(Error::Malformed("SUBSCRIBE options byte missing"))?;
            if options & OPTION_QOS_MASK == 3 {
                return Err(Error::Malformed("SUBSCRIBE with QoS 3"));
            }
            if version.is_v5() {
                if options & 0b1100_0000 != 0 {
                    return Err(Error::Malformed("reserved SUBSCRIBE option bits set"));
                }
                if options & OPTION_RETAIN_HANDLING_MASK == OPTION_RETAIN_HANDLING_MASK {
                    return Err(Error::ProtocolError("SUBSCRIBE with Retain Handling 3"));
                }
                if options & OPTION_NO_LOCAL != 0 && filter.starts_with(SHARE_PREFIX) {
                    return Err(Error::ProtocolError(
                        "SUBSCRIBE with No Local on a shared subscription",
                    ));
                }
            } else if options & 0b1111_1100 != 0 {
                return Err(Error::Malformed("reserved SUBSCRIBE option bits set"));
            }
            Ok(())
        })?;
        Ok(Subscribe {
            packet_id: common.packet_id,
            properties: common.properties,
            subscription_identifier,
            count,
            total_len: common.total_len,
            payload: payload_slice(&common.payload),
        })
    }

    /// The topic filters and their options, in packet order.
    pub fn filters(&self) -> SubscribeFilters<'a> {
        SubscribeFilters {
            reader: Reader::new(self.payload, 0),
        }
    }
}

impl<'a> Unsubscribe<'a> {
    /// Parses a whole UNSUBSCRIBE packet (bytes after it are ignored;
    /// [`Error::Incomplete`] if it is not all in `packet`).
    ///
    /// Checks the packet id (not 0), the MQTT 5 properties (User Property
    /// only), every filter (valid MQTT UTF-8, valid topic filter), and that
    /// there is at least one.
    pub fn parse(packet: &'a [u8], version: ProtocolVersion) -> Result<Unsubscribe<'a>, Error> {
        let common = parse_common(
            packet,
            PacketType::Unsubscribe,
            version,
            properties::UNSUBSCRIBE,
            |_| {},
        )?;
        let count = common.count_entries("UNSUBSCRIBE without a topic filter", |r| {
            read_filter(r, version, "UNSUBSCRIBE topic filter runs past the end").map(|_| ())
        })?;
        Ok(Unsubscribe {
            packet_id: common.packet_id,
            properties: common.properties,
            count,
            total_len: common.total_len,
            payload: payload_slice(&common.payload),
        })
    }

    /// The topic filters, in packet order.
    pub fn filters(&self) -> UnsubscribeFilters<'a> {
        UnsubscribeFilters {
            reader: Reader::new(self.payload, 0),
        }
    }
}

/// The bytes from the reader's position to the end of its buffer.
fn payload_slice<'a>(r: &Reader<'a>) -> &'a [u8] {
    let mut r = r.clone();
    r.take(r.remaining()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;
    use ProtocolVersion::*;

    #[test]
    fn captured_v311_three_filters() {
        let bytes = hex(SUBSCRIBE_V311_THREE);
        let s = Subscribe::parse(&bytes, V3_1_1).unwrap();
        assert_eq!(s.packet_id, 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.total_len, bytes.len());
        let filters: Vec<_> = s.filters().map(|f| (f.filter, f.options)).collect();
        assert_eq!(
            filters,
            [
                ("sensors/+/temp", 1),
                ("alerts/#", 1),
                ("$SYS/broker/uptime", 1)
            ]
        );
        assert_eq!(s.filters().next().unwrap().max_qos(), QoS::AtLeastOnce);
    }

    #[test]
    fn captured_v31() {
        let bytes = hex(SUBSCRIBE_V31_TWO);
        let s = Subscribe::parse(&bytes, V3_1).unwrap();
        let filters: Vec<_> = s.filters().map(|f| (f.filter, f.max_qos())).collect();
        assert_eq!(
            filters,
            [("a/+/c", QoS::ExactlyOnce), ("#", QoS::ExactlyOnce)]
        );
    }

    #[test]
    fn captured_v5_with_properties() {
        let bytes = hex(SUBSCRIBE_V5_PROPS);
        let s = Subscribe::parse(&bytes, V5).unwrap();
        assert_eq!(s.subscription_identifier, Some(7));
        assert_eq!(s.properties.len(), 9);
        let filters: Vec<_> = s.filters().map(|f| (f.filter, f.options)).collect();
        assert_eq!(filters, [("sensors/#", 1), ("cmd/+", 1)]);
        let bytes = hex(SUBSCRIBE_V5_ONE);
        let s = Subscribe::parse(&bytes, V5).unwrap();
        assert_eq!(s.count, 1);
        assert_eq!(s.subscription_identifier, None);
    }

    #[test]
    fn captured_unsubscribes() {
        for (vector, version, filter, id) in [
            (UNSUBSCRIBE_V5_PLUS, V5, "old/+/x", 2),
            (UNSUBSCRIBE_V5_HASH, V5, "old/#", 3),
            (UNSUBSCRIBE_V311_PLUS, V3_1_1, "old/+/x", 2),
            (UNSUBSCRIBE_V311_HASH, V3_1_1, "old/#", 3),
        ] {
            let bytes = hex(vector);
            let u = Unsubscribe::parse(&bytes, version).unwrap();
            assert_eq!(u.packet_id, id);
            assert_eq!(u.count, 1);
            assert_eq!(u.filters().collect::<Vec<_>>(), [filter]);
        }
    }

    #[test]
    fn v5_options() {
        // No Local | Retain As Published | Retain Handling 2 | QoS 2.
        let bytes = [0x82, 0x07, 0x00, 0x05, 0x00, 0x00, 0x01, b'a', 0b0010_1110];
        let s = Subscribe::parse(&bytes, V5).unwrap();
        let f = s.filters().next().unwrap();
        assert_eq!(f.options, 0b0010_1110);
        assert_eq!(f.max_qos(), QoS::ExactlyOnce);
        // The same options byte is malformed in 3.1.1.
        let bytes = [0x82, 0x07, 0x00, 0x05, 0x00, 0x01, b'a', 0b0010_1110];
        assert!(Subscribe::parse(&bytes, V3_1_1).is_err());
    }

    #[test]
    fn several_unsubscribe_filters() {
        let bytes = [
            0xA2, 0x09, 0x00, 0x0A, 0x00, 0x01, b'a', 0x00, 0x02, b'b', b'/',
        ];
        let u = Unsubscribe::parse(&bytes, V3_1_1).unwrap();
        assert_eq!(u.count, 2);
        assert_eq!(u.filters().collect::<Vec<_>>(), ["a", "b/"]);
    }

    #[test]
    fn subscribe_rejects() {
        let v311: &[(&[u8], &str)] = &[
            (&[0x82, 0x02, 0x00, 0x01], "no filter"),
            (
                &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
                "packet id 0",
            ),
            (&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], "QoS 3"),
            (
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04],
                "reserved bit",
            ),
            (
                &[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
                "options missing",
            ),
            (
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', 0x00],
                "filter overruns",
            ),
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', b'#', 0x00],
                "bad filter",
            ),
            (&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], "empty filter"),
            (
                &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0xFF, 0x00],
                "not UTF-8",
            ),
            (&[0x82, 0x01, 0x00], "packet id short"),
            (&[0xA2, 0x02, 0x00, 0x01], "UNSUBSCRIBE"),
        ];
        for &(bytes, what) in v311 {
            assert!(Subscribe::parse(bytes, V3_1_1).is_err(), "{what}: accepted");
        }
        let v5: &[(&[u8], &str)] = &[
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30],
                "retain handling 3",
            ),
            (
                &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
                "reserved bit",
            ),
            (
                &[
                    0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00,
                ],
                "sub id 0",
            ),
            (
                &[
                    0x82, 0x09, 0x00, 0x01, 0x02, 0x23, 0x01, 0x00, 0x01, b'a', 0x00,
                ],
                "alias",
            ),
            (
                &[0x82, 0x04, 0x00, 0x01, 0x05, 0x00],
                "property block overruns",
            ),
        ];
        for &(bytes, what) in v5 {
            assert!(Subscribe::parse(bytes, V5).is_err(), "{what}: accepted");
        }
        let mut shared_no_local = vec![0x82, 0x0F, 0x00, 0x01, 0x00, 0x00, 0x09];
        shared_no_local.extend_from_slice(b"$share/g/");
        shared_no_local.push(0x04);
        assert!(Subscribe::parse(&shared_no_local, V5).is_err(), "bad share");
        let mut shared_ok = vec![0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A];
        shared_ok.extend_from_slice(b"$share/g/a");
        shared_ok.push(0x01);
        assert!(Subscribe::parse(&shared_ok, V5).is_ok());
        *shared_ok.last_mut().unwrap() = 0x05;
        assert!(
            Subscribe::parse(&shared_ok, V5).is_err(),
            "No Local on a share"
        );
    }

    #[test]
    fn unsubscribe_rejects() {
        for (bytes, what) in [
            (&[0xA2, 0x02, 0x00, 0x01][..], "no filter"),
            (&[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], "packet id 0"),
            (&[0xA2, 0x05, 0x00, 0x01, 0x00, 0x02, b'a'], "overrun"),
            (
                &[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'#', b'a'],
                "bad filter",
            ),
        ] {
            assert!(
                Unsubscribe::parse(bytes, V3_1_1).is_err(),
                "{what}: accepted"
            );
        }
    }

    #[test]
    fn truncations() {
        for (vector, version) in [
            (SUBSCRIBE_V311_THREE, V3_1_1),
            (SUBSCRIBE_V5_PROPS, V5),
            (UNSUBSCRIBE_V5_PLUS, V5),
        ] {
            let bytes = hex(vector);
            for cut in 0..bytes.len() {
                let part = &bytes[..cut];
                assert!(Subscribe::parse(part, version).is_err());
                assert!(Unsubscribe::parse(part, version).is_err());
            }
        }
    }
}
