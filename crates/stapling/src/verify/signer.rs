//! Who signed a response and whether they may: the issuer itself, or a
//! delegated responder certificate included in the response that the
//! issuer signed for OCSP signing; and the signature over the exact
//! `tbsResponseData` bytes with that signer's key.

use std::time::{Duration, SystemTime};

use x509_parser::asn1_rs::BitString;
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::x509::AlgorithmIdentifier;

use super::error::VerifyError;
use super::response::{Basic, ResponderId};
use super::staple::Responder;
use crate::cert::{key_hash, parse_cert, CertIdHash};
use crate::clock::{self, fmt_time};

fn responder_id_matches(id: &ResponderId<'_>, cert: &X509Certificate<'_>) -> bool {
    match id {
        ResponderId::ByName(name) => *name == cert.subject().as_raw(),
        ResponderId::ByKey(hash) => *hash == key_hash(cert, CertIdHash::Sha1).as_ref(),
    }
}

fn describe_responder_id(id: &ResponderId<'_>) -> String {
    match id {
        ResponderId::ByName(raw) => match X509Name::from_der(raw) {
            Ok((_, name)) => format!("\"{name}\""),
            Err(_) => "an unreadable name".to_string(),
        },
        ResponderId::ByKey(hash) => format!("the key with SHA-1 hash {}", hex(hash)),
    }
}

/// Finds the signer the ResponderID names, checks its authority and the
/// signature.
pub(super) fn authorize(
    basic: &Basic<'_>,
    issuer: &X509Certificate<'_>,
    now: SystemTime,
    skew: Duration,
) -> Result<Responder, VerifyError> {
    if responder_id_matches(&basic.responder_id, issuer) {
        check_signature(basic, issuer, "the issuer")?;
        return Ok(Responder::Issuer);
    }
    let mut refusal = None;
    for raw in &basic.certs {
        let Ok(cert) = parse_cert(raw, "responder") else {
            continue;
        };
        if !responder_id_matches(&basic.responder_id, &cert) {
            continue;
        }
        let subject = cert.subject().to_string();
        let outcome = check_delegate(&cert, issuer, now, skew)
            .map_err(VerifyError::UnauthorizedResponder)
            .and_then(|()| check_signature(basic, &cert, &format!("responder \"{subject}\"")));
        match outcome {
            Ok(()) => return Ok(Responder::Delegated { subject }),
            Err(e) => refusal = Some(e),
        }
    }
    Err(refusal.unwrap_or_else(|| {
        VerifyError::UnauthorizedResponder(format!(
            "the response is signed by {}, which is neither the issuer \"{}\" nor a \
             certificate included in the response",
            describe_responder_id(&basic.responder_id),
            issuer.subject()
        ))
    }))
}

/// A delegated responder must be issued and signed by the issuer, carry
/// id-kp-OCSPSigning and be valid now.
fn check_delegate(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: SystemTime,
    skew: Duration,
) -> Result<(), String> {
    let subject = cert.subject();
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "responder certificate \"{subject}\" was issued by \"{}\", not by \"{}\"",
            cert.issuer(),
            issuer.subject()
        ));
    }
    if cert.verify_signature(Some(issuer.public_key())).is_err() {
        return Err(format!(
            "responder certificate \"{subject}\" is not signed by the key of \"{}\"",
            issuer.subject()
        ));
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.ocsp_signing => {}
        Ok(_) => {
            return Err(format!(
                "responder certificate \"{subject}\" lacks the OCSPSigning extended key usage"
            ))
        }
        Err(e) => {
            return Err(format!(
                "responder certificate \"{subject}\" has an unreadable extended key usage: {e}"
            ))
        }
    }
    let now_s = clock::to_unix(now);
    let skew_s = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if validity.not_before.timestamp().saturating_sub(skew_s) > now_s
        || validity.not_after.timestamp().saturating_add(skew_s) < now_s
    {
        let show = |t: i64| clock::from_unix(t, 0).map_or_else(|| t.to_string(), fmt_time);
        return Err(format!(
            "responder certificate \"{subject}\" is not valid at {} (valid from {} to {})",
            fmt_time(now),
            show(validity.not_before.timestamp()),
            show(validity.not_after.timestamp())
        ));
    }
    Ok(())
}

fn check_signature(
    basic: &Basic<'_>,
    signer: &X509Certificate<'_>,
    who: &str,
) -> Result<(), VerifyError> {
    let (_, alg) = AlgorithmIdentifier::from_der(basic.sig_alg_raw)
        .map_err(|e| VerifyError::Malformed(format!("signatureAlgorithm: {e}")))?;
    let (_, signature) = BitString::from_der(basic.signature_raw)
        .map_err(|e| VerifyError::Malformed(format!("signature: {e}")))?;
    match x509_parser::verify::verify_signature(
        signer.public_key(),
        &alg,
        &signature,
        basic.tbs_raw,
    ) {
        Ok(()) => Ok(()),
        // A known algorithm that does not fit the signer's key (ECDSA
        // against an RSA key, say) means another key signed it.
        Err(X509Error::SignatureUnsupportedAlgorithm) if known_signature_algorithm(&alg) => {
            Err(VerifyError::BadSignature(format!(
                "its algorithm {} does not fit the key of {who}",
                alg.algorithm
            )))
        }
        Err(X509Error::SignatureUnsupportedAlgorithm) => Err(VerifyError::UnsupportedAlgorithm(
            format!("{} (signer {who})", alg.algorithm),
        )),
        Err(_) => Err(VerifyError::BadSignature(format!(
            "it does not verify with the key of {who}"
        ))),
    }
}

/// The algorithms `x509_parser::verify::verify_signature` can check for a
/// key of the right type (RSA-PSS only with some parameters, so it is left
/// out).
fn known_signature_algorithm(alg: &AlgorithmIdentifier<'_>) -> bool {
    use x509_parser::oid_registry::{
        OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    };
    [
        OID_PKCS1_SHA1WITHRSA,
        OID_SHA1_WITH_RSA,
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ED25519,
    ]
    .contains(&alg.algorithm)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
