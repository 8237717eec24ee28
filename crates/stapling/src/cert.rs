//! What stapling needs to know about a certificate and its issuer: the
//! OCSP responder URL, the Must-Staple (TLS Feature) extension, the CertID
//! hashes and the check that the issuer really issued the leaf. Pure.

use aws_lc_rs::digest;
use x509_parser::asn1_rs::Tag;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::der::Reader;

/// DER content of the OID id-pe-tlsfeature, 1.3.6.1.5.5.7.1.24 (RFC 7633).
const OID_TLS_FEATURE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18];
/// The TLS extension number of status_request, the feature Must-Staple names.
const STATUS_REQUEST: u32 = 5;

/// Facts about a leaf certificate that the proxy may want to report, for
/// example in `moat check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// The first OCSP responder URL of the Authority Information Access
    /// extension, if any.
    pub responder_url: Option<String>,
    /// Whether the certificate carries the TLS Feature extension with
    /// status_request ("OCSP Must-Staple"): clients that honour it refuse a
    /// handshake without a staple.
    pub must_staple: bool,
    /// The serial number, as colon-separated hex.
    pub serial: String,
}

/// Reads the stapling facts of a DER leaf certificate.
///
/// Fails with a description when the certificate cannot be parsed.
pub fn leaf_facts(leaf_der: &[u8]) -> Result<LeafFacts, String> {
    let leaf = parse_cert(leaf_der, "leaf")?;
    Ok(LeafFacts {
        responder_url: responder_url(&leaf),
        must_staple: must_staple(&leaf),
        serial: leaf.raw_serial_as_string(),
    })
}

pub(crate) fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!(
            "the {what} certificate has {} unexpected bytes after it",
            rest.len()
        )),
        Err(e) => Err(format!("cannot parse the {what} certificate: {e}")),
    }
}

/// The first OCSP URL of the AIA extension.
pub(crate) fn responder_url(cert: &X509Certificate<'_>) -> Option<String> {
    cert.extensions().iter().find_map(|ext| {
        let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
            return None;
        };
        aia.accessdescs
            .iter()
            .filter(|d| d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP)
            .find_map(|d| match d.access_location {
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
    })
}

/// Whether the TLS Feature extension lists status_request.
pub(crate) fn must_staple(cert: &X509Certificate<'_>) -> bool {
    cert.extensions()
        .iter()
        .filter(|ext| ext.oid.as_bytes() == OID_TLS_FEATURE)
        .any(|ext| tls_features_include(ext.value, STATUS_REQUEST))
}

/// `Features ::= SEQUENCE OF INTEGER`; anything unreadable counts as absent.
fn tls_features_include(value: &[u8], feature: u32) -> bool {
    let mut outer = Reader::new(value);
    let Ok(seq) = outer.read_universal(Tag::Sequence, "TLS features") else {
        return false;
    };
    let mut items = seq.reader();
    while !items.is_empty() {
        let Ok(item) = items.read_universal(Tag::Integer, "TLS feature") else {
            return false;
        };
        if item.any.clone().u32().ok() == Some(feature) {
            return true;
        }
    }
    false
}

/// Checks that `issuer` issued `leaf`: the names chain and, when the
/// algorithm is one we can check, the leaf's signature verifies with the
/// issuer's key.
pub(crate) fn check_issued_by(
    leaf: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), String> {
    if leaf.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "the leaf names \"{}\" as its issuer, but the issuer certificate is \"{}\"",
            leaf.issuer(),
            issuer.subject()
        ));
    }
    match leaf.verify_signature(Some(issuer.public_key())) {
        Ok(()) | Err(X509Error::SignatureUnsupportedAlgorithm) => Ok(()),
        Err(_) => Err(format!(
            "the leaf's signature does not verify with the key of \"{}\"",
            issuer.subject()
        )),
    }
}

/// A hash algorithm a CertID may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertIdHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl CertIdHash {
    /// The algorithm named by a DER OID content, if supported.
    pub(crate) fn from_oid_bytes(oid: &[u8]) -> Option<Self> {
        use x509_parser::oid_registry::{
            OID_HASH_SHA1, OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512,
        };
        if oid == OID_HASH_SHA1.as_bytes() {
            Some(Self::Sha1)
        } else if oid == OID_NIST_HASH_SHA256.as_bytes() {
            Some(Self::Sha256)
        } else if oid == OID_NIST_HASH_SHA384.as_bytes() {
            Some(Self::Sha384)
        } else if oid == OID_NIST_HASH_SHA512.as_bytes() {
            Some(Self::Sha512)
        } else {
            None
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> digest::Digest {
        let alg = match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data)
    }
}

/// SHA-1 of a certificate's subjectPublicKey bits, as used by CertID's
/// issuerKeyHash (with SHA-1) and by ResponderID byKey.
pub(crate) fn key_hash(cert: &X509Certificate<'_>, hash: CertIdHash) -> digest::Digest {
    hash.digest(&cert.public_key().subject_public_key.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_feature_parsing() {
        // SEQUENCE { INTEGER 5 }
        assert!(tls_features_include(&[0x30, 0x03, 0x02, 0x01, 0x05], 5));
        // SEQUENCE { INTEGER 17, INTEGER 5 }
        assert!(tls_features_include(
            &[0x30, 0x06, 0x02, 0x01, 0x11, 0x02, 0x01, 0x05],
            5
        ));
        // SEQUENCE { INTEGER 17 }
        assert!(!tls_features_include(&[0x30, 0x03, 0x02, 0x01, 0x11], 5));
        // garbage
        assert!(!tls_features_include(&[0x30, 0x05, 0x02], 5));
        assert!(!tls_features_include(&[], 5));
    }

    #[test]
    fn unparsable_leaf_is_reported() {
        let err = leaf_facts(b"not a certificate").unwrap_err();
        assert!(err.contains("cannot parse the leaf"), "{err}");
    }

    #[test]
    fn hash_oids() {
        use x509_parser::oid_registry::{OID_HASH_SHA1, OID_NIST_HASH_SHA256};
        assert_eq!(
            CertIdHash::from_oid_bytes(OID_HASH_SHA1.as_bytes()),
            Some(CertIdHash::Sha1)
        );
        assert_eq!(
            CertIdHash::from_oid_bytes(OID_NIST_HASH_SHA256.as_bytes()),
            Some(CertIdHash::Sha256)
        );
        assert_eq!(CertIdHash::from_oid_bytes(&[0x2a, 0x03]), None);
        assert_eq!(CertIdHash::Sha1.digest(b"abc").as_ref().len(), 20);
    }
}
