//! Verification of an OCSP response before it may be stapled (RFC 6960):
//! status and type, the responder's authority and signature, the CertID of
//! our certificate, and the validity window. Pure: bytes and a time in, a
//! [`Staple`] or a [`VerifyError`] out.
//!
//! The response is walked as raw DER so the signature is checked over the
//! exact `tbsResponseData` bytes that will be stapled.

use std::fmt;
use std::time::{Duration, SystemTime};

use x509_parser::asn1_rs::{BitString, GeneralizedTime, Tag};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::x509::AlgorithmIdentifier;

use crate::cert::{check_issued_by, key_hash, parse_cert, CertIdHash};
use crate::clock::{self, fmt_time};
use crate::der::{explicit_inner, DerError, Reader, Tlv};

/// DER content of id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// A verified OCSP response for one certificate, ready to staple.
///
/// Only [`verify_response`] makes one, so holding a `Staple` means the
/// response was checked (at the time it was verified; see
/// [`Staple::next_update`] for how long it lasts).
#[derive(Clone, PartialEq, Eq)]
pub struct Staple {
    der: Vec<u8>,
    this_update: SystemTime,
    next_update: SystemTime,
    produced_at: SystemTime,
    cert_status: CertStatus,
    responder: Responder,
}

impl Staple {
    /// The DER-encoded OCSPResponse to send in the handshake (for rustls,
    /// `CertifiedKey::ocsp`).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The response's thisUpdate.
    pub fn this_update(&self) -> SystemTime {
        self.this_update
    }

    /// The response's nextUpdate: after it, the response is expired and is
    /// never stapled.
    pub fn next_update(&self) -> SystemTime {
        self.next_update
    }

    /// The response's producedAt.
    pub fn produced_at(&self) -> SystemTime {
        self.produced_at
    }

    /// What the responder says about the certificate.
    pub fn cert_status(&self) -> &CertStatus {
        &self.cert_status
    }

    /// Who signed the response.
    pub fn responder(&self) -> &Responder {
        &self.responder
    }

    /// `nextUpdate - thisUpdate`.
    pub fn validity(&self) -> Duration {
        clock::since(self.next_update, self.this_update)
    }
}

impl fmt::Debug for Staple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staple")
            .field("der_len", &self.der.len())
            .field("this_update", &fmt_time(self.this_update))
            .field("next_update", &fmt_time(self.next_update))
            .field("cert_status", &self.cert_status)
            .field("responder", &self.responder)
            .finish()
    }
}

/// The certificate status in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked: the certificate must not be trusted.
    Revoked {
        /// When it was revoked.
        revocation_time: SystemTime,
        /// Why, if the responder says.
        reason: Option<RevocationReason>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

impl CertStatus {
    /// A short stable label: `good`, `revoked` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked { .. } => "revoked",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked {
                revocation_time,
                reason,
            } => {
                write!(f, "revoked at {}", fmt_time(*revocation_time))?;
                if let Some(reason) = reason {
                    write!(f, " ({reason})")?;
                }
                Ok(())
            }
            other => f.write_str(other.label()),
        }
    }
}

/// CRLReason (RFC 5280, 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// removeFromCRL (8)
    RemoveFromCrl,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
    /// A value RFC 5280 does not define.
    Other(u32),
}

impl RevocationReason {
    fn from_code(code: u32) -> Self {
        match code {
            0 => Self::Unspecified,
            1 => Self::KeyCompromise,
            2 => Self::CaCompromise,
            3 => Self::AffiliationChanged,
            4 => Self::Superseded,
            5 => Self::CessationOfOperation,
            6 => Self::CertificateHold,
            8 => Self::RemoveFromCrl,
            9 => Self::PrivilegeWithdrawn,
            10 => Self::AaCompromise,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
            Self::Other(code) => return write!(f, "reason {code}"),
        };
        f.write_str(name)
    }
}

/// Who signed a verified response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responder {
    /// The certificate's issuer itself.
    Issuer,
    /// A delegated responder certificate issued by the issuer for OCSP
    /// signing, included in the response.
    Delegated {
        /// The responder certificate's subject.
        subject: String,
    },
}

/// Why a response is refused. A refused response is never stapled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf or issuer certificate itself cannot be used.
    BadCertificate(String),
    /// The issuer certificate did not issue the leaf.
    IssuerMismatch(String),
    /// The response is not valid DER of the expected shape.
    Malformed(String),
    /// The responder answered with an error status instead of a response.
    UnsuccessfulStatus {
        /// The OCSPResponseStatus value.
        code: u32,
    },
    /// The signer is neither the issuer nor a responder it authorised.
    UnauthorizedResponder(String),
    /// The signature does not verify with the responder's key.
    BadSignature(String),
    /// The response is signed with an algorithm this crate cannot check.
    UnsupportedAlgorithm(String),
    /// The response carries no status for our certificate.
    WrongCertificate {
        /// Our certificate's serial number.
        serial: String,
        /// How many statuses (for other certificates) the response has.
        statuses: usize,
    },
    /// thisUpdate is in the future beyond the allowed clock skew.
    NotYetValid {
        /// The response's thisUpdate.
        this_update: SystemTime,
    },
    /// The response has no nextUpdate, so it could not be known to expire.
    NoNextUpdate,
    /// nextUpdate has passed.
    Expired {
        /// The response's nextUpdate.
        next_update: SystemTime,
    },
}

impl VerifyError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadCertificate(_) => "bad_certificate",
            Self::IssuerMismatch(_) => "issuer_mismatch",
            Self::Malformed(_) => "malformed",
            Self::UnsuccessfulStatus { .. } => "unsuccessful_status",
            Self::UnauthorizedResponder(_) => "unauthorized_responder",
            Self::BadSignature(_) => "bad_signature",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::WrongCertificate { .. } => "wrong_certificate",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::NoNextUpdate => "no_next_update",
            Self::Expired { .. } => "expired",
        }
    }

    /// Every label [`VerifyError::reason`] can return.
    pub const REASONS: &'static [&'static str] = &[
        "bad_certificate",
        "issuer_mismatch",
        "malformed",
        "unsuccessful_status",
        "unauthorized_responder",
        "bad_signature",
        "unsupported_algorithm",
        "wrong_certificate",
        "not_yet_valid",
        "no_next_update",
        "expired",
    ];
}

fn status_name(code: u32) -> &'static str {
    match code {
        0 => "successful",
        1 => "malformedRequest",
        2 => "internalError",
        3 => "tryLater",
        5 => "sigRequired",
        6 => "unauthorized",
        _ => "an undefined status",
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCertificate(d) => write!(f, "certificate unusable for OCSP: {d}"),
            Self::IssuerMismatch(d) => write!(f, "wrong issuer certificate: {d}"),
            Self::Malformed(d) => write!(f, "malformed OCSP response: {d}"),
            Self::UnsuccessfulStatus { code } => write!(
                f,
                "the OCSP responder answered {} ({code}) instead of a response",
                status_name(*code)
            ),
            Self::UnauthorizedResponder(d) => write!(f, "unauthorized OCSP responder: {d}"),
            Self::BadSignature(d) => write!(f, "bad OCSP response signature: {d}"),
            Self::UnsupportedAlgorithm(d) => {
                write!(f, "OCSP response signed with an unsupported algorithm: {d}")
            }
            Self::WrongCertificate { serial, statuses } => write!(
                f,
                "the OCSP response is not about this certificate (serial {serial}): \
                 none of its {statuses} status(es) matches"
            ),
            Self::NotYetValid { this_update } => write!(
                f,
                "the OCSP response is not yet valid: thisUpdate {} is in the future",
                fmt_time(*this_update)
            ),
            Self::NoNextUpdate => f.write_str(
                "the OCSP response has no nextUpdate, so its freshness cannot be bounded",
            ),
            Self::Expired { next_update } => write!(
                f,
                "the OCSP response expired: nextUpdate {} has passed",
                fmt_time(*next_update)
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

impl From<DerError> for VerifyError {
    fn from(e: DerError) -> Self {
        Self::Malformed(e.0)
    }
}

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

    if single.this_update > clock::add(now, skew) {
        return Err(VerifyError::NotYetValid {
            this_update: single.this_update,
        });
    }
    let next_update = single.next_update.ok_or(VerifyError::NoNextUpdate)?;
    if next_update <= single.this_update {
        return Err(VerifyError::Malformed(format!(
            "nextUpdate {} is not after thisUpdate {}",
            fmt_time(next_update),
            fmt_time(single.this_update)
        )));
    }
    if next_update <= clock::sub(now, skew) {
        return Err(VerifyError::Expired { next_update });
    }

    Ok(Staple {
        der: der.to_vec(),
        this_update: single.this_update,
        next_update,
        produced_at: basic.produced_at,
        cert_status: single.status.clone(),
        responder,
    })
}

/// The parts of a BasicOCSPResponse that verification needs.
struct Basic<'a> {
    tbs_raw: &'a [u8],
    sig_alg_raw: &'a [u8],
    signature_raw: &'a [u8],
    certs: Vec<&'a [u8]>,
    responder_id: ResponderId<'a>,
    produced_at: SystemTime,
    responses: Vec<Single<'a>>,
}

enum ResponderId<'a> {
    /// The raw DER Name.
    ByName(&'a [u8]),
    /// SHA-1 of the responder's public key bits.
    ByKey(&'a [u8]),
}

struct Single<'a> {
    hash_oid: &'a [u8],
    name_hash: &'a [u8],
    key_hash: &'a [u8],
    serial: &'a [u8],
    status: CertStatus,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
}

/// OCSPResponse → the BasicOCSPResponse bytes.
fn parse_outer(der: &[u8]) -> Result<&[u8], VerifyError> {
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

fn parse_basic(der: &[u8]) -> Result<Basic<'_>, VerifyError> {
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
fn authorize(
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

/// The one SingleResponse about our certificate.
fn find_ours<'s, 'a>(
    responses: &'s [Single<'a>],
    leaf: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<&'s Single<'a>, VerifyError> {
    let mut ours = responses.iter().filter(|s| {
        let Some(hash) = CertIdHash::from_oid_bytes(s.hash_oid) else {
            return false;
        };
        s.serial == leaf.raw_serial()
            && s.name_hash == hash.digest(leaf.issuer().as_raw()).as_ref()
            && s.key_hash == key_hash(issuer, hash).as_ref()
    });
    match (ours.next(), ours.next()) {
        (Some(single), None) => Ok(single),
        (None, _) => Err(VerifyError::WrongCertificate {
            serial: leaf.raw_serial_as_string(),
            statuses: responses.len(),
        }),
        (Some(_), Some(_)) => Err(VerifyError::Malformed(
            "the response has more than one status for this certificate".into(),
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            VerifyError::BadCertificate(String::new()),
            VerifyError::IssuerMismatch(String::new()),
            VerifyError::Malformed(String::new()),
            VerifyError::UnsuccessfulStatus { code: 6 },
            VerifyError::UnauthorizedResponder(String::new()),
            VerifyError::BadSignature(String::new()),
            VerifyError::UnsupportedAlgorithm(String::new()),
            VerifyError::WrongCertificate {
                serial: "01".into(),
                statuses: 1,
            },
            VerifyError::NotYetValid { this_update: now() },
            VerifyError::NoNextUpdate,
            VerifyError::Expired { next_update: now() },
        ];
        for e in &samples {
            assert!(VerifyError::REASONS.contains(&e.reason()), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(samples.len(), VerifyError::REASONS.len());
        assert!(VerifyError::UnsuccessfulStatus { code: 6 }
            .to_string()
            .contains("unauthorized"));
    }

    #[test]
    fn revocation_reasons_have_rfc_names() {
        assert_eq!(RevocationReason::from_code(1).to_string(), "keyCompromise");
        assert_eq!(RevocationReason::from_code(7), RevocationReason::Other(7));
        assert_eq!(RevocationReason::from_code(7).to_string(), "reason 7");
        let status = CertStatus::Revoked {
            revocation_time: clock::from_unix(0, 0).unwrap(),
            reason: Some(RevocationReason::Superseded),
        };
        assert_eq!(
            status.to_string(),
            "revoked at 1970-01-01T00:00:00Z (superseded)"
        );
        assert_eq!(status.label(), "revoked");
    }
}
