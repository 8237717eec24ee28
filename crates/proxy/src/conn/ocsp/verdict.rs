//! What an OCSP check of a device certificate found ([`Outcome`]), how
//! long that is worth keeping, and what the listener's `ocsp` mode makes
//! of it ([`decide`]). Pure.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::ClientOcspMode;
use crate::conn::reasons::{CheckResult, QueryResult};
use crate::tls::client_auth::DenialReason;

/// How long a failed query is remembered, so that a responder outage does
/// not turn a reconnect storm into a request storm.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);

/// What the check of one certificate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A verified answer: not revoked.
    Good,
    /// A verified answer: revoked.
    Revoked,
    /// A verified answer: the responder does not know the certificate.
    Unknown,
    /// No verified answer: the responder is down, slow, refused, or sent
    /// something that does not verify. The text says which.
    ResponderError(Arc<str>),
    /// The certificate names no OCSP responder (no AIA OCSP URL), or its
    /// issuer is not at hand, so there is no one to ask.
    NoResponder(&'static str),
}

impl Outcome {
    /// Its label in `moat_client_ocsp_checks_total`.
    pub fn result(&self) -> CheckResult {
        match self {
            Self::Good => CheckResult::Good,
            Self::Revoked => CheckResult::Revoked,
            Self::Unknown => CheckResult::Unknown,
            Self::ResponderError(_) => CheckResult::ResponderError,
            Self::NoResponder(_) => CheckResult::NoResponder,
        }
    }

    /// Its label in `moat_client_ocsp_queries_total`.
    pub fn query_result(&self) -> QueryResult {
        match self {
            Self::Good => QueryResult::Good,
            Self::Revoked => QueryResult::Revoked,
            Self::Unknown => QueryResult::Unknown,
            Self::ResponderError(_) | Self::NoResponder(_) => QueryResult::Error,
        }
    }

    /// What the log line says about it.
    pub fn detail(&self) -> &str {
        match self {
            Self::Good => "the responder says good",
            Self::Revoked => "the responder says revoked",
            Self::Unknown => "the responder does not know the certificate",
            Self::ResponderError(why) => why,
            Self::NoResponder(why) => why,
        }
    }

    /// Until when to keep this answer, given the verified response's
    /// nextUpdate (for verified answers): a verified answer until its
    /// nextUpdate, a failure for [`FAILURE_TTL`].
    pub fn keep_until(&self, next_update: Option<SystemTime>, now: SystemTime) -> SystemTime {
        match (self, next_update) {
            (Self::Good | Self::Revoked | Self::Unknown, Some(next)) => next,
            _ => now + FAILURE_TTL,
        }
    }
}

/// What the listener does with a device after its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it in.
    Admit,
    /// Refuse it, counted under this reason in
    /// `moat_client_auth_denied_total`.
    Refuse(DenialReason),
}

/// `prefer` refuses only a verified "revoked"; `require` admits only a
/// verified "good". `off` admits everyone (no check is made).
pub fn decide(mode: ClientOcspMode, outcome: &Outcome) -> Decision {
    match (mode, outcome) {
        (ClientOcspMode::Off, _) | (_, Outcome::Good) => Decision::Admit,
        (_, Outcome::Revoked) => Decision::Refuse(DenialReason::OcspRevoked),
        (ClientOcspMode::Prefer, _) => Decision::Admit,
        (ClientOcspMode::Require, _) => Decision::Refuse(DenialReason::OcspUnverified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::reason::Reason;

    fn all() -> [Outcome; 5] {
        [
            Outcome::Good,
            Outcome::Revoked,
            Outcome::Unknown,
            Outcome::ResponderError("connection refused".into()),
            Outcome::NoResponder("no AIA OCSP URL"),
        ]
    }

    #[test]
    fn prefer_refuses_only_revoked_require_admits_only_good() {
        use Decision::*;
        let refuse_revoked = Refuse(DenialReason::OcspRevoked);
        let refuse_unverified = Refuse(DenialReason::OcspUnverified);
        let want = [
            (ClientOcspMode::Off, [Admit, Admit, Admit, Admit, Admit]),
            (
                ClientOcspMode::Prefer,
                [Admit, refuse_revoked, Admit, Admit, Admit],
            ),
            (
                ClientOcspMode::Require,
                [
                    Admit,
                    refuse_revoked,
                    refuse_unverified,
                    refuse_unverified,
                    refuse_unverified,
                ],
            ),
        ];
        for (mode, decisions) in want {
            for (outcome, decision) in all().iter().zip(decisions) {
                assert_eq!(decide(mode, outcome), decision, "{mode} {outcome:?}");
            }
        }
    }

    #[test]
    fn verified_answers_last_until_next_update_failures_briefly() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let next = now + Duration::from_secs(86_400);
        for outcome in &all()[..3] {
            assert_eq!(outcome.keep_until(Some(next), now), next);
        }
        for outcome in &all()[3..] {
            assert_eq!(outcome.keep_until(Some(next), now), now + FAILURE_TTL);
            assert_eq!(outcome.keep_until(None, now), now + FAILURE_TTL);
        }
    }

    #[test]
    fn every_outcome_has_a_label_and_a_detail() {
        for outcome in all() {
            assert!(CheckResult::ALL.contains(&outcome.result()));
            assert!(QueryResult::ALL.contains(&outcome.query_result()));
            assert!(!outcome.detail().is_empty());
        }
        assert_eq!(
            Outcome::ResponderError("timed out".into()).detail(),
            "timed out"
        );
    }
}
