//! A bounds-checked cursor over a packet's bytes. Every read returns `None`
//! when the bytes run out instead of panicking, and a failed read leaves
//! the cursor where it was.

use crate::error::Error;
use crate::header::decode_varint;

/// Cursor over `buf`, positions are offsets into `buf`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at `pos` (clamped to the end of `buf`).
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// The current offset into the underlying buffer.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves the cursor back to `pos` (clamped to the end of the buffer).
    pub(crate) fn rewind(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// Takes one byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&byte, _) = self.take(1)?.split_first()?;
        Some(byte)
    }

    /// Takes a big-endian two-byte integer.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let bytes: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(u16::from_be_bytes(bytes))
    }

    /// Takes a big-endian four-byte integer.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let bytes: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    /// Takes a two-byte length prefix and that many bytes (MQTT "binary
    /// data", also the raw form of a UTF-8 string).
    pub(crate) fn binary(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        let len = self.u16()?;
        match self.take(usize::from(len)) {
            Some(bytes) => Some(bytes),
            None => {
                self.pos = start;
                None
            }
        }
    }

    /// Takes a variable byte integer. `Ok(None)` if the bytes run out,
    /// an error if it is longer than four bytes.
    pub(crate) fn varint(&mut self) -> Result<Option<u32>, Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match decode_varint(rest)? {
            Some((value, len)) => {
                self.pos += len;
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }
}

/// Validates an MQTT UTF-8 string: well-formed UTF-8 without U+0000
/// ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). `what` is the error detail, naming the
/// field.
pub(crate) fn mqtt_str<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, Error> {
    match core::str::from_utf8(bytes) {
        Ok(s) if !bytes.contains(&0) => Ok(s),
        _ => Err(Error::Malformed(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let buf = [0x00, 0x02, b'h', b'i', 0x01, 0x02, 0x03, 0x04, 0x80];
        let mut r = Reader::new(&buf, 0);
        assert_eq!(r.binary(), Some(&b"hi"[..]));
        assert_eq!(r.pos(), 4);
        assert_eq!(r.u32(), Some(0x0102_0304));
        assert_eq!(r.varint(), Ok(None));
        assert_eq!(r.pos(), 8, "failed varint does not move");
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(0x80));
        assert_eq!(r.u8(), None);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.take(usize::MAX), None);

        let mut r = Reader::new(&[0x00, 0x05, b'a'], 0);
        assert_eq!(r.binary(), None);
        assert_eq!(r.pos(), 0, "failed binary does not move");
        assert_eq!(Reader::new(&[1], 10).remaining(), 0);
    }

    #[test]
    fn strings() {
        assert_eq!(mqtt_str(b"caf\xc3\xa9", "x"), Ok("café"));
        assert!(mqtt_str(b"a\0b", "x").is_err());
        assert!(mqtt_str(b"\xff", "x").is_err());
        assert!(mqtt_str(b"\xed\xa0\x80", "x").is_err(), "surrogate");
    }
}
