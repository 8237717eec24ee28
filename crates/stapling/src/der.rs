//! A minimal DER reader over borrowed bytes: it walks TLVs and keeps the
//! exact encoding of each, which signature checks need. Pure.

use x509_parser::asn1_rs::{Any, Class, FromDer, Header, Tag};

/// One element read from DER: its parsed header and content, and its whole
/// encoding (tag, length and content).
#[derive(Debug, Clone)]
pub(crate) struct Tlv<'a> {
    pub(crate) any: Any<'a>,
    pub(crate) raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The content octets.
    pub(crate) fn content(&self) -> &'a [u8] {
        self.any.data
    }

    /// A reader over the content, for SEQUENCEs and constructed tags.
    pub(crate) fn reader(&self) -> Reader<'a> {
        Reader::new(self.any.data)
    }

    /// Whether this is the context-specific tag `[n]`.
    pub(crate) fn is_context(&self, n: u32) -> bool {
        self.any.class() == Class::ContextSpecific && self.any.tag() == Tag(n)
    }

    /// Whether this is the universal tag `tag`.
    pub(crate) fn is_universal(&self, tag: Tag) -> bool {
        self.any.class() == Class::Universal && self.any.tag() == tag
    }
}

/// A cursor over a run of DER elements.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

/// Why the reader stopped; the caller turns it into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) String);

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next element, whatever it is.
    pub(crate) fn read(&mut self, what: &str) -> Result<Tlv<'a>, DerError> {
        let input = self.rest;
        if input.is_empty() {
            return Err(DerError(format!("{what} is missing")));
        }
        let (rest, any) =
            Any::from_der(input).map_err(|e| DerError(format!("cannot read {what}: {e}")))?;
        let used = input.len() - rest.len();
        self.rest = rest;
        Ok(Tlv {
            any,
            raw: &input[..used],
        })
    }

    /// Reads the next element and checks that it has the universal `tag`.
    pub(crate) fn read_universal(&mut self, tag: Tag, what: &str) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read(what)?;
        if tlv.is_universal(tag) {
            Ok(tlv)
        } else {
            Err(DerError(format!(
                "{what}: expected {tag}, found {:?} {}",
                tlv.any.class(),
                tlv.any.tag()
            )))
        }
    }

    /// Reads the next element if it is the context-specific tag `[n]`.
    pub(crate) fn read_optional_context(
        &mut self,
        n: u32,
        what: &str,
    ) -> Result<Option<Tlv<'a>>, DerError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        match Header::from_der(self.rest) {
            Ok((_, header))
                if header.class() == Class::ContextSpecific && header.tag() == Tag(n) =>
            {
                self.read(what).map(Some)
            }
            Ok(_) => Ok(None),
            Err(e) => Err(DerError(format!("cannot read {what}: {e}"))),
        }
    }

    /// Fails if anything is left.
    pub(crate) fn finish(&self, what: &str) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError(format!(
                "{} unexpected bytes after {what}",
                self.rest.len()
            )))
        }
    }
}

/// Reads the single element inside an EXPLICIT tag.
pub(crate) fn explicit_inner<'a>(tagged: &Tlv<'a>, what: &str) -> Result<Tlv<'a>, DerError> {
    let mut inner = tagged.reader();
    let tlv = inner.read(what)?;
    inner.finish(what)?;
    Ok(tlv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sequence_and_keeps_raw_bytes() {
        // SEQUENCE { INTEGER 5, [0] EXPLICIT NULL }
        let der = [0x30, 0x07, 0x02, 0x01, 0x05, 0xa0, 0x02, 0x05, 0x00];
        let mut outer = Reader::new(&der);
        let seq = outer.read_universal(Tag::Sequence, "seq").unwrap();
        assert_eq!(seq.raw, &der[..]);
        outer.finish("seq").unwrap();
        let mut inner = seq.reader();
        let int = inner.read_universal(Tag::Integer, "int").unwrap();
        assert_eq!(int.raw, &[0x02, 0x01, 0x05]);
        assert!(inner.read_optional_context(1, "[1]").unwrap().is_none());
        let tagged = inner.read_optional_context(0, "[0]").unwrap().unwrap();
        assert!(tagged.is_context(0));
        assert!(explicit_inner(&tagged, "null")
            .unwrap()
            .is_universal(Tag::Null));
        inner.finish("seq").unwrap();
    }

    #[test]
    fn truncated_and_trailing_input_are_errors() {
        let mut r = Reader::new(&[0x30, 0x05, 0x02]);
        assert!(r.read("x").is_err());
        let r = Reader::new(&[0x05, 0x00, 0x00]);
        let mut r2 = r.clone();
        r2.read("null").unwrap();
        assert!(r2.finish("null").is_err());
        assert!(Reader::new(&[]).read("nothing").is_err());
    }

    #[test]
    fn wrong_tag_is_an_error() {
        let mut r = Reader::new(&[0x05, 0x00]);
        assert!(r.read_universal(Tag::Integer, "int").is_err());
    }
}
