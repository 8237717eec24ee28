//! What verification yields: the [`Staple`] (a verified response and the
//! facts read from it), the certificate status it states, and who signed it.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::clock::{self, fmt_time};

/// A verified OCSP response for one certificate, ready to staple.
///
/// Only [`verify_response`](crate::verify_response) makes one, so holding
/// a `Staple` means the response was checked (at the time it was verified;
/// see [`Staple::next_update`] for how long it lasts).
#[derive(Clone, PartialEq, Eq)]
pub struct Staple {
    pub(super) der: Vec<u8>,
    pub(super) this_update: SystemTime,
    pub(super) next_update: SystemTime,
    pub(super) produced_at: SystemTime,
    pub(super) cert_status: CertStatus,
    pub(super) responder: Responder,
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
    pub(super) fn from_code(code: u32) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
