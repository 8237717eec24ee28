//! What a device certificate's CRL distribution points say about it, pure:
//! the URLs a certificate names, a fetched CRL parsed and verified against
//! the device's issuer, the check of the device's serial, how long a fetch
//! result is kept, and the decision in each mode. No I/O and no clock of
//! its own (every call is given `now`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateRevocationListDer;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::config::ClientOcspMode;
use crate::conn::reasons::CrlCheck;
use crate::tls::client_auth::DenialReason;

/// A fetched CRL that verified: whom it is from, whom it revokes, until
/// when it speaks.
#[derive(Debug)]
pub struct Crl {
    /// The issuer's name, DER.
    issuer: Vec<u8>,
    /// Serial numbers revoked, as their DER content bytes.
    revoked: HashSet<Vec<u8>>,
    /// Its nextUpdate.
    next_update: Option<SystemTime>,
}

/// What a fetch of one URL brought: a verified CRL, or why not.
pub type Fetched = Result<Arc<Crl>, Arc<str>>;

/// What the check of one device found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No CRL it names revokes it.
    Good,
    /// A CRL it names revokes it.
    Revoked,
    /// A CRL could not be fetched, did not verify or is past its
    /// nextUpdate: why.
    Unavailable(Arc<str>),
    /// It names no HTTP(S) CRL distribution point.
    NoDistributionPoint,
}

impl Outcome {
    /// The metric label value.
    pub fn result(&self) -> CrlCheck {
        match self {
            Self::Good => CrlCheck::Good,
            Self::Revoked => CrlCheck::Revoked,
            Self::Unavailable(_) => CrlCheck::Unavailable,
            Self::NoDistributionPoint => CrlCheck::NoDistributionPoint,
        }
    }
}

/// Whether a device goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It goes on.
    Admit,
    /// It is refused, counted under this reason.
    Refuse(DenialReason),
}

/// The decision in `mode`: a revoked device is refused in both modes; one
/// whose CRL is unavailable only under `require` (fail closed). A
/// certificate with no distribution point has nothing to check.
pub fn decide(mode: ClientOcspMode, outcome: &Outcome) -> Decision {
    match (mode, outcome) {
        (ClientOcspMode::Off, _) => Decision::Admit,
        (_, Outcome::Revoked) => Decision::Refuse(DenialReason::Revoked),
        (ClientOcspMode::Require, Outcome::Unavailable(_)) => {
            Decision::Refuse(DenialReason::RevocationUnknown)
        }
        _ => Decision::Admit,
    }
}

/// The HTTP(S) URLs of `leaf`'s CRL distribution points, in order
/// (LDAP and relative names are skipped: moat fetches over HTTP only).
pub fn distribution_points(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut urls = Vec::new();
    for ext in leaf.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
                continue;
            };
            for name in names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with("http://") || uri.starts_with("https://") {
                        urls.push((*uri).to_string());
                    }
                }
            }
        }
    }
    urls
}

/// Parses a fetched CRL (DER, or the first PEM CRL) and verifies its
/// signature with `issuer`, the certificate that issued the devices it
/// covers.
pub fn verify(body: &[u8], issuer: &X509Certificate<'_>) -> Result<Crl, String> {
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(body)
            .map_err(|e| format!("not a PEM CRL: {e}"))?
            .as_ref()
            .to_vec()
    } else {
        body.to_vec()
    };
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    if crl.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "the CRL is from {}, not from the device's issuer {}",
            crl.issuer(),
            issuer.subject()
        ));
    }
    crl.verify_signature(issuer.public_key())
        .map_err(|e| format!("the CRL's signature does not verify with its issuer's key: {e}"))?;
    Ok(Crl {
        issuer: crl.issuer().as_raw().to_vec(),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect(),
        next_update: crl
            .next_update()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
    })
}

/// What `crl` says of `leaf` at `now`.
pub fn check(crl: &Crl, leaf: &X509Certificate<'_>, now: SystemTime) -> Outcome {
    if crl.issuer != leaf.issuer().as_raw() {
        return Outcome::Unavailable(
            "the CRL at this distribution point is from another issuer".into(),
        );
    }
    if crl.next_update.is_some_and(|n| n <= now) {
        return Outcome::Unavailable("the CRL is past its nextUpdate".into());
    }
    if crl.revoked.contains(leaf.raw_serial()) {
        Outcome::Revoked
    } else {
        Outcome::Good
    }
}

/// How long a fetch result is kept: a CRL until its nextUpdate, but an
/// hour at most (so that a CA that publishes early is heard within the
/// hour) and 30 s at least; a failure 30 s, so that a responder that is
/// down is not asked by every device that connects meanwhile.
pub fn keep_until(fetched: &Fetched, now: SystemTime) -> SystemTime {
    const MIN: Duration = Duration::from_secs(30);
    const MAX: Duration = Duration::from_secs(3600);
    match fetched {
        Ok(crl) => {
            let until = crl.next_update.unwrap_or(now + MAX);
            until.clamp(now + MIN, now + MAX)
        }
        Err(_) => now + MIN,
    }
}

#[cfg(test)]
mod tests;
