//! A certificate entry's `acme:` section: moat obtains and renews the
//! certificate itself (issue 19), answering HTTP-01 on a small listener of
//! its own or TLS-ALPN-01 on the TLS listener itself.

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
    /// A PEM PKCS#8 ECDSA P-256 private key to use as the account key
    /// (an account managed outside moat); absent, moat makes one and keeps
    /// it in `state_dir/account.json`.
    pub account_key: Option<PathBuf>,
    /// How the CA validates the names: `http-01` (the default) or
    /// `tls-alpn-01`.
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Where the HTTP-01 challenge listener binds, e.g. `0.0.0.0:80`;
    /// required with `challenge: http-01`, refused otherwise.
    pub http01_listen: Option<SocketAddr>,
}

/// The ACME challenge type an entry answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AcmeChallenge {
    /// HTTP-01: the CA fetches `http://<name>/.well-known/acme-challenge/`
    /// from port 80, forwarded to `http01_listen`.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// TLS-ALPN-01 (RFC 8737): the CA opens TLS to port 443 of the name
    /// with ALPN `acme-tls/1`, answered by the listener itself.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The name in the configuration and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
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
    /// Ed25519, where the CA signs it (Let's Encrypt does not; step-ca and
    /// pebble do) and the devices verify it.
    Ed25519,
}
