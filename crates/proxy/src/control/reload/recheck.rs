//! The re-check of live sessions on reload: every session of a listener
//! that verifies clients has its certificate chain verified again against
//! the new CA bundle, CRLs and allow-list before the new state is swapped
//! in. Those that no longer pass are closed after the swap; a state that
//! would close every one of them (an empty bundle, a CRL that lists
//! everything) is refused unless the operator forces it.
//!
//! The verdicts are pure: what to close, and whether to refuse, from the
//! sessions and a verify function, so that the rule is unit-tested without
//! a socket.

use std::path::PathBuf;

use crate::conn::registry::{CloseReason, Session};
use crate::tls::certs::CertError;
use crate::tls::ListenerTls;

/// Whether going from `old` to `new` can change which clients pass: a new
/// CA bundle or a new set of CRLs. A certificate rotation alone re-checks
/// nothing, so it is not slowed by the number of live sessions.
pub fn client_auth_changed(old: &ListenerTls, new: &ListenerTls) -> bool {
    new.client_verifier.is_some()
        && (old.client_auth_digest != new.client_auth_digest
            || old.crls != new.crls
            || old.client_verifier.is_none())
}

/// What a re-check found for one listener.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sessions with a chain that were verified again.
    pub checked: usize,
    /// Those that no longer pass, and why.
    pub close: Vec<(u64, CloseReason)>,
}

impl Verdict {
    /// Whether the new state would close every checked session, and there
    /// are enough of them (two or more) that this looks like a mistake
    /// rather than one device's revocation.
    pub fn drops_all(&self) -> bool {
        self.checked >= 2 && self.close.len() == self.checked
    }

    /// How many of the closed sessions each reason accounts for, for the
    /// log line and the refusal message.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for reason in <CloseReason as crate::metrics::reason::Reason>::ALL {
            let n = self.close.iter().filter(|(_, r)| r == reason).count();
            if n > 0 {
                parts.push(format!("{n} {}", reason.as_str()));
            }
        }
        parts.join(", ")
    }
}

/// Verifies every session's chain with `verify`.
pub fn recheck(
    sessions: &[std::sync::Arc<Session>],
    verify: impl Fn(&[rustls::pki_types::CertificateDer<'_>]) -> Result<(), rustls::Error>,
) -> Verdict {
    let mut verdict = Verdict::default();
    for s in sessions {
        let Some(chain) = &s.chain else { continue };
        verdict.checked += 1;
        if let Err(e) = verify(chain) {
            verdict.close.push((s.id, reason_of(&e)));
        }
    }
    verdict
}

/// The close reason for a chain the new state refuses.
fn reason_of(e: &rustls::Error) -> CloseReason {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Revoked) => CloseReason::Revoked,
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            CloseReason::CertificateExpired
        }
        _ => CloseReason::NotTrusted,
    }
}

/// The refusal of a state that would close every live session: it names
/// the file most likely at fault (the CRL when they are revoked, else the
/// CA bundle) and the way to apply it anyway.
pub fn refusal(verdict: &Verdict, crl: Option<PathBuf>, ca: Option<PathBuf>) -> CertError {
    let revoked = verdict
        .close
        .iter()
        .any(|(_, r)| *r == CloseReason::Revoked);
    let file = if revoked { crl.or(ca) } else { ca.or(crl) };
    CertError {
        file: file.unwrap_or_default(),
        message: format!(
            "the new client-auth state would close all {} live sessions ({})",
            verdict.checked,
            verdict.summary()
        ),
        hint: "check the CA bundle, CRLs and allow-list; if this is intended, apply it with POST /reload?force=true".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::registry::{NewSession, Registry};
    use rustls::pki_types::CertificateDer;
    use std::sync::Arc;
    use std::time::Duration;

    fn session(r: &Arc<Registry>, cert: Option<u8>) -> crate::conn::registry::Registered {
        r.register(NewSession {
            id: crate::conn::registry::test_id(),
            listener: "l".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            identity: None,
            chain: cert.map(|b| vec![CertificateDer::from(vec![b])]),
            max_lifetime: Duration::ZERO,
        })
    }

    /// Refuses chains whose only byte is in `bad`, as revoked.
    fn revoking(bad: &'static [u8]) -> impl Fn(&[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        move |chain| {
            if bad.contains(&chain[0].as_ref()[0]) {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn only_the_refused_sessions_are_closed() {
        let r = Arc::new(Registry::default());
        let a = session(&r, Some(1));
        let b = session(&r, Some(2));
        let _anonymous = session(&r, None);
        let v = recheck(&r.sessions(), revoking(&[2]));
        assert_eq!(v.checked, 2);
        assert_eq!(v.close, vec![(b.session().id, CloseReason::Revoked)]);
        assert!(!v.drops_all());
        drop(a);
    }

    #[test]
    fn a_state_that_closes_everyone_is_refused_naming_the_crl() {
        let r = Arc::new(Registry::default());
        let _a = session(&r, Some(1));
        let _b = session(&r, Some(2));
        let v = recheck(&r.sessions(), revoking(&[1, 2]));
        assert!(v.drops_all());
        let e = refusal(&v, Some("crl.pem".into()), Some("ca.pem".into()));
        assert_eq!(e.file, PathBuf::from("crl.pem"));
        assert!(
            e.message.contains("all 2 live sessions (2 revoked)"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("force=true"));
    }

    #[test]
    fn one_device_alone_may_be_revoked() {
        let r = Arc::new(Registry::default());
        let _a = session(&r, Some(1));
        let v = recheck(&r.sessions(), revoking(&[1]));
        assert_eq!(v.close.len(), 1);
        assert!(!v.drops_all());
    }

    #[test]
    fn reasons_follow_the_verifier_error() {
        use rustls::CertificateError as C;
        let e = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(reason_of(&e(C::Revoked)), CloseReason::Revoked);
        assert_eq!(reason_of(&e(C::Expired)), CloseReason::CertificateExpired);
        assert_eq!(reason_of(&e(C::UnknownIssuer)), CloseReason::NotTrusted);
        assert_eq!(
            reason_of(&e(C::ApplicationVerificationFailure)),
            CloseReason::NotTrusted
        );
    }
}
