//! The one rewrite of a CONNECT: its username replaced or inserted, its
//! password dropped, every other byte kept. The only place this crate
//! builds a packet from a parsed one, once per connection.

use core::ops::Range;

use super::packet::{Connect, FLAG_PASSWORD, FLAG_USERNAME};
use crate::error::Error;
use crate::header::encode_fixed_header;
use crate::types::PacketType;

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
        let bytes = connect_packet(&connect_v5_body(0x42, &[], b"\x00\x01c\x00\x02pw"));
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
