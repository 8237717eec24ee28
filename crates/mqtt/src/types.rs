//! Small enums shared by every packet parser: the protocol version a
//! connection speaks and the quality-of-service level.

use core::fmt;

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
