//! Client certificates (mutual TLS): who may connect, and who they are.
//!
//! This module builds the rustls client verifier from the configured CA
//! bundle and mode, and extracts the verified identity of a connected
//! device (subject, common name, SHA-256 fingerprint) for logs and for the
//! stages after the handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::prelude::*;

use super::certs::{parse_ca_bundle, sha256_hex, CertError, CertInfo};
use crate::config::{ClientAuthConfig, ClientAuthMode};

/// The client-authentication state of a listener.
pub struct ClientAuth {
    /// The verifier to give rustls (`None` for mode `none`).
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The CA certificates in the bundle.
    pub cas: Vec<CertInfo>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("enabled", &self.verifier.is_some())
            .field("cas", &self.cas.len())
            .finish()
    }
}

/// Builds the client verifier for a listener from the CA bundle's bytes
/// (`None` when client authentication is off).
pub fn build(
    config: &ClientAuthConfig,
    ca_bytes: Option<&[u8]>,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientAuth, CertError> {
    let (ClientAuthMode::Optional | ClientAuthMode::Required, Some(ca_path), Some(ca_bytes)) =
        (config.mode, &config.ca, ca_bytes)
    else {
        return Ok(ClientAuth {
            verifier: None,
            cas: Vec::new(),
        });
    };
    let bundle = parse_ca_bundle(ca_path, ca_bytes)?;
    let mut roots = RootCertStore::empty();
    let mut cas = Vec::new();
    for (i, (der, info)) in bundle.into_iter().enumerate() {
        roots.add(der).map_err(|e| CertError {
            file: ca_path.to_path_buf(),
            message: format!(
                "certificate #{} ({}) cannot be a trust anchor: {e}",
                i + 1,
                info.subject
            ),
            hint: "the CA bundle must hold the CA certificates that issue device certificates"
                .into(),
        })?;
        cas.push(info);
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if config.mode == ClientAuthMode::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|e| CertError {
        file: ca_path.to_path_buf(),
        message: format!("cannot build the client certificate verifier: {e}"),
        hint: "check that the CA bundle holds at least one valid CA certificate".into(),
    })?;
    Ok(ClientAuth {
        verifier: Some(verifier),
        cas,
    })
}

/// Describes a CA bundle problem that is worth a warning but not an error.
pub fn ca_warnings(path: &Path, cas: &[CertInfo], now_unix: i64) -> Vec<String> {
    let mut out = Vec::new();
    for ca in cas {
        if !ca.is_ca {
            out.push(format!(
                "{}: {} is not a CA certificate (no basicConstraints CA:TRUE); devices it did not sign directly will be refused",
                path.display(),
                ca.subject
            ));
        }
        if ca.not_after < now_unix {
            out.push(format!(
                "{}: client CA {} expired at {}; every device certificate it issued is now refused",
                path.display(),
                ca.subject,
                ca.not_after_rfc3339()
            ));
        }
    }
    out
}

/// The verified identity of a device, from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject distinguished name.
    pub subject: String,
    /// The first common name, if any.
    pub common_name: Option<String>,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256: String,
}

impl PeerIdentity {
    /// Reads the identity from the leaf of a verified client chain.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Self> {
        let leaf = chain.first()?;
        let (_, cert) = X509Certificate::from_der(leaf).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Some(Self {
            subject: cert.subject().to_string(),
            common_name,
            sha256: sha256_hex(leaf),
        })
    }
}
