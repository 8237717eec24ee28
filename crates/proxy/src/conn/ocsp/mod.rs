//! The OCSP stage of a connection (`tls.client_auth.ocsp`): after the
//! handshake and before the broker, the verified device certificate is
//! checked with the OCSP responder it names, and the device is let in or
//! refused as the listener's mode says (`prefer`: fail open, `require`:
//! fail closed). It cannot run inside rustls' client verifier, which is
//! synchronous.
//!
//! - `verdict`: what a check found, how long to keep it, the decision
//!   (pure);
//! - `conn::answers`: answers per certificate, bounded, with single
//!   flight (pure);
//! - `checker`: the queries, their verification, and the shared cache.

mod checker;
mod verdict;

use rustls::pki_types::CertificateDer;
use tracing::info;

pub use checker::{find_issuer, OcspChecker};

use super::metrics::ConnMetrics;
use crate::config::{ClientAuthConfig, ClientOcspMode};
use crate::tls::client_auth::PeerIdentity;
use verdict::{decide, Decision, Outcome};

/// Whether the device behind `chain` (verified, with `identity`) may go
/// on, after its OCSP check with `checker` when `settings` ask for one
/// (`cas`: the client CA bundle, where its issuer may be). Counts the
/// check and a refusal in `m`, and logs a refusal, or an admission without
/// a verified answer, once with the device's subject and fingerprint.
pub async fn admits(
    checker: &OcspChecker,
    m: &ConnMetrics,
    settings: &ClientAuthConfig,
    cas: &[CertificateDer<'static>],
    chain: Option<&[CertificateDer<'_>]>,
    identity: Option<&PeerIdentity>,
) -> bool {
    let mode = settings.ocsp;
    let (ClientOcspMode::Prefer | ClientOcspMode::Require, Some(chain), Some(id)) =
        (mode, chain, identity)
    else {
        return true;
    };
    let outcome = checker
        .check(
            &id.sha256,
            chain,
            cas,
            settings.ocsp_timeout(),
            settings.ocsp_cache_dir.as_deref(),
        )
        .await;
    m.client_ocsp_checks.inc(outcome.result());
    match decide(mode, &outcome) {
        Decision::Admit => {
            if outcome != Outcome::Good {
                info!(
                    client.subject = %id.subject,
                    client.sha256 = %id.sha256,
                    ocsp = outcome.result().as_str(),
                    detail = outcome.detail(),
                    "client certificate admitted without a verified OCSP answer (ocsp: {mode})"
                );
            }
            true
        }
        Decision::Refuse(reason) => {
            m.client_auth_denied.inc(reason);
            info!(
                client.subject = %id.subject,
                client.sha256 = %id.sha256,
                reason = reason.as_str(),
                ocsp = outcome.result().as_str(),
                detail = outcome.detail(),
                "client certificate refused by its OCSP check (ocsp: {mode})"
            );
            false
        }
    }
}

/// Whether the OCSP answer about a live session's device (its verified
/// `chain`, `identity`) now says revoked, when `settings` ask for OCSP:
/// the cached answer, or a new query once it lapsed. No answer is not
/// "revoked", whatever the mode (`conn::revocation`).
pub async fn revokes(
    checker: &OcspChecker,
    settings: &ClientAuthConfig,
    cas: &[CertificateDer<'static>],
    chain: &[CertificateDer<'_>],
    identity: &PeerIdentity,
) -> bool {
    settings.ocsp != ClientOcspMode::Off
        && checker
            .check(
                &identity.sha256,
                chain,
                cas,
                settings.ocsp_timeout(),
                settings.ocsp_cache_dir.as_deref(),
            )
            .await
            == Outcome::Revoked
}
