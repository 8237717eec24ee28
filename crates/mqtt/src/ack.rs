//! Encoders for the packets the gateway writes itself instead of the
//! broker (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
//! DISCONNECT, PINGRESP), and the return and reason codes it needs.
//!
//! Every encoder appends one complete packet to `out`. MQTT 5 packets are
//! written with an empty property block, or in the short form the
//! specification allows when the reason code is Success.

use crate::error::Error;
use crate::header::encode_fixed_header;
use crate::types::{PacketType, ProtocolVersion};

/// CONNACK return codes of MQTT 3.1 and 3.1.1.
pub mod connack_v3 {
    /// Connection accepted.
    pub const ACCEPTED: u8 = 0x00;
    /// The server does not support the requested protocol level.
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 0x01;
    /// The client identifier is not allowed.
    pub const IDENTIFIER_REJECTED: u8 = 0x02;
    /// The MQTT service is unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 0x03;
    /// The username or password is malformed.
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x04;
    /// The client is not authorized to connect.
    pub const NOT_AUTHORIZED: u8 = 0x05;
}

/// MQTT 5 reason codes (MQTT 5.0, section 2.4) used in CONNACK, PUBACK &
/// co., SUBACK, UNSUBACK and DISCONNECT.
pub mod reason {
    /// Success (also "granted QoS 0" in SUBACK and "normal disconnection").
    pub const SUCCESS: u8 = 0x00;
    /// SUBACK: granted QoS 1.
    pub const GRANTED_QOS_1: u8 = 0x01;
    /// SUBACK: granted QoS 2.
    pub const GRANTED_QOS_2: u8 = 0x02;
    /// PUBACK/PUBREC: accepted, but nobody is subscribed.
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    /// UNSUBACK: there was no such subscription.
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    /// Malformed packet.
    pub const MALFORMED_PACKET: u8 = 0x81;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// Implementation-specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    /// CONNACK: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    /// CONNACK: client identifier not valid.
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    /// CONNACK: bad user name or password.
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// CONNACK: server unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    /// Server busy.
    pub const SERVER_BUSY: u8 = 0x89;
    /// CONNACK: bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    /// DISCONNECT: keep alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    /// SUBACK/UNSUBACK/DISCONNECT: topic filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// PUBACK/PUBREC/DISCONNECT: topic name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Packet identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    /// PUBREL/PUBCOMP: packet identifier not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    /// DISCONNECT: receive maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    /// DISCONNECT: topic alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// CONNACK/DISCONNECT: packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Message rate too high (DISCONNECT).
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    /// Connection rate exceeded (CONNACK).
    pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    /// DISCONNECT: administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    /// SUBACK/DISCONNECT: shared subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    /// DISCONNECT: maximum connect time.
    pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
    /// SUBACK/DISCONNECT: wildcard subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}

/// The SUBACK return code for a refused subscription in MQTT 3.1.1 (and,
/// by common practice, 3.1).
pub const SUBACK_FAILURE_V3: u8 = 0x80;

/// `v5` on an MQTT 5 connection, `v3` before: MQTT 5 renumbered the
/// return codes as reason codes.
const fn by_version(version: ProtocolVersion, v3: u8, v5: u8) -> u8 {
    if version.is_v5() {
        v5
    } else {
        v3
    }
}

/// The CONNACK code refusing a client as not authorized:
/// 0x05 before MQTT 5, 0x87 in MQTT 5.
pub const fn connack_not_authorized(version: ProtocolVersion) -> u8 {
    by_version(version, connack_v3::NOT_AUTHORIZED, reason::NOT_AUTHORIZED)
}

/// The CONNACK code for "server unavailable": 0x03 before MQTT 5, 0x88 in
/// MQTT 5.
pub const fn connack_server_unavailable(version: ProtocolVersion) -> u8 {
    by_version(
        version,
        connack_v3::SERVER_UNAVAILABLE,
        reason::SERVER_UNAVAILABLE,
    )
}

/// The CONNACK code for an unsupported protocol version: 0x01 before
/// MQTT 5, 0x84 in MQTT 5.
pub const fn connack_unsupported_version(version: ProtocolVersion) -> u8 {
    by_version(
        version,
        connack_v3::UNACCEPTABLE_PROTOCOL_VERSION,
        reason::UNSUPPORTED_PROTOCOL_VERSION,
    )
}

/// The SUBACK code refusing one subscription: 0x80 before MQTT 5, 0x87
/// (not authorized) in MQTT 5.
pub const fn suback_not_authorized(version: ProtocolVersion) -> u8 {
    by_version(version, SUBACK_FAILURE_V3, reason::NOT_AUTHORIZED)
}

/// Appends a CONNACK.
///
/// `code` is a [`connack_v3`] return code before MQTT 5 and a [`reason`]
/// code in MQTT 5. `session_present` is only written for an accepted
/// connection from MQTT 3.1.1 on (it must be 0 when refusing, and MQTT 3.1
/// has no such flag). An MQTT 5 CONNACK carries an empty property block.
pub fn connack(version: ProtocolVersion, session_present: bool, code: u8, out: &mut Vec<u8>) {
    let ack_flags = u8::from(session_present && code == 0 && version != ProtocolVersion::V3_1);
    if version.is_v5() {
        out.extend_from_slice(&[0x20, 0x03, ack_flags, code, 0x00]);
    } else {
        out.extend_from_slice(&[0x20, 0x02, ack_flags, code]);
    }
}

fn pub_ack(first_byte: u8, version: ProtocolVersion, packet_id: u16, code: u8, out: &mut Vec<u8>) {
    let [hi, lo] = packet_id.to_be_bytes();
    if version.is_v5() && code != reason::SUCCESS {
        // Reason code present, property length omitted (MQTT 5.0 3.4.2.2.1).
        out.extend_from_slice(&[first_byte, 0x03, hi, lo, code]);
    } else {
        out.extend_from_slice(&[first_byte, 0x02, hi, lo]);
    }
}

/// Appends a PUBACK for `packet_id`. In MQTT 5 a non-success `code` is
/// written (success uses the two-byte short form); before MQTT 5 `code` is
/// ignored, since a 3.x PUBACK cannot refuse: the only refusal there is to
/// close the connection.
pub fn puback(version: ProtocolVersion, packet_id: u16, code: u8, out: &mut Vec<u8>) {
    pub_ack(0x40, version, packet_id, code, out);
}

/// Appends a PUBREC for `packet_id` (`code` as for [`puback`]).
pub fn pubrec(version: ProtocolVersion, packet_id: u16, code: u8, out: &mut Vec<u8>) {
    pub_ack(0x50, version, packet_id, code, out);
}

/// Appends a PUBREL for `packet_id` (`code` as for [`puback`]; the fixed
/// header carries the mandatory flags `0b0010`).
pub fn pubrel(version: ProtocolVersion, packet_id: u16, code: u8, out: &mut Vec<u8>) {
    pub_ack(0x62, version, packet_id, code, out);
}

/// Appends a PUBCOMP for `packet_id` (`code` as for [`puback`]).
pub fn pubcomp(version: ProtocolVersion, packet_id: u16, code: u8, out: &mut Vec<u8>) {
    pub_ack(0x70, version, packet_id, code, out);
}

fn ack_with_codes(
    first_byte: u8,
    version: ProtocolVersion,
    packet_id: u16,
    codes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let props = usize::from(version.is_v5());
    encode_fixed_header(first_byte, 2 + props + codes.len(), out)?;
    out.extend_from_slice(&packet_id.to_be_bytes());
    if version.is_v5() {
        out.push(0x00);
    }
    out.extend_from_slice(codes);
    Ok(())
}

/// Appends a SUBACK for `packet_id` with one return code (before MQTT 5:
/// granted QoS 0-2 or [`SUBACK_FAILURE_V3`]) or reason code (MQTT 5) per
/// filter of the SUBSCRIBE, in order. Fails with [`Error::InvalidArgument`]
/// if `codes` is empty; nothing is written on error.
pub fn suback(
    version: ProtocolVersion,
    packet_id: u16,
    codes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if codes.is_empty() {
        return Err(Error::InvalidArgument(
            "SUBACK needs one return code per filter",
        ));
    }
    ack_with_codes(0x90, version, packet_id, codes, out)
}

/// Appends an UNSUBACK for `packet_id`. In MQTT 5 it carries one reason
/// code per filter of the UNSUBSCRIBE (`codes` must not be empty); before
/// MQTT 5 an UNSUBACK has no codes and `codes` is ignored. Nothing is
/// written on error.
pub fn unsuback(
    version: ProtocolVersion,
    packet_id: u16,
    codes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if !version.is_v5() {
        let [hi, lo] = packet_id.to_be_bytes();
        out.extend_from_slice(&[0xB0, 0x02, hi, lo]);
        return Ok(());
    }
    if codes.is_empty() {
        return Err(Error::InvalidArgument(
            "MQTT 5 UNSUBACK needs one reason code per filter",
        ));
    }
    ack_with_codes(0xB0, version, packet_id, codes, out)
}

/// Appends a server DISCONNECT with `code` (MQTT 5 only) and returns
/// `true`.
///
/// MQTT 3.x has no server-to-client DISCONNECT: nothing is written and
/// `false` is returned; the caller just closes the connection. A Success
/// code uses the short form with no reason code.
pub fn disconnect(version: ProtocolVersion, code: u8, out: &mut Vec<u8>) -> bool {
    if !version.is_v5() {
        return false;
    }
    let first = PacketType::Disconnect.as_u8() << 4;
    if code == reason::SUCCESS {
        out.extend_from_slice(&[first, 0x00]);
    } else {
        // Reason code present, property length omitted (MQTT 5.0 3.14.2.2.1).
        out.extend_from_slice(&[first, 0x01, code]);
    }
    true
}

/// Appends a PINGRESP (identical in every version).
pub fn pingresp(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xD0, 0x00]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::FixedHeader;
    use ProtocolVersion::*;

    fn one(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        // Whatever we write frames correctly.
        if !out.is_empty() {
            let h = FixedHeader::parse(&out).unwrap().unwrap();
            assert_eq!(h.total_len(), out.len());
        }
        out
    }

    #[test]
    fn connacks() {
        assert_eq!(
            one(|o| connack(V3_1_1, true, 0, o)),
            [0x20, 0x02, 0x01, 0x00]
        );
        assert_eq!(
            one(|o| connack(V3_1_1, true, connack_v3::NOT_AUTHORIZED, o)),
            [0x20, 0x02, 0x00, 0x05]
        );
        assert_eq!(one(|o| connack(V3_1, true, 0, o)), [0x20, 0x02, 0x00, 0x00]);
        assert_eq!(
            one(|o| connack(V3_1, false, connack_v3::SERVER_UNAVAILABLE, o)),
            [0x20, 0x02, 0x00, 0x03]
        );
        assert_eq!(
            one(|o| connack(V5, true, 0, o)),
            [0x20, 0x03, 0x01, 0x00, 0x00]
        );
        assert_eq!(
            one(|o| connack(V5, false, reason::PACKET_TOO_LARGE, o)),
            [0x20, 0x03, 0x00, 0x95, 0x00]
        );
        assert_eq!(connack_not_authorized(V3_1_1), 0x05);
        assert_eq!(connack_not_authorized(V5), 0x87);
        assert_eq!(connack_server_unavailable(V3_1), 0x03);
        assert_eq!(connack_server_unavailable(V5), 0x88);
        assert_eq!(connack_unsupported_version(V3_1_1), 0x01);
        assert_eq!(connack_unsupported_version(V5), 0x84);
        assert_eq!(reason::QUOTA_EXCEEDED, 0x97);
    }

    #[test]
    fn pub_acks() {
        assert_eq!(
            one(|o| puback(V3_1_1, 0x1234, 0x87, o)),
            [0x40, 0x02, 0x12, 0x34]
        );
        assert_eq!(one(|o| puback(V5, 0x1234, 0, o)), [0x40, 0x02, 0x12, 0x34]);
        assert_eq!(
            one(|o| puback(V5, 0x1234, reason::NOT_AUTHORIZED, o)),
            [0x40, 0x03, 0x12, 0x34, 0x87]
        );
        assert_eq!(
            one(|o| pubrec(V5, 1, reason::QUOTA_EXCEEDED, o)),
            [0x50, 0x03, 0, 1, 0x97]
        );
        assert_eq!(one(|o| pubrel(V3_1, 1, 0, o)), [0x62, 0x02, 0, 1]);
        assert_eq!(one(|o| pubrel(V5, 1, 0x92, o)), [0x62, 0x03, 0, 1, 0x92]);
        assert_eq!(
            one(|o| pubcomp(V3_1_1, 0xFFFF, 0, o)),
            [0x70, 0x02, 0xFF, 0xFF]
        );
    }

    #[test]
    fn subacks() {
        assert_eq!(
            one(|o| suback(V3_1_1, 1, &[0x01, SUBACK_FAILURE_V3, 0x00], o).unwrap()),
            [0x90, 0x05, 0x00, 0x01, 0x01, 0x80, 0x00]
        );
        assert_eq!(
            one(|o| suback(V5, 1, &[0x01, reason::NOT_AUTHORIZED], o).unwrap()),
            [0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x87]
        );
        assert_eq!(suback_not_authorized(V3_1_1), 0x80);
        assert_eq!(suback_not_authorized(V5), 0x87);
        let mut out = Vec::new();
        assert!(suback(V5, 1, &[], &mut out).is_err());
        assert!(out.is_empty());
        // A long SUBACK gets a two-byte remaining length.
        let codes = [0u8; 200];
        let out = one(|o| suback(V3_1_1, 9, &codes, o).unwrap());
        assert_eq!(&out[..3], &[0x90, 0xCA, 0x01]);
    }

    #[test]
    fn unsubacks() {
        assert_eq!(
            one(|o| unsuback(V3_1_1, 7, &[0x00], o).unwrap()),
            [0xB0, 0x02, 0x00, 0x07]
        );
        assert_eq!(
            one(|o| unsuback(V3_1, 7, &[], o).unwrap()),
            [0xB0, 0x02, 0x00, 0x07]
        );
        assert_eq!(
            one(|o| unsuback(V5, 7, &[0x00, 0x11], o).unwrap()),
            [0xB0, 0x05, 0x00, 0x07, 0x00, 0x00, 0x11]
        );
        assert!(unsuback(V5, 7, &[], &mut Vec::new()).is_err());
    }

    #[test]
    fn disconnects() {
        let mut out = Vec::new();
        assert!(!disconnect(V3_1_1, reason::NOT_AUTHORIZED, &mut out));
        assert!(!disconnect(V3_1, 0, &mut out));
        assert!(out.is_empty());
        assert_eq!(
            one(|o| assert!(disconnect(V5, reason::PACKET_TOO_LARGE, o))),
            [0xE0, 0x01, 0x95]
        );
        assert_eq!(one(|o| assert!(disconnect(V5, 0, o))), [0xE0, 0x00]);
        assert_eq!(one(pingresp), [0xD0, 0x00]);
    }

    #[test]
    fn appends() {
        let mut out = vec![0xAA];
        puback(V3_1_1, 1, 0, &mut out);
        pingresp(&mut out);
        assert_eq!(out, [0xAA, 0x40, 0x02, 0x00, 0x01, 0xD0, 0x00]);
    }
}
