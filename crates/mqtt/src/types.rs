//! Small enums shared by every packet parser and by the error type: the
//! control packet type, the protocol version a connection speaks and the
//! quality-of-service level. They depend on nothing else in the crate.

use core::fmt;

/// The control packet type: the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect (1).
    Connect = 1,
    /// Connect acknowledgement (2).
    Connack = 2,
    /// Application message (3).
    Publish = 3,
    /// QoS 1 publish acknowledgement (4).
    Puback = 4,
    /// QoS 2 publish received, part 1 (5).
    Pubrec = 5,
    /// QoS 2 publish release, part 2 (6).
    Pubrel = 6,
    /// QoS 2 publish complete, part 3 (7).
    Pubcomp = 7,
    /// Subscribe request (8).
    Subscribe = 8,
    /// Subscribe acknowledgement (9).
    Suback = 9,
    /// Unsubscribe request (10).
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement (11).
    Unsuback = 11,
    /// Ping request (12).
    Pingreq = 12,
    /// Ping response (13).
    Pingresp = 13,
    /// Disconnect notification (14).
    Disconnect = 14,
    /// Authentication exchange, MQTT 5 only (15).
    Auth = 15,
}

impl PacketType {
    /// The type for a four-bit value; `None` for the reserved value 0 and
    /// for anything above 15.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::Connack,
            3 => Self::Publish,
            4 => Self::Puback,
            5 => Self::Pubrec,
            6 => Self::Pubrel,
            7 => Self::Pubcomp,
            8 => Self::Subscribe,
            9 => Self::Suback,
            10 => Self::Unsubscribe,
            11 => Self::Unsuback,
            12 => Self::Pingreq,
            13 => Self::Pingresp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The four-bit value (1 to 15).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name the specification uses, e.g. `"PUBLISH"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Connack => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::Puback => "PUBACK",
            Self::Pubrec => "PUBREC",
            Self::Pubrel => "PUBREL",
            Self::Pubcomp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::Suback => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Unsuback => "UNSUBACK",
            Self::Pingreq => "PINGREQ",
            Self::Pingresp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }

    /// Whether the type exists in `version`: AUTH is MQTT 5 only (its value
    /// is reserved before that), every other type exists everywhere.
    pub const fn exists_in(self, version: ProtocolVersion) -> bool {
        !matches!(self, Self::Auth) || version.is_v5()
    }

    /// The fixed-header flags the specification mandates for this type, or
    /// `None` for PUBLISH, whose flags carry DUP, QoS and RETAIN.
    pub const fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::Pubrel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The MQTT protocol version of a connection, fixed by its CONNECT.
///
/// Several packets are laid out differently in MQTT 5 (properties, reason
/// codes), so every parser after CONNECT takes the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// All versions, oldest first.
    pub const ALL: [ProtocolVersion; 3] = [Self::V3_1, Self::V3_1_1, Self::V5];

    /// The protocol level byte sent in CONNECT (3, 4 or 5).
    pub const fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The version for a protocol level byte. A level with the Mosquitto
    /// bridge bit (0x80) set is not recognised: mask it off first.
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            3 => Some(Self::V3_1),
            4 => Some(Self::V3_1_1),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// The protocol name this version puts in CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5, the only version with properties and reason
    /// codes on acknowledgements.
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3_1 => "MQTT 3.1",
            Self::V3_1_1 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}

/// Quality of service of a PUBLISH, a will or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: four-way PUBREC/PUBREL/PUBCOMP handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for its two-bit value; `None` for the invalid value 3.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }

    /// The two-bit value (0, 1 or 2).
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_type_round_trip() {
        assert_eq!(PacketType::from_u8(0), None);
        assert_eq!(PacketType::from_u8(16), None);
        for n in 1..=15 {
            let ty = PacketType::from_u8(n).unwrap();
            assert_eq!(ty.as_u8(), n);
            assert!(!ty.name().is_empty());
        }
        assert!(!PacketType::Auth.exists_in(ProtocolVersion::V3_1_1));
        assert!(PacketType::Auth.exists_in(ProtocolVersion::V5));
        assert!(PacketType::Publish.exists_in(ProtocolVersion::V3_1));
    }

    #[test]
    fn levels_round_trip() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::from_level(v.level()), Some(v));
        }
        assert_eq!(ProtocolVersion::from_level(0x84), None);
        assert_eq!(ProtocolVersion::V3_1.protocol_name(), "MQIsdp");
        assert_eq!(ProtocolVersion::V5.to_string(), "MQTT 5.0");
    }

    #[test]
    fn qos_bits() {
        for bits in 0..3 {
            assert_eq!(QoS::from_bits(bits).map(QoS::bits), Some(bits));
        }
        assert_eq!(QoS::from_bits(3), None);
    }
}
