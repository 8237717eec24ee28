//! The fixed header every MQTT packet starts with (packet type, flags and
//! the remaining-length varint): the framing layer that tells the relay
//! where one packet ends and the next begins.

use crate::error::Error;
// Defined with the other shared enums (the error type names it too, and
// must not depend on framing); still reachable as `header::PacketType`.
#[doc(no_inline)]
pub use crate::types::PacketType;

/// The largest remaining length a four-byte varint can carry (256 MiB - 1).
pub const MAX_REMAINING_LEN: u32 = 268_435_455;

/// The largest fixed header: one type byte plus a four-byte varint.
pub const MAX_FIXED_HEADER_LEN: usize = 5;

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The control packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte (DUP/QoS/RETAIN for PUBLISH).
    pub flags: u8,
    /// The number of bytes after the fixed header.
    pub remaining_len: u32,
    /// The size of the fixed header itself: 2 to 5 bytes.
    pub header_len: usize,
}

impl FixedHeader {
    /// Parses the fixed header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` ends before the header does (at most
    /// five bytes are needed), and an error for the reserved packet type 0,
    /// for flags the specification forbids for the type (including PUBLISH
    /// with QoS 3) and for a remaining length longer than four bytes.
    /// Only the header is examined: the rest of the packet need not be in
    /// `buf`.
    ///
    /// Flags are checked as MQTT 3.1.1 and 5 require (PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE carry exactly `0b0010`, the other non-PUBLISH types 0),
    /// also for MQTT 3.1 connections, which in theory allowed a DUP bit on
    /// retransmitted PUBREL/SUBSCRIBE/UNSUBSCRIBE.
    pub fn parse(buf: &[u8]) -> Result<Option<FixedHeader>, Error> {
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(None);
        };
        let packet_type =
            PacketType::from_u8(first >> 4).ok_or(Error::Malformed("reserved packet type 0"))?;
        let flags = first & 0x0F;
        match packet_type.required_flags() {
            None => {
                if flags & 0b0110 == 0b0110 {
                    return Err(Error::Malformed("PUBLISH with QoS 3"));
                }
            }
            Some(required) if flags != required => {
                return Err(Error::Malformed(if required == 0 {
                    "fixed-header flags must be 0 for this packet type"
                } else {
                    "fixed-header flags must be 0b0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE"
                }));
            }
            Some(_) => {}
        }
        let Some((remaining_len, varint_len)) = decode_varint(rest)? else {
            return Ok(None);
        };
        Ok(Some(FixedHeader {
            packet_type,
            flags,
            remaining_len,
            header_len: 1 + varint_len,
        }))
    }

    /// The size of the whole packet: fixed header plus remaining length.
    pub const fn total_len(&self) -> usize {
        // header_len <= 5 and remaining_len < 2^28: no overflow even on a
        // 32-bit target.
        self.header_len + self.remaining_len as usize
    }

    /// Whether the whole packet is larger than `max_packet_size` bytes, the
    /// way MQTT 5's Maximum Packet Size counts (fixed header included).
    /// Known as soon as the header is parsed, so the relay can refuse a
    /// packet before buffering it.
    pub const fn exceeds(&self, max_packet_size: u32) -> bool {
        self.total_len() as u64 > max_packet_size as u64
    }

    /// `Err(Error::UnexpectedPacketType)` unless this is the header of an
    /// `expected` packet: the first check of every packet parser.
    pub(crate) fn expect(&self, expected: PacketType) -> Result<(), Error> {
        if self.packet_type == expected {
            Ok(())
        } else {
            Err(Error::UnexpectedPacketType {
                expected,
                found: self.packet_type,
            })
        }
    }

    /// [`exceeds`](Self::exceeds) as a `Result`: `Err(Error::PacketTooLarge)`
    /// when the packet is larger than `max_packet_size`.
    pub const fn check_max_size(&self, max_packet_size: u32) -> Result<(), Error> {
        if self.exceeds(max_packet_size) {
            Err(Error::PacketTooLarge {
                size: self.total_len(),
                max: max_packet_size,
            })
        } else {
            Ok(())
        }
    }
}

/// The header and the bytes of the whole `expected` packet at the start of
/// `buf` (bytes after it are left out), for the parsers that need all of a
/// packet: [`Error::Incomplete`] if `buf` ends before the packet does,
/// [`Error::UnexpectedPacketType`] for another type of packet.
pub(crate) fn whole_packet(
    buf: &[u8],
    expected: PacketType,
) -> Result<(FixedHeader, &[u8]), Error> {
    let header = FixedHeader::parse(buf)?.ok_or(Error::Incomplete)?;
    header.expect(expected)?;
    let packet = buf.get(..header.total_len()).ok_or(Error::Incomplete)?;
    Ok((header, packet))
}

/// Decodes a variable byte integer (the remaining-length encoding, also used
/// for MQTT 5 property lengths) at the start of `buf`.
///
/// Returns the value and the number of bytes it took, `Ok(None)` if `buf`
/// ends before the integer does, or an error if the integer is longer than
/// four bytes. Non-minimal encodings (such as `0x80 0x00` for 0) are accepted,
/// as most brokers do.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, Error> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(Error::Malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

/// The number of bytes `value` takes as a variable byte integer (1 to 4;
/// values above [`MAX_REMAINING_LEN`] cannot be encoded and report 5).
pub const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=MAX_REMAINING_LEN => 4,
        _ => 5,
    }
}

/// Appends `value` as a minimal variable byte integer to `out`.
///
/// Fails with [`Error::PacketTooLarge`] if `value` exceeds
/// [`MAX_REMAINING_LEN`], in which case nothing is written.
pub fn encode_varint(value: u32, out: &mut Vec<u8>) -> Result<(), Error> {
    if value > MAX_REMAINING_LEN {
        return Err(Error::PacketTooLarge {
            size: value as usize,
            max: MAX_REMAINING_LEN,
        });
    }
    let mut rest = value;
    loop {
        let byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(byte);
            return Ok(());
        }
        out.push(byte | 0x80);
    }
}

/// Appends a fixed header for a packet of `remaining_len` bytes to `out`.
pub(crate) fn encode_fixed_header(
    first_byte: u8,
    remaining_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = u32::try_from(remaining_len).map_err(|_| Error::PacketTooLarge {
        size: remaining_len,
        max: MAX_REMAINING_LEN,
    })?;
    if len > MAX_REMAINING_LEN {
        return Err(Error::PacketTooLarge {
            size: remaining_len,
            max: MAX_REMAINING_LEN,
        });
    }
    out.push(first_byte);
    encode_varint(len, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        let cases: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING_LEN, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(value, bytes) in cases {
            assert_eq!(decode_varint(bytes), Ok(Some((value, bytes.len()))));
            let mut out = Vec::new();
            encode_varint(value, &mut out).unwrap();
            assert_eq!(out, bytes);
            assert_eq!(varint_len(value), bytes.len());
            // Every strict prefix asks for more bytes.
            for cut in 0..bytes.len() {
                assert_eq!(decode_varint(&bytes[..cut]), Ok(None));
            }
        }
        assert!(encode_varint(MAX_REMAINING_LEN + 1, &mut Vec::new()).is_err());
        assert_eq!(varint_len(MAX_REMAINING_LEN + 1), 5);
    }

    #[test]
    fn varint_too_long() {
        assert!(matches!(
            decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(Error::Malformed(_))
        ));
        // The error comes as soon as the fourth byte has its continuation
        // bit, without waiting for a fifth.
        assert!(decode_varint(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }

    #[test]
    fn varint_non_minimal_accepted() {
        assert_eq!(decode_varint(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn parse_headers() {
        let h = FixedHeader::parse(&[0x30, 0x0A, 0xFF]).unwrap().unwrap();
        assert_eq!(h.packet_type, PacketType::Publish);
        assert_eq!(h.flags, 0);
        assert_eq!(h.remaining_len, 10);
        assert_eq!(h.header_len, 2);
        assert_eq!(h.total_len(), 12);

        let h = FixedHeader::parse(&[0x82, 0x80, 0x01]).unwrap().unwrap();
        assert_eq!(h.packet_type, PacketType::Subscribe);
        assert_eq!(h.flags, 2);
        assert_eq!(h.remaining_len, 128);
        assert_eq!(h.header_len, 3);

        let h = FixedHeader::parse(&[0xC0, 0x00]).unwrap().unwrap();
        assert_eq!(h.packet_type, PacketType::Pingreq);
        assert_eq!(h.total_len(), 2);

        let h = FixedHeader::parse(&[0x3D, 0x00]).unwrap().unwrap();
        assert_eq!(h.flags, 0b1101, "DUP, QoS 2, RETAIN");
    }

    #[test]
    fn parse_needs_more() {
        assert_eq!(FixedHeader::parse(&[]), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x10]), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x10, 0x80]), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x10, 0x80, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn parse_rejects() {
        assert_eq!(
            FixedHeader::parse(&[0x00, 0x00]),
            Err(Error::Malformed("reserved packet type 0"))
        );
        // The type is checked before the length arrives.
        assert!(FixedHeader::parse(&[0x00]).is_err());
        assert!(FixedHeader::parse(&[0x36, 0x00]).is_err(), "QoS 3");
        assert!(
            FixedHeader::parse(&[0x80, 0x00]).is_err(),
            "SUBSCRIBE flags 0"
        );
        assert!(
            FixedHeader::parse(&[0x8A, 0x00]).is_err(),
            "SUBSCRIBE with DUP"
        );
        assert!(FixedHeader::parse(&[0x60, 0x02]).is_err(), "PUBREL flags 0");
        assert!(
            FixedHeader::parse(&[0xA0, 0x02]).is_err(),
            "UNSUBSCRIBE flags 0"
        );
        assert!(FixedHeader::parse(&[0x11, 0x00]).is_err(), "CONNECT flags");
        assert!(
            FixedHeader::parse(&[0xE1, 0x00]).is_err(),
            "DISCONNECT flags"
        );
        assert!(FixedHeader::parse(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(FixedHeader::parse(&[0x62, 0x02]).is_ok());
        assert!(FixedHeader::parse(&[0xA2, 0x02]).is_ok());
    }

    #[test]
    fn every_first_byte() {
        for byte in 0..=255u8 {
            let result = FixedHeader::parse(&[byte, 0x00]);
            let ty = byte >> 4;
            let flags = byte & 0x0F;
            let expect_ok = match ty {
                0 => false,
                3 => flags & 0b0110 != 0b0110,
                6 | 8 | 10 => flags == 2,
                _ => flags == 0,
            };
            assert_eq!(result.is_ok(), expect_ok, "first byte {byte:#04x}");
        }
    }

    #[test]
    fn size_limit() {
        let h = FixedHeader::parse(&[0x30, 0x80, 0x02]).unwrap().unwrap();
        assert_eq!(h.total_len(), 3 + 256);
        assert!(!h.exceeds(259));
        assert!(h.exceeds(258));
        assert_eq!(h.check_max_size(259), Ok(()));
        assert_eq!(
            h.check_max_size(258),
            Err(Error::PacketTooLarge {
                size: 259,
                max: 258
            })
        );
        let big = FixedHeader::parse(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F])
            .unwrap()
            .unwrap();
        assert_eq!(big.total_len(), 5 + MAX_REMAINING_LEN as usize);
        assert!(!big.exceeds(u32::MAX));
        assert!(big.exceeds(MAX_REMAINING_LEN));
    }

    #[test]
    fn whole_packets() {
        let buf = [0xC0, 0x00, 0xE0];
        let (h, packet) = whole_packet(&buf, PacketType::Pingreq).unwrap();
        assert_eq!((h.total_len(), packet), (2, &buf[..2]));
        assert_eq!(
            whole_packet(&buf, PacketType::Connect),
            Err(Error::UnexpectedPacketType {
                expected: PacketType::Connect,
                found: PacketType::Pingreq
            })
        );
        assert_eq!(
            whole_packet(&[0x30, 0x02, 0x00], PacketType::Publish),
            Err(Error::Incomplete)
        );
        assert_eq!(
            whole_packet(&[0x30], PacketType::Publish),
            Err(Error::Incomplete)
        );
    }

    #[test]
    fn fixed_header_encoding() {
        let mut out = Vec::new();
        encode_fixed_header(0x30, 321, &mut out).unwrap();
        let h = FixedHeader::parse(&out).unwrap().unwrap();
        assert_eq!(h.remaining_len, 321);
        assert!(
            encode_fixed_header(0x30, MAX_REMAINING_LEN as usize + 1, &mut Vec::new()).is_err()
        );
    }
}
