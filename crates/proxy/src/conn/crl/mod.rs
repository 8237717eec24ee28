//! The CRL distribution point stage of a connection
//! (`tls.client_auth.crl_distribution_points`): after the handshake and
//! before the broker, the verified device certificate is checked against
//! the CRL it names (its CRL distribution points, downloaded over HTTP and
//! cached per URL), and the device is let in or refused as the listener's
//! mode says (`prefer`: fail open, `require`: fail closed). CRL files the
//! operator configures (`client_auth.crl`) are checked by rustls in the
//! handshake itself; this stage is for CAs that publish their CRL at a URL.
//!
//! - `verdict`: URLs, parsing and verification, the check, how long a CRL
//!   is kept, the decision (pure);
//! - `checker`: the downloads and the shared cache.

mod checker;
mod verdict;

use rustls::pki_types::CertificateDer;
use tracing::info;

pub use checker::CrlChecker;

use super::metrics::ConnMetrics;
use crate::config::{ClientAuthConfig, ClientOcspMode};
use crate::tls::client_auth::PeerIdentity;
use verdict::{decide, Decision, Outcome};

/// Whether the device behind `chain` (verified, with `identity`) may go
/// on after the check of its CRL distribution points, when `settings` ask
/// for one (`cas`: the client CA bundle). Counts the check and a refusal
/// in `m`, and logs a refusal, or an admission without a CRL, once with
/// the device's subject and fingerprint.
pub async fn admits(
    checker: &CrlChecker,
    m: &ConnMetrics,
    settings: &ClientAuthConfig,
    cas: &[CertificateDer<'static>],
    chain: Option<&[CertificateDer<'_>]>,
    identity: Option<&PeerIdentity>,
) -> bool {
    let mode = settings.crl_distribution_points;
    let (ClientOcspMode::Prefer | ClientOcspMode::Require, Some(chain), Some(id)) =
        (mode, chain, identity)
    else {
        return true;
    };
    let outcome = checker
        .check(chain, cas, settings.crl_fetch_timeout())
        .await;
    m.client_crl_checks.inc(outcome.result());
    let detail = match &outcome {
        Outcome::Unavailable(why) => why.as_ref(),
        _ => "",
    };
    match decide(mode, &outcome) {
        Decision::Admit => {
            if let Outcome::Unavailable(_) = outcome {
                info!(
                    client.subject = %id.subject,
                    client.sha256 = %id.sha256,
                    detail,
                    "client certificate admitted without its CRL (crl_distribution_points: {mode})"
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
                detail,
                "client certificate refused by the CRL it names (crl_distribution_points: {mode})"
            );
            false
        }
    }
}

/// Whether the CRL a live session's device certificate names (its
/// verified `chain`) now revokes it, when `settings` ask for the check:
/// the cached CRL, or a new download once it lapsed. No CRL is not
/// "revoked", whatever the mode (`conn::revocation`).
pub async fn revokes(
    checker: &CrlChecker,
    settings: &ClientAuthConfig,
    cas: &[CertificateDer<'static>],
    chain: &[CertificateDer<'_>],
) -> bool {
    settings.crl_distribution_points != ClientOcspMode::Off
        && checker
            .check(chain, cas, settings.crl_fetch_timeout())
            .await
            == Outcome::Revoked
}
