//! MQTT 5 properties: the identifier/value lists that follow the variable
//! header of CONNECT, PUBLISH, SUBSCRIBE and others. [`Properties`] walks a
//! property block in place; the packet parsers use it to skip blocks
//! correctly, reject properties that do not belong in the packet or appear
//! twice, and pick out the few values the gateway cares about.

use crate::error::Error;
use crate::reader::{mqtt_str, Reader};

/// Property identifiers (MQTT 5.0, section 2.2.2.2).
pub mod id {
    /// Payload Format Indicator (byte).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Message Expiry Interval (four-byte integer).
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// Content Type (UTF-8 string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response Topic (UTF-8 string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation Data (binary data).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription Identifier (variable byte integer).
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Session Expiry Interval (four-byte integer).
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// Assigned Client Identifier (UTF-8 string).
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Server Keep Alive (two-byte integer).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Authentication Method (UTF-8 string).
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Authentication Data (binary data).
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Request Problem Information (byte).
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Will Delay Interval (four-byte integer).
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Request Response Information (byte).
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// Response Information (UTF-8 string).
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Server Reference (UTF-8 string).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Reason String (UTF-8 string).
    pub const REASON_STRING: u8 = 0x1F;
    /// Receive Maximum (two-byte integer).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic Alias Maximum (two-byte integer).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic Alias (two-byte integer).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Maximum QoS (byte).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Retain Available (byte).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// User Property (UTF-8 string pair).
    pub const USER_PROPERTY: u8 = 0x26;
    /// Maximum Packet Size (four-byte integer).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Wildcard Subscription Available (byte).
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Subscription Identifier Available (byte).
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Shared Subscription Available (byte).
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The value of one property, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    /// A one-byte value.
    Byte(u8),
    /// A big-endian two-byte integer.
    TwoByteInt(u16),
    /// A big-endian four-byte integer.
    FourByteInt(u32),
    /// A variable byte integer.
    VarInt(u32),
    /// A UTF-8 string (validated, no U+0000).
    Utf8(&'a str),
    /// Binary data.
    Binary(&'a [u8]),
    /// A UTF-8 string pair (User Property): name, value.
    Utf8Pair(&'a str, &'a str),
}

/// One property: its identifier (see [`id`]) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property<'a> {
    /// The property identifier.
    pub id: u8,
    /// The value, typed as the specification defines for `id`.
    pub value: PropertyValue<'a>,
}

impl Property<'_> {
    /// The value as an integer, for the integer-typed properties.
    pub fn as_u32(&self) -> Option<u32> {
        match self.value {
            PropertyValue::Byte(v) => Some(u32::from(v)),
            PropertyValue::TwoByteInt(v) => Some(u32::from(v)),
            PropertyValue::FourByteInt(v) | PropertyValue::VarInt(v) => Some(v),
            _ => None,
        }
    }
}

/// An iterator over a property block (the bytes after the property length),
/// yielding each property or the first error, then stopping.
///
/// Values are type-checked and range-checked where the specification says a
/// value is a protocol error (a Topic Alias, Receive Maximum, Maximum Packet
/// Size or Subscription Identifier of 0; a boolean byte other than 0 or 1).
/// Whether a property is allowed in a given packet is checked by the packet
/// parsers, not here.
#[derive(Debug, Clone)]
pub struct Properties<'a> {
    reader: Reader<'a>,
    done: bool,
}

impl<'a> Properties<'a> {
    /// Iterates the property block `block` (without its length prefix).
    pub fn new(block: &'a [u8]) -> Self {
        Properties {
            reader: Reader::new(block, 0),
            done: false,
        }
    }

    fn read_one(&mut self) -> Result<Property<'a>, Error> {
        const SHORT: Error = Error::Malformed("property value runs past its property block");
        let r = &mut self.reader;
        let raw_id = r.varint()?.ok_or(SHORT)?;
        let id = u8::try_from(raw_id).map_err(|_| UNKNOWN)?;
        let value = match id {
            id::PAYLOAD_FORMAT_INDICATOR
            | id::REQUEST_PROBLEM_INFORMATION
            | id::REQUEST_RESPONSE_INFORMATION
            | id::MAXIMUM_QOS
            | id::RETAIN_AVAILABLE
            | id::WILDCARD_SUBSCRIPTION_AVAILABLE
            | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | id::SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = r.u8().ok_or(SHORT)?;
                if v > 1 {
                    return Err(Error::ProtocolError(
                        "boolean property value other than 0 or 1",
                    ));
                }
                PropertyValue::Byte(v)
            }
            id::SERVER_KEEP_ALIVE
            | id::RECEIVE_MAXIMUM
            | id::TOPIC_ALIAS_MAXIMUM
            | id::TOPIC_ALIAS => {
                let v = r.u16().ok_or(SHORT)?;
                if v == 0 && id == id::RECEIVE_MAXIMUM {
                    return Err(Error::ProtocolError("Receive Maximum of 0"));
                }
                if v == 0 && id == id::TOPIC_ALIAS {
                    return Err(Error::ProtocolError("Topic Alias of 0"));
                }
                PropertyValue::TwoByteInt(v)
            }
            id::MESSAGE_EXPIRY_INTERVAL
            | id::SESSION_EXPIRY_INTERVAL
            | id::WILL_DELAY_INTERVAL
            | id::MAXIMUM_PACKET_SIZE => {
                let v = r.u32().ok_or(SHORT)?;
                if v == 0 && id == id::MAXIMUM_PACKET_SIZE {
                    return Err(Error::ProtocolError("Maximum Packet Size of 0"));
                }
                PropertyValue::FourByteInt(v)
            }
            id::SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?.ok_or(SHORT)?;
                if v == 0 {
                    return Err(Error::ProtocolError("Subscription Identifier of 0"));
                }
                PropertyValue::VarInt(v)
            }
            id::CONTENT_TYPE
            | id::RESPONSE_TOPIC
            | id::ASSIGNED_CLIENT_IDENTIFIER
            | id::AUTHENTICATION_METHOD
            | id::RESPONSE_INFORMATION
            | id::SERVER_REFERENCE
            | id::REASON_STRING => {
                let bytes = r.binary().ok_or(SHORT)?;
                PropertyValue::Utf8(mqtt_str(bytes, "property string is not valid MQTT UTF-8")?)
            }
            id::CORRELATION_DATA | id::AUTHENTICATION_DATA => {
                PropertyValue::Binary(r.binary().ok_or(SHORT)?)
            }
            id::USER_PROPERTY => {
                let name = r.binary().ok_or(SHORT)?;
                let value = r.binary().ok_or(SHORT)?;
                PropertyValue::Utf8Pair(
                    mqtt_str(name, "user property name is not valid MQTT UTF-8")?,
                    mqtt_str(value, "user property value is not valid MQTT UTF-8")?,
                )
            }
            _ => return Err(UNKNOWN),
        };
        Ok(Property { id, value })
    }
}

const UNKNOWN: Error = Error::Malformed("unknown property identifier");

impl<'a> Iterator for Properties<'a> {
    type Item = Result<Property<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.reader.remaining() == 0 {
            return None;
        }
        let item = self.read_one();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl core::iter::FusedIterator for Properties<'_> {}

/// Which properties a packet may carry, and which of them may repeat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    allowed: u64,
    repeatable: u64,
    not_allowed: &'static str,
}

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

/// CONNECT properties (MQTT 5.0, 3.1.2.11).
pub(crate) const CONNECT: Rules = Rules {
    allowed: mask(&[
        id::SESSION_EXPIRY_INTERVAL,
        id::RECEIVE_MAXIMUM,
        id::MAXIMUM_PACKET_SIZE,
        id::TOPIC_ALIAS_MAXIMUM,
        id::REQUEST_RESPONSE_INFORMATION,
        id::REQUEST_PROBLEM_INFORMATION,
        id::USER_PROPERTY,
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
    ]),
    repeatable: mask(&[id::USER_PROPERTY]),
    not_allowed: "property not allowed in CONNECT",
};

/// Will properties (MQTT 5.0, 3.1.3.2).
pub(crate) const WILL: Rules = Rules {
    allowed: mask(&[
        id::WILL_DELAY_INTERVAL,
        id::PAYLOAD_FORMAT_INDICATOR,
        id::MESSAGE_EXPIRY_INTERVAL,
        id::CONTENT_TYPE,
        id::RESPONSE_TOPIC,
        id::CORRELATION_DATA,
        id::USER_PROPERTY,
    ]),
    repeatable: mask(&[id::USER_PROPERTY]),
    not_allowed: "property not allowed in will properties",
};

/// PUBLISH properties (MQTT 5.0, 3.3.2.3). Subscription Identifier only
/// appears server to client, where it may repeat.
pub(crate) const PUBLISH: Rules = Rules {
    allowed: mask(&[
        id::PAYLOAD_FORMAT_INDICATOR,
        id::MESSAGE_EXPIRY_INTERVAL,
        id::TOPIC_ALIAS,
        id::RESPONSE_TOPIC,
        id::CORRELATION_DATA,
        id::USER_PROPERTY,
        id::SUBSCRIPTION_IDENTIFIER,
        id::CONTENT_TYPE,
    ]),
    repeatable: mask(&[id::USER_PROPERTY, id::SUBSCRIPTION_IDENTIFIER]),
    not_allowed: "property not allowed in PUBLISH",
};

/// SUBSCRIBE properties (MQTT 5.0, 3.8.2.1).
pub(crate) const SUBSCRIBE: Rules = Rules {
    allowed: mask(&[id::SUBSCRIPTION_IDENTIFIER, id::USER_PROPERTY]),
    repeatable: mask(&[id::USER_PROPERTY]),
    not_allowed: "property not allowed in SUBSCRIBE",
};

/// UNSUBSCRIBE properties (MQTT 5.0, 3.10.2.1).
pub(crate) const UNSUBSCRIBE: Rules = Rules {
    allowed: mask(&[id::USER_PROPERTY]),
    repeatable: mask(&[id::USER_PROPERTY]),
    not_allowed: "property not allowed in UNSUBSCRIBE",
};

/// Walks `block`, checking every property against `rules`, and hands each
/// one to `f`.
pub(crate) fn scan<'a>(
    block: &'a [u8],
    rules: Rules,
    mut f: impl FnMut(&Property<'a>),
) -> Result<(), Error> {
    let mut seen = 0u64;
    for prop in Properties::new(block) {
        let prop = prop?;
        // Known ids are all below 64; `Properties` rejects the others.
        let bit = 1u64.checked_shl(u32::from(prop.id)).unwrap_or(0);
        if rules.allowed & bit == 0 {
            return Err(Error::ProtocolError(rules.not_allowed));
        }
        if seen & bit != 0 && rules.repeatable & bit == 0 {
            return Err(Error::ProtocolError("property included more than once"));
        }
        seen |= bit;
        f(&prop);
    }
    Ok(())
}

/// Reads a property length and the block it announces. `Ok(None)` if the
/// reader runs out first.
pub(crate) fn read_block<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, Error> {
    let start = r.pos();
    let Some(len) = r.varint()? else {
        return Ok(None);
    };
    match r.take(len as usize) {
        Some(block) => Ok(Some(block)),
        None => {
            r.rewind(start);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(block: &[u8]) -> Result<Vec<Property<'_>>, Error> {
        Properties::new(block).collect()
    }

    #[test]
    fn every_type() {
        let block = [
            0x01, 0x01, // payload format indicator
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry
            0x03, 0x00, 0x01, b't', // content type
            0x09, 0x00, 0x02, 0xAB, 0xCD, // correlation data
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x23, 0x00, 0x07, // topic alias
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        ];
        let props = collect(&block).unwrap();
        assert_eq!(props.len(), 7);
        assert_eq!(props[0].value, PropertyValue::Byte(1));
        assert_eq!(props[1].as_u32(), Some(60));
        assert_eq!(props[2].value, PropertyValue::Utf8("t"));
        assert_eq!(props[3].value, PropertyValue::Binary(&[0xAB, 0xCD]));
        assert_eq!(props[4].value, PropertyValue::VarInt(128));
        assert_eq!(props[5].value, PropertyValue::TwoByteInt(7));
        assert_eq!(props[6].value, PropertyValue::Utf8Pair("k", "v"));
        assert_eq!(props[6].as_u32(), None);
    }

    #[test]
    fn bad_values() {
        for block in [
            &[0x23, 0x00, 0x00][..],               // topic alias 0
            &[0x21, 0x00, 0x00],                   // receive maximum 0
            &[0x27, 0x00, 0x00, 0x00, 0x00],       // maximum packet size 0
            &[0x0B, 0x00],                         // subscription identifier 0
            &[0x01, 0x02],                         // boolean 2
            &[0x00, 0x00],                         // unknown id 0
            &[0x7F, 0x00],                         // unknown id
            &[0x80, 0x01, 0x00],                   // id 128 as a varint
            &[0x23, 0x00],                         // short value
            &[0x03, 0x00, 0x02, b'a'],             // short string
            &[0x03, 0x00, 0x01, 0xFF],             // bad UTF-8
            &[0x26, 0x00, 0x01, b'k', 0x00],       // short pair
            &[0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], // varint too long
        ] {
            let mut it = Properties::new(block);
            assert!(matches!(it.next(), Some(Err(_))), "{block:02x?}");
            assert!(it.next().is_none(), "fused after an error");
        }
    }

    #[test]
    fn rules() {
        let alias_twice = [0x23, 0x00, 0x01, 0x23, 0x00, 0x02];
        assert_eq!(
            scan(&alias_twice, PUBLISH, |_| {}),
            Err(Error::ProtocolError("property included more than once"))
        );
        let users = [0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0];
        assert_eq!(scan(&users, PUBLISH, |_| {}), Ok(()));
        assert_eq!(
            scan(&[0x23, 0x00, 0x01], CONNECT, |_| {}),
            Err(Error::ProtocolError("property not allowed in CONNECT"))
        );
        let sub_ids = [0x0B, 0x01, 0x0B, 0x02];
        assert!(scan(&sub_ids, SUBSCRIBE, |_| {}).is_err());
        assert!(scan(&sub_ids, PUBLISH, |_| {}).is_ok());
        assert!(scan(&[0x18, 0, 0, 0, 5], WILL, |_| {}).is_ok());
        assert!(scan(&[0x26, 0, 0, 0, 0], UNSUBSCRIBE, |_| {}).is_ok());
        assert!(scan(&[0x0B, 0x01], UNSUBSCRIBE, |_| {}).is_err());
    }

    #[test]
    fn blocks() {
        let buf = [0x03, 0x23, 0x00, 0x01, 0xEE];
        let mut r = Reader::new(&buf, 0);
        assert_eq!(read_block(&mut r), Ok(Some(&buf[1..4])));
        assert_eq!(r.pos(), 4);
        let mut r = Reader::new(&buf[..3], 0);
        assert_eq!(read_block(&mut r), Ok(None));
        assert_eq!(r.pos(), 0);
        let mut r = Reader::new(&[], 0);
        assert_eq!(read_block(&mut r), Ok(None));
    }
}
