//! A certificate entry's `acme:` section: moat obtains and renews the
//! certificate itself (issue 19), over HTTP-01 for now.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Where and how to obtain a certificate by ACME.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The ACME directory URL (e.g. Let's Encrypt's).
    pub directory: String,
    /// Contact URLs for the account, e.g. `mailto:ops@example.com`.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The names the certificate covers (its SAN list), first is the subject.
    pub domains: Vec<String>,
    /// The certificate's key type.
    #[serde(default)]
    pub key_type: AcmeKeyType,
    /// Account, key and certificate are kept here (0700, files 0600).
    pub state_dir: PathBuf,
    /// A PEM CA certificate to trust for the directory's HTTPS (private CAs);
    /// absent, the system's roots.
    pub ca_bundle: Option<PathBuf>,
    /// External account binding, for CAs that require it.
    pub eab: Option<EabConfig>,
    /// Where the HTTP-01 challenge listener binds, e.g. `0.0.0.0:80`.
    pub http01_listen: SocketAddr,
}

/// External account binding credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabConfig {
    /// The key identifier the CA gave.
    pub kid: String,
    /// A file holding the HMAC key, base64url as the CA gave it.
    pub hmac_key_file: PathBuf,
}

/// The key type of an ACME certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcmeKeyType {
    /// ECDSA on P-256 (the default).
    #[default]
    EcdsaP256,
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
}
