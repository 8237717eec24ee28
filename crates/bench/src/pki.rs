//! The one certificate every proxy serves: an ECDSA P-256 CA and a server
//! certificate for `localhost` and 127.0.0.1, made with rcgen in a temporary
//! directory, in the file layouts each proxy wants.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// The files of the benchmark PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM), which clients trust.
    pub ca_pem: PathBuf,
    /// The server certificate (PEM, leaf only: the CA is the trust anchor).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// Certificate and key in one file (HAProxy).
    pub combined: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// A self-signed ECDSA P-256 CA called `cn`: the parameters and key to
/// issue with, and its certificate.
pub(crate) fn self_signed_ca(cn: &str) -> Result<(CertificateParams, KeyPair, Certificate)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    Ok((ca_params, ca_key, ca_cert))
}

/// The parameters of a server certificate for `localhost` and 127.0.0.1.
pub(crate) fn localhost_server_params() -> Result<CertificateParams> {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

impl Pki {
    /// Generates the CA and the server certificate in `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let (ca_params, ca_key, ca_cert) = self_signed_ca("moat-bench CA")?;
        let params = localhost_server_params()?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer)?;

        let pki = Self {
            ca_pem: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            combined: dir.join("combined.pem"),
        };
        write(&pki.ca_pem, &ca_cert.pem())?;
        write(&pki.cert, &cert.pem())?;
        write(&pki.key, &key.serialize_pem())?;
        write(
            &pki.combined,
            &format!("{}{}", cert.pem(), key.serialize_pem()),
        )?;
        Ok(pki)
    }
}

/// The CA certificate in `path`, for a client's root store.
pub fn load_ca(path: &Path) -> Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).with_context(|| format!("read CA {}", path.display()))
}
