//! Why a response is refused: [`VerifyError`], its messages and its stable
//! labels for metrics.

use std::fmt;
use std::time::SystemTime;

use crate::clock::fmt_time;
use crate::der::DerError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn now() -> SystemTime {
        clock::from_unix(1_800_000_000, 0).unwrap()
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
}
