//! The error type shared by every parser and encoder of this crate.
//!
//! Variants are coarse on purpose: the proxy's reaction depends only on the
//! class (refuse with "malformed", "protocol error", "unsupported version",
//! "too large"); the `&'static str` detail is there for the log line.

use core::fmt;

use crate::types::PacketType;

/// Why a packet was rejected, or why an encoder could not write one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not form a well-formed packet: a length runs past the
    /// end of the packet, a varint is too long, a string is not UTF-8, a
    /// reserved bit is set, and so on. Carries what was wrong.
    Malformed(&'static str),
    /// The packet is well formed but breaks a rule of the protocol (QoS 3,
    /// packet id 0, a wildcard in a topic name, a duplicated property...).
    /// Carries which rule.
    ProtocolError(&'static str),
    /// A CONNECT asked for a protocol level this crate does not speak, or
    /// paired a protocol name with the wrong level. Carries the level byte
    /// as sent (bit 7 included). MQTT 3.1.1 answers this with CONNACK return
    /// code 0x01, MQTT 5 with reason code 0x84.
    UnsupportedProtocol {
        /// The protocol level byte of the CONNECT.
        level: u8,
    },
    /// A packet is larger than the configured maximum.
    PacketTooLarge {
        /// The packet's total size in bytes, fixed header included.
        size: usize,
        /// The limit it exceeds.
        max: u32,
    },
    /// A parser was handed a packet of another type.
    UnexpectedPacketType {
        /// The type the parser handles.
        expected: PacketType,
        /// The type found in the fixed header.
        found: PacketType,
    },
    /// The buffer ends before the packet does. Only returned by the parsers
    /// that need a whole packet ([`crate::Connect::parse`],
    /// [`crate::Subscribe::parse`], [`crate::Unsubscribe::parse`]); the
    /// incremental ones return `Ok(None)` instead.
    Incomplete,
    /// An argument supplied by the caller (not by the peer) is unusable,
    /// for example a replacement username longer than 65,535 bytes.
    InvalidArgument(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed MQTT packet: {what}"),
            Error::ProtocolError(what) => write!(f, "MQTT protocol error: {what}"),
            Error::UnsupportedProtocol { level } => {
                write!(f, "unsupported MQTT protocol level {level:#04x}")
            }
            Error::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "MQTT packet of {size} bytes exceeds the maximum of {max} bytes"
                )
            }
            Error::UnexpectedPacketType { expected, found } => {
                write!(f, "expected an MQTT {expected} packet, found {found}")
            }
            Error::Incomplete => f.write_str("MQTT packet is incomplete: the buffer ends early"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_loggable() {
        assert_eq!(
            Error::Malformed("remaining length longer than 4 bytes").to_string(),
            "malformed MQTT packet: remaining length longer than 4 bytes"
        );
        assert_eq!(
            Error::UnsupportedProtocol { level: 0x83 }.to_string(),
            "unsupported MQTT protocol level 0x83"
        );
        assert_eq!(
            Error::PacketTooLarge {
                size: 300,
                max: 256
            }
            .to_string(),
            "MQTT packet of 300 bytes exceeds the maximum of 256 bytes"
        );
        assert_eq!(
            Error::UnexpectedPacketType {
                expected: PacketType::Connect,
                found: PacketType::Publish
            }
            .to_string(),
            "expected an MQTT CONNECT packet, found PUBLISH"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Incomplete);
        assert!(boxed.to_string().contains("incomplete"));
    }
}
