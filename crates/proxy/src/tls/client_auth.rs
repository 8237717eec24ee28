//! Client certificates (mutual TLS): who may connect, and who they are.
//!
//! This module builds the listener's client verifier: the CA bundle and
//! CRLs (rustls' webpki verifier), then the allow-list on top
//! ([`DeviceVerifier`]). It also describes CRLs for checks and metrics, and
//! extracts the verified identity of a connected device (subject, common
//! name, SHA-256 fingerprint) for logs and for the stages after the
//! handshake.
//!
//! Refusals are logged here, with the device's subject and fingerprint and
//! the reason, because only here is the certificate at hand; they are
//! counted by the listener, which sees the handshake error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use tracing::info;
use x509_parser::prelude::*;

use super::allow::{first_match, AllowRule, DeviceFacts};
use super::certs::{parse_ca_bundle, rfc3339, sha256_hex, CertError, CertInfo};
use super::files::SourceFile;
use crate::config::{ClientAuthConfig, ClientAuthMode, ExpiredCrlPolicy};
use crate::metrics::reason::reasons;

/// The client-authentication state of a listener.
pub struct ClientAuth {
    /// The verifier to give rustls (`None` for mode `none`).
    pub verifier: Option<Arc<DeviceVerifier>>,
    /// The CA certificates in the bundle.
    pub cas: Vec<CertInfo>,
    /// The same certificates, DER (the issuers an OCSP check asks about).
    pub ca_ders: Vec<CertificateDer<'static>>,
    /// The CRLs in use.
    pub crls: Vec<CrlInfo>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("enabled", &self.verifier.is_some())
            .field("cas", &self.cas.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// What an operator wants to know about one CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The file it came from.
    pub path: PathBuf,
    /// Its issuer.
    pub issuer: String,
    /// thisUpdate, seconds since the epoch.
    pub this_update: i64,
    /// nextUpdate, seconds since the epoch, when present.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
    /// SHA-256 of its DER, lower-case hex: tells two CRLs apart even when
    /// they were issued in the same second with as many entries.
    pub sha256: String,
}

/// Parses the CRLs of a CRL file (PEM, possibly several, or one DER).
pub fn parse_crls(
    file: &SourceFile,
) -> Result<Vec<(CertificateRevocationListDer<'static>, CrlInfo)>, CertError> {
    let path = &file.path;
    let bytes: &[u8] = &file.bytes;
    let ders: Vec<CertificateRevocationListDer<'static>> =
        if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| CertError {
                    file: path.clone(),
                    message: format!("the PEM data is damaged: {e}"),
                    hint: "re-export the CRL (openssl ca -gencrl -out FILE)".into(),
                })?
        } else {
            vec![CertificateRevocationListDer::from(bytes.to_vec())]
        };
    if ders.is_empty() {
        return Err(CertError {
            file: path.clone(),
            message: "no CRL found in the file".into(),
            hint: "the file must hold -----BEGIN X509 CRL----- blocks, or one DER CRL".into(),
        });
    }
    ders.into_iter()
        .map(|der| {
            let (_, crl) = parse_x509_crl(&der).map_err(|e| CertError {
                file: path.clone(),
                message: format!("not a valid CRL: {e}"),
                hint: "re-export the CRL from your CA (openssl ca -gencrl)".into(),
            })?;
            let info = CrlInfo {
                path: path.clone(),
                issuer: crl.issuer().to_string(),
                this_update: crl.last_update().timestamp(),
                next_update: crl.next_update().map(|t| t.timestamp()),
                revoked: crl.iter_revoked_certificates().count(),
                sha256: super::certs::sha256_hex(&der),
            };
            Ok((der, info))
        })
        .collect()
}

/// Builds the client verifier for a listener from the CA bundle and CRL
/// files already read (`None` when client authentication is off).
pub fn build(
    config: &ClientAuthConfig,
    ca: Option<&SourceFile>,
    crl_files: &[SourceFile],
    provider: &Arc<CryptoProvider>,
) -> Result<ClientAuth, CertError> {
    let (ClientAuthMode::Optional | ClientAuthMode::Required, Some(ca)) = (config.mode, ca) else {
        return Ok(ClientAuth {
            verifier: None,
            cas: Vec::new(),
            ca_ders: Vec::new(),
            crls: Vec::new(),
        });
    };
    let ca_path = &ca.path;
    let bundle = parse_ca_bundle(ca_path, &ca.bytes)?;
    let mut roots = RootCertStore::empty();
    let mut cas = Vec::new();
    let mut ca_ders = Vec::new();
    for (i, (der, info)) in bundle.into_iter().enumerate() {
        ca_ders.push(der.clone());
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
    let mut crls = Vec::new();
    let mut crl_ders = Vec::new();
    for f in crl_files {
        for (der, info) in parse_crls(f)? {
            crl_ders.push(der);
            crls.push(info);
        }
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if config.mode == ClientAuthMode::Optional {
        builder = builder.allow_unauthenticated();
    }
    if !crl_ders.is_empty() {
        // Certificates from a CA that has no CRL here are not revocation
        // checked (`moat check` warns); a CRL past nextUpdate follows the
        // expired_crl policy.
        builder = builder
            .with_crls(crl_ders)
            .allow_unknown_revocation_status();
        if config.expired_crl == ExpiredCrlPolicy::Deny {
            builder = builder.enforce_revocation_expiration();
        }
    }
    let inner = builder.build().map_err(|e| CertError {
        file: crl_files
            .first()
            .map(|f| f.path.clone())
            .unwrap_or_else(|| ca_path.to_path_buf()),
        message: format!("cannot build the client certificate verifier: {e}"),
        hint: "check that the CA bundle holds at least one valid CA certificate and that each CRL is valid".into(),
    })?;
    Ok(ClientAuth {
        verifier: Some(Arc::new(DeviceVerifier {
            inner,
            allow: config.allow.clone(),
        })),
        cas,
        ca_ders,
        crls,
    })
}

/// The listener's client verifier: the CA bundle and CRLs first, then the
/// allow-list. Refusals are logged with the device's identity.
pub struct DeviceVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: Vec<AllowRule>,
}

impl std::fmt::Debug for DeviceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceVerifier")
            .field("allow_rules", &self.allow.len())
            .finish_non_exhaustive()
    }
}

reasons! {
    /// Why a client certificate was refused
    /// (`moat_client_auth_denied_total`).
    pub enum DenialReason {
        /// None was presented where one is required.
        NoCertificate => "no_certificate",
        /// It verifies but matches no allow-list rule.
        NotAllowed => "not_allowed",
        /// A CRL revokes it.
        Revoked => "revoked",
        /// No CA of the bundle issued it.
        UnknownCa => "unknown_ca",
        /// Past its notAfter.
        Expired => "expired",
        /// Before its notBefore.
        NotYetValid => "not_yet_valid",
        /// Its revocation status depends on an expired CRL.
        CrlExpired => "crl_expired",
        /// Its revocation status cannot be told.
        RevocationUnknown => "revocation_unknown",
        /// Not for client authentication (extended key usage).
        WrongPurpose => "wrong_purpose",
        /// Anything else wrong with it.
        BadCertificate => "bad_certificate",
        /// Its OCSP responder says it is revoked (`client_auth.ocsp`).
        OcspRevoked => "ocsp_revoked",
        /// `client_auth.ocsp: require` and no verified "good" answer.
        OcspUnverified => "ocsp_unverified",
    }
}

impl DenialReason {
    /// The reason for a refused client certificate's error.
    pub fn of(e: &rustls::Error) -> Self {
        use CertificateError as C;
        match e {
            rustls::Error::NoCertificatesPresented => Self::NoCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                C::ApplicationVerificationFailure => Self::NotAllowed,
                C::Revoked => Self::Revoked,
                C::UnknownIssuer => Self::UnknownCa,
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
                C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                    Self::CrlExpired
                }
                C::UnknownRevocationStatus => Self::RevocationUnknown,
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::WrongPurpose,
                _ => Self::BadCertificate,
            },
            _ => Self::BadCertificate,
        }
    }
}

fn log_refusal(end_entity: &CertificateDer<'_>, why: &str, reason: DenialReason) {
    let subject = X509Certificate::from_der(end_entity)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unparsable certificate)".into());
    info!(
        client.subject = %subject,
        client.sha256 = %sha256_hex(end_entity),
        reason = reason.as_str(),
        detail = why,
        "client certificate refused"
    );
}

impl ClientCertVerifier for DeviceVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            log_refusal(end_entity, &e.to_string(), DenialReason::of(&e));
            return Err(e);
        }
        if !self.allow.is_empty() {
            let admitted = DeviceFacts::from_der(end_entity)
                .is_some_and(|facts| first_match(&self.allow, &facts).is_some());
            if !admitted {
                log_refusal(
                    end_entity,
                    "matches no rule of tls.client_auth.allow",
                    DenialReason::NotAllowed,
                );
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Warnings about CRLs: expired ones, and CAs that no CRL covers.
pub fn crl_warnings(
    listener: &str,
    crls: &[CrlInfo],
    cas: &[CertInfo],
    policy: ExpiredCrlPolicy,
    now_unix: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    if crls.is_empty() {
        return out;
    }
    for crl in crls {
        if let Some(next) = crl.next_update.filter(|n| *n < now_unix) {
            let effect = match policy {
                ExpiredCrlPolicy::Deny => "devices it covers are refused until a fresh CRL is in place (expired_crl: deny)",
                ExpiredCrlPolicy::Allow => "it is still used (expired_crl: allow)",
            };
            out.push(format!(
                "listener {listener:?}: {}: the CRL of {} expired at {}; {effect}",
                crl.path.display(),
                crl.issuer,
                rfc3339(next)
            ));
        }
        if !cas.iter().any(|ca| ca.subject == crl.issuer) {
            out.push(format!(
                "listener {listener:?}: {}: the CRL's issuer {} is not in the client CA bundle; it checks nothing",
                crl.path.display(),
                crl.issuer
            ));
        }
    }
    for ca in cas {
        if !crls.iter().any(|crl| crl.issuer == ca.subject) {
            out.push(format!(
                "listener {listener:?}: no CRL covers client CA {}; its devices are not checked for revocation",
                ca.subject
            ));
        }
    }
    out
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
    /// The certificate's notAfter, in Unix seconds.
    pub not_after: i64,
}

impl PeerIdentity {
    /// Whether `name` names this identity: its common name, its subject
    /// DN, or its SHA-256 fingerprint (hex; colons and case ignored). How
    /// the admin API's `identity=` filters and bans select devices.
    pub fn is_named(&self, name: &str) -> bool {
        self.common_name.as_deref() == Some(name)
            || self.subject == name
            || (name.len() >= 64
                && name
                    .chars()
                    .filter(|c| *c != ':')
                    .map(|c| c.to_ascii_lowercase())
                    .eq(self.sha256.chars()))
    }

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
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}
