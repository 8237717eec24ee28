//! What a response says about our certificate: the one SingleResponse
//! whose CertID is ours (serial, issuer name and key hashes), and whether
//! its thisUpdate/nextUpdate window holds at the time of verification.

use std::time::{Duration, SystemTime};

use x509_parser::prelude::X509Certificate;

use super::error::VerifyError;
use super::response::Single;
use crate::cert::{key_hash, CertIdHash};
use crate::clock::{self, fmt_time};

/// The one SingleResponse about our certificate.
pub(super) fn find_ours<'s, 'a>(
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

/// Checks the validity window of `single` at `now`, allowing `skew`:
/// thisUpdate not after `now + skew`, a nextUpdate later than thisUpdate
/// and later than `now - skew`. Returns the nextUpdate.
pub(super) fn check_validity(
    single: &Single<'_>,
    now: SystemTime,
    skew: Duration,
) -> Result<SystemTime, VerifyError> {
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
    Ok(next_update)
}
