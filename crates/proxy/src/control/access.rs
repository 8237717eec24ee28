//! Who may use which admin endpoint: the credentials `admin` configures
//! (a bearer token, client certificates) and the `admin.health` setting,
//! turned into a verdict per request. Pure: the TLS handshake has already
//! verified any client certificate; this only knows whether there was one.
//!
//! The rules:
//! - with `health: open`, `/healthz` and `/readyz` answer anyone;
//! - with `admin.tls.client_ca`, every other request needs a verified
//!   client certificate (with `health: authenticated` the handshake itself
//!   requires one, so a client without never gets this far);
//! - with `admin.token_file`, every other request needs the token too;
//! - with neither, the endpoint is open (and `admin` answers 403 on the
//!   connections and bans API, see [`Access::has_credentials`]).

use super::token::AdminToken;
use crate::config::{AdminConfig, AdminHealth};

/// The admin endpoint's credentials and health setting.
#[derive(Debug, Default)]
pub struct Access {
    /// The bearer token, when `admin.token_file` is set.
    pub token: Option<AdminToken>,
    /// Whether `admin.tls.client_ca` asks for client certificates.
    pub client_ca: bool,
    /// Whether `/healthz` and `/readyz` answer without credentials.
    pub health_open: bool,
}

/// Why a request is refused, or that it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allow,
    /// It lacks the right bearer token.
    NeedToken,
    /// The connection came without a client certificate.
    NeedClientCert,
}

/// Whether `path` is one of the health checks.
pub fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

impl Access {
    /// The setting of `admin`, with its token already loaded.
    pub fn new(admin: &AdminConfig, token: Option<AdminToken>) -> Self {
        Self {
            token,
            client_ca: admin.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            health_open: admin.health == AdminHealth::Open,
        }
    }

    /// Whether any credential is configured: only then may the
    /// connections and bans API be used.
    pub fn has_credentials(&self) -> bool {
        self.token.is_some() || self.client_ca
    }

    /// Whether the client certificate is required in the TLS handshake
    /// itself: when nothing may be served without one.
    pub fn handshake_requires_cert(&self) -> bool {
        self.client_ca && !self.health_open
    }

    /// The verdict on a request for `path` with the `Authorization`
    /// header `authorization`, on a connection that presented a verified
    /// client certificate or not.
    pub fn decide(&self, path: &str, authorization: Option<&[u8]>, client_cert: bool) -> Verdict {
        if self.health_open && is_health(path) {
            return Verdict::Allow;
        }
        if self.client_ca && !client_cert {
            return Verdict::NeedClientCert;
        }
        match &self.token {
            // The token's check takes the same time whatever is presented.
            Some(t) if !t.accepts(authorization) => Verdict::NeedToken,
            _ => Verdict::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";
    const BEARER: &[u8] = b"Bearer 0123456789abcdef0123";

    fn access(token: bool, client_ca: bool, health_open: bool) -> Access {
        Access {
            token: token.then(|| AdminToken::parse(TOKEN).unwrap()),
            client_ca,
            health_open,
        }
    }

    #[test]
    fn open_health_answers_anyone_and_nothing_else_does() {
        let a = access(true, true, true);
        assert_eq!(a.decide("/healthz", None, false), Verdict::Allow);
        assert_eq!(a.decide("/readyz", None, false), Verdict::Allow);
        assert_eq!(a.decide("/metrics", None, false), Verdict::NeedClientCert);
        assert_eq!(a.decide("/metrics", None, true), Verdict::NeedToken);
        assert_eq!(a.decide("/metrics", Some(BEARER), true), Verdict::Allow);
        assert_eq!(
            a.decide("/metrics", Some(BEARER), false),
            Verdict::NeedClientCert
        );
        assert!(!a.handshake_requires_cert());
    }

    #[test]
    fn authenticated_health_needs_the_same_credentials() {
        let a = access(true, false, false);
        assert_eq!(a.decide("/healthz", None, false), Verdict::NeedToken);
        assert_eq!(a.decide("/healthz", Some(BEARER), false), Verdict::Allow);
        let m = access(false, true, false);
        assert!(m.handshake_requires_cert());
        assert_eq!(m.decide("/readyz", None, true), Verdict::Allow);
        assert_eq!(m.decide("/readyz", None, false), Verdict::NeedClientCert);
    }

    #[test]
    fn credentials_are_a_token_or_client_certificates() {
        assert!(!access(false, false, true).has_credentials());
        assert!(access(true, false, true).has_credentials());
        assert!(access(false, true, true).has_credentials());
        let none = access(false, false, true);
        assert_eq!(none.decide("/reload", None, false), Verdict::Allow);
    }
}
