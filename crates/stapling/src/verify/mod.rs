//! Verification of an OCSP response before it may be stapled (RFC 6960):
//! status and type, the responder's authority and signature, the CertID of
//! our certificate, and the validity window. Pure: bytes and a time in, a
//! [`Staple`] or a [`VerifyError`] out.
//!
//! The response is walked as raw DER so the signature is checked over the
//! exact `tbsResponseData` bytes that will be stapled. [`verify_response`]
//! runs the steps in order: `response` reads the DER, `signer` checks who
//! signed it, `status` finds our certificate's status and checks its
//! window; `staple` and `error` hold the results.

mod error;
mod response;
mod signer;
mod staple;
mod status;

use std::time::{Duration, SystemTime};

use response::{parse_basic, parse_outer};
use signer::authorize;
use status::{check_validity, find_ours};

use crate::cert::{check_issued_by, parse_cert};

pub use error::VerifyError;
pub use staple::{CertStatus, Responder, RevocationReason, Staple};

/// Verifies a DER OCSPResponse for `leaf_der`, issued by `issuer_der`, at
/// time `now`, allowing `skew` of clock difference with the responder.
///
/// Checks, in order:
/// 1. both certificates parse, and the issuer issued the leaf;
/// 2. the response status is successful and the type is the basic response;
/// 3. the signer is the issuer, or a responder certificate included in the
///    response that the issuer signed, with the OCSPSigning extended key
///    usage and valid at `now`; the signature verifies with its key;
/// 4. exactly one SingleResponse has the CertID of our certificate (SHA-1,
///    SHA-256, SHA-384 or SHA-512 hashes);
/// 5. thisUpdate is not after `now + skew`; nextUpdate is present, later
///    than thisUpdate and later than `now - skew`.
///
/// Never panics, whatever the bytes.
pub fn verify_response(
    der: &[u8],
    leaf_der: &[u8],
    issuer_der: &[u8],
    now: SystemTime,
    skew: Duration,
) -> Result<Staple, VerifyError> {
    let leaf = parse_cert(leaf_der, "leaf").map_err(VerifyError::BadCertificate)?;
    let issuer = parse_cert(issuer_der, "issuer").map_err(VerifyError::BadCertificate)?;
    check_issued_by(&leaf, &issuer).map_err(VerifyError::IssuerMismatch)?;

    let basic_der = parse_outer(der)?;
    let basic = parse_basic(basic_der)?;
    let responder = authorize(&basic, &issuer, now, skew)?;
    let single = find_ours(&basic.responses, &leaf, &issuer)?;
    let next_update = check_validity(single, now, skew)?;

    Ok(Staple {
        der: der.to_vec(),
        this_update: single.this_update,
        next_update,
        produced_at: basic.produced_at,
        cert_status: single.status.clone(),
        responder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn now() -> SystemTime {
        clock::from_unix(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn garbage_is_malformed_or_bad_certificate_never_a_panic() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\x30",
            b"\x30\x03\x0a\x01\x00",
            b"\x30\x03\x0a\x01\x03",
            b"\xff\xff\xff\xff",
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ];
        for input in inputs {
            let err = verify_response(input, input, input, now(), Duration::ZERO).unwrap_err();
            assert_eq!(err.reason(), "bad_certificate");
            let err = parse_outer(input).err();
            if let Some(err) = err {
                assert!(VerifyError::REASONS.contains(&err.reason()));
            }
        }
        // tryLater, as a real responder sends it
        assert_eq!(
            parse_outer(b"\x30\x03\x0a\x01\x03").unwrap_err(),
            VerifyError::UnsuccessfulStatus { code: 3 }
        );
        // successful but no responseBytes
        assert_eq!(
            parse_outer(b"\x30\x03\x0a\x01\x00").unwrap_err().reason(),
            "malformed"
        );
    }
}
