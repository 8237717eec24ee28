//! Reading an OCSPResponse (RFC 6960, 4.2.1) as raw DER, down to the parts
//! verification needs: the exact signed `tbsResponseData` bytes, the
//! signature, the included certificates, the ResponderID and each
//! SingleResponse. Shape only: nothing here judges the content.

use std::time::SystemTime;

use x509_parser::asn1_rs::{GeneralizedTime, Tag};

use super::error::VerifyError;
use super::staple::{CertStatus, RevocationReason};
use crate::clock;
use crate::der::{explicit_inner, Reader, Tlv};

/// DER content of id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// The parts of a BasicOCSPResponse that verification needs.
pub(super) struct Basic<'a> {
    pub(super) tbs_raw: &'a [u8],
    pub(super) sig_alg_raw: &'a [u8],
    pub(super) signature_raw: &'a [u8],
    pub(super) certs: Vec<&'a [u8]>,
    pub(super) responder_id: ResponderId<'a>,
    pub(super) produced_at: SystemTime,
    pub(super) responses: Vec<Single<'a>>,
}

/// The ResponderID: how the response names its signer.
pub(super) enum ResponderId<'a> {
    /// The raw DER Name.
    ByName(&'a [u8]),
    /// SHA-1 of the responder's public key bits.
    ByKey(&'a [u8]),
}

/// One SingleResponse: the CertID it is about (hash algorithm OID, issuer
/// name and key hashes, serial), the status and its validity window.
pub(super) struct Single<'a> {
    pub(super) hash_oid: &'a [u8],
    pub(super) name_hash: &'a [u8],
    pub(super) key_hash: &'a [u8],
    pub(super) serial: &'a [u8],
    pub(super) status: CertStatus,
    pub(super) this_update: SystemTime,
    pub(super) next_update: Option<SystemTime>,
}

/// OCSPResponse → the BasicOCSPResponse bytes.
pub(super) fn parse_outer(der: &[u8]) -> Result<&[u8], VerifyError> {
    let mut top = Reader::new(der);
    let response = top.read_universal(Tag::Sequence, "OCSPResponse")?;
    top.finish("OCSPResponse")?;
    let mut fields = response.reader();
    let status = fields.read_universal(Tag::Enumerated, "responseStatus")?;
    let code = status
        .any
        .clone()
        .enumerated()
        .map_err(|e| VerifyError::Malformed(format!("responseStatus: {e}")))?
        .0;
    if code != 0 {
        return Err(VerifyError::UnsuccessfulStatus { code });
    }
    let bytes = fields
        .read_optional_context(0, "responseBytes")?
        .ok_or_else(|| VerifyError::Malformed("successful status without responseBytes".into()))?;
    fields.finish("OCSPResponse")?;
    let bytes = explicit_inner(&bytes, "ResponseBytes")?;
    if !bytes.is_universal(Tag::Sequence) {
        return Err(VerifyError::Malformed(
            "ResponseBytes is not a SEQUENCE".into(),
        ));
    }
    let mut rb = bytes.reader();
    let oid = rb.read_universal(Tag::Oid, "responseType")?;
    if oid.content() != OID_OCSP_BASIC {
        return Err(VerifyError::Malformed(
            "responseType is not id-pkix-ocsp-basic".into(),
        ));
    }
    let octets = rb.read_universal(Tag::OctetString, "response")?;
    rb.finish("ResponseBytes")?;
    Ok(octets.content())
}

pub(super) fn parse_basic(der: &[u8]) -> Result<Basic<'_>, VerifyError> {
    let mut top = Reader::new(der);
    let basic = top.read_universal(Tag::Sequence, "BasicOCSPResponse")?;
    top.finish("BasicOCSPResponse")?;
    let mut fields = basic.reader();
    let tbs = fields.read_universal(Tag::Sequence, "tbsResponseData")?;
    let sig_alg = fields.read_universal(Tag::Sequence, "signatureAlgorithm")?;
    let signature = fields.read_universal(Tag::BitString, "signature")?;
    let mut certs = Vec::new();
    if let Some(tagged) = fields.read_optional_context(0, "certs")? {
        let list = explicit_inner(&tagged, "certs")?;
        if !list.is_universal(Tag::Sequence) {
            return Err(VerifyError::Malformed("certs is not a SEQUENCE".into()));
        }
        let mut items = list.reader();
        while !items.is_empty() {
            certs.push(items.read_universal(Tag::Sequence, "certs item")?.raw);
        }
    }
    fields.finish("BasicOCSPResponse")?;

    let mut data = tbs.reader();
    if let Some(version) = data.read_optional_context(0, "version")? {
        let v = explicit_inner(&version, "version")?;
        if !v.is_universal(Tag::Integer) || v.content() != [0] {
            return Err(VerifyError::Malformed(
                "unsupported ResponseData version".into(),
            ));
        }
    }
    let rid = data.read("responderID")?;
    let responder_id = if rid.is_context(1) {
        let name = explicit_inner(&rid, "responderID byName")?;
        if !name.is_universal(Tag::Sequence) {
            return Err(VerifyError::Malformed(
                "responderID byName is not a Name".into(),
            ));
        }
        ResponderId::ByName(name.raw)
    } else if rid.is_context(2) {
        let key = explicit_inner(&rid, "responderID byKey")?;
        if !key.is_universal(Tag::OctetString) {
            return Err(VerifyError::Malformed(
                "responderID byKey is not an OCTET STRING".into(),
            ));
        }
        ResponderId::ByKey(key.content())
    } else {
        return Err(VerifyError::Malformed(
            "responderID is neither byName nor byKey".into(),
        ));
    };
    let produced_at = time(&data.read("producedAt")?, "producedAt")?;
    let list = data.read_universal(Tag::Sequence, "responses")?;
    // responseExtensions [1] (e.g. a nonce) are allowed and not needed.
    let _ = data.read_optional_context(1, "responseExtensions")?;
    data.finish("ResponseData")?;

    let mut responses = Vec::new();
    let mut items = list.reader();
    while !items.is_empty() {
        responses.push(parse_single(
            &items.read_universal(Tag::Sequence, "SingleResponse")?,
        )?);
    }

    Ok(Basic {
        tbs_raw: tbs.raw,
        sig_alg_raw: sig_alg.raw,
        signature_raw: signature.raw,
        certs,
        responder_id,
        produced_at,
        responses,
    })
}

fn parse_single<'a>(single: &Tlv<'a>) -> Result<Single<'a>, VerifyError> {
    let mut fields = single.reader();
    let cert_id = fields.read_universal(Tag::Sequence, "CertID")?;
    let mut id = cert_id.reader();
    let alg = id.read_universal(Tag::Sequence, "hashAlgorithm")?;
    let hash_oid = alg.reader().read_universal(Tag::Oid, "hashAlgorithm OID")?;
    let name_hash = id.read_universal(Tag::OctetString, "issuerNameHash")?;
    let key_hash = id.read_universal(Tag::OctetString, "issuerKeyHash")?;
    let serial = id.read_universal(Tag::Integer, "serialNumber")?;
    id.finish("CertID")?;

    let status_tlv = fields.read("certStatus")?;
    let status = if status_tlv.is_context(0) {
        CertStatus::Good
    } else if status_tlv.is_context(1) {
        let mut info = status_tlv.reader();
        let revocation_time = time(&info.read("revocationTime")?, "revocationTime")?;
        let reason = match info.read_optional_context(0, "revocationReason")? {
            Some(tagged) => {
                let code = explicit_inner(&tagged, "revocationReason")?;
                if !code.is_universal(Tag::Enumerated) {
                    return Err(VerifyError::Malformed(
                        "revocationReason is not ENUMERATED".into(),
                    ));
                }
                let code = code
                    .any
                    .enumerated()
                    .map_err(|e| VerifyError::Malformed(format!("revocationReason: {e}")))?
                    .0;
                Some(RevocationReason::from_code(code))
            }
            None => None,
        };
        info.finish("RevokedInfo")?;
        CertStatus::Revoked {
            revocation_time,
            reason,
        }
    } else if status_tlv.is_context(2) {
        CertStatus::Unknown
    } else {
        return Err(VerifyError::Malformed(
            "certStatus is not good, revoked or unknown".into(),
        ));
    };

    let this_update = time(&fields.read("thisUpdate")?, "thisUpdate")?;
    let next_update = match fields.read_optional_context(0, "nextUpdate")? {
        Some(tagged) => Some(time(&explicit_inner(&tagged, "nextUpdate")?, "nextUpdate")?),
        None => None,
    };
    let _ = fields.read_optional_context(1, "singleExtensions")?;
    fields.finish("SingleResponse")?;

    Ok(Single {
        hash_oid: hash_oid.content(),
        name_hash: name_hash.content(),
        key_hash: key_hash.content(),
        serial: serial.content(),
        status,
        this_update,
        next_update,
    })
}

fn time(tlv: &Tlv<'_>, what: &str) -> Result<SystemTime, VerifyError> {
    if !tlv.is_universal(Tag::GeneralizedTime) {
        return Err(VerifyError::Malformed(format!(
            "{what} is not a GeneralizedTime"
        )));
    }
    let t = GeneralizedTime::try_from(tlv.any.clone())
        .map_err(|e| VerifyError::Malformed(format!("{what}: {e}")))?;
    let utc = t
        .utc_datetime()
        .map_err(|e| VerifyError::Malformed(format!("{what}: {e}")))?;
    clock::from_unix(utc.unix_timestamp(), utc.nanosecond())
        .ok_or_else(|| VerifyError::Malformed(format!("{what} is out of range")))
}
