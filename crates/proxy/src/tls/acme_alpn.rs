//! TLS-ALPN-01 answers (RFC 8737), given on the TLS listener itself.
//!
//! While an ACME order for a name is in progress, the ACME manager puts a
//! challenge certificate here: self-signed, for that one name, carrying
//! the critical `acmeIdentifier` extension with the SHA-256 of the key
//! authorization. A handshake that offers ALPN `acme-tls/1` gets that
//! certificate and nothing else (no client certificate is asked for, even
//! on a listener that requires one; no byte reaches the broker), and the
//! connection closes once the handshake is done. A hello offering
//! `acme-tls/1` for a name with no challenge in progress is refused: no
//! other certificate is ever served to it. One table per process, shared
//! by every listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// The error of a hello offering `acme-tls/1` for a name with no
/// challenge in progress.
#[derive(Debug)]
pub struct NoChallenge;

impl std::fmt::Display for NoChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ALPN acme-tls/1 for a name with no ACME challenge in progress; refused")
    }
}

impl std::error::Error for NoChallenge {}

/// The challenge certificates of the orders in progress, by name.
#[derive(Debug, Default)]
pub struct AlpnChallenges {
    answers: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

/// What a ClientHello asks of the challenge table.
pub enum AlpnAnswer {
    /// Not an ACME validation: an ordinary handshake.
    NotAcme,
    /// A validation of a name with a challenge in progress: finish the
    /// handshake with this configuration, then close.
    Challenge(Arc<ServerConfig>),
    /// A validation of a name with no challenge in progress: refuse.
    NoChallenge,
}

impl AlpnChallenges {
    /// Answers validations of `domain` with a challenge certificate for
    /// `digest` (the SHA-256 of the key authorization) until removed.
    pub fn insert(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let key = challenge_key(domain, digest)?;
        self.lock()
            .insert(domain.to_ascii_lowercase(), Arc::new(key));
        Ok(())
    }

    /// Stops answering validations of `domain`.
    pub fn remove(&self, domain: &str) {
        self.lock().remove(&domain.to_ascii_lowercase());
    }

    /// What to do with `hello`; `provider` is the listener's (its suites
    /// and groups apply to validations too).
    pub fn answer(&self, hello: &ClientHello<'_>, provider: &Arc<CryptoProvider>) -> AlpnAnswer {
        let acme = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_1));
        if !acme {
            return AlpnAnswer::NotAcme;
        }
        let name = hello
            .server_name()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let Some(key) = name.and_then(|n| self.lock().get(&n).cloned()) else {
            return AlpnAnswer::NoChallenge;
        };
        let Ok(builder) = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
        else {
            return AlpnAnswer::NoChallenge;
        };
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneKey(key)));
        config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        config.send_tls13_tickets = 0;
        AlpnAnswer::Challenge(Arc::new(config))
    }

    /// Whether a challenge for `domain` is in progress.
    #[cfg(test)]
    fn contains(&self, domain: &str) -> bool {
        self.lock().contains_key(&domain.to_ascii_lowercase())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves the one challenge certificate, whatever the hello says.
#[derive(Debug)]
struct OneKey(Arc<CertifiedKey>);

impl ResolvesServerCert for OneKey {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A fresh P-256 key and a self-signed certificate for `domain` with the
/// `acmeIdentifier` extension. Built as a `CertifiedKey` directly: rustls'
/// `with_single_cert` parses the certificate and refuses the critical
/// extension it does not know.
fn challenge_key(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    if digest.len() != 32 {
        return Err(format!(
            "a TLS-ALPN-01 digest is 32 bytes, not {}",
            digest.len()
        ));
    }
    let fail = |e: rcgen::Error| format!("cannot make the TLS-ALPN-01 certificate: {e}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("cannot load the TLS-ALPN-01 key: {e}"))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_certificate_names_the_domain_and_carries_the_digest() {
        let digest = [7u8; 32];
        let key = challenge_key("moat.test", &digest).expect("certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).expect("parses");
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the 32 bytes.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &digest);
        let san = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present");
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"moat.test\")]"
        );
    }

    #[test]
    fn a_wrong_digest_size_is_an_error_not_a_panic() {
        let t = AlpnChallenges::default();
        assert!(t.insert("moat.test", &[1, 2, 3]).is_err());
        assert!(!t.contains("moat.test"));
        t.insert("Moat.Test", &[0u8; 32]).expect("insert");
        assert!(t.contains("moat.test"));
        t.remove("MOAT.test");
        assert!(!t.contains("moat.test"));
    }
}
