//! Server certificates: reading PEM files, checking them, and describing them.
//!
//! A certificate entry is a chain file (leaf first) and a key file. Loading
//! one checks everything an operator gets wrong: unreadable files, a file
//! with no certificate or key in it, encrypted keys, a key that does not
//! match the leaf, a chain in the wrong order, expired or not yet valid
//! certificates, weak RSA keys. Every error names the file and says what to
//! do. The same descriptions feed `moat check`, the logs and the metrics.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::*;

/// A problem with a certificate or key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl CertError {
    fn new(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n  hint: {}",
            self.file.display(),
            self.message,
            self.hint
        )
    }
}

impl std::error::Error for CertError {}

/// What an operator wants to know about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject alternative names, as `DNS:x`, `IP:x`, `URI:x`, `email:x`.
    pub sans: Vec<String>,
    /// DNS names from the SANs (lower case), used for SNI.
    pub dns_names: Vec<String>,
    /// Serial number in lower-case hex.
    pub serial: String,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// `RSA`, `ECDSA P-256`, `ECDSA P-384`, `Ed25519`, ...
    pub key_type: String,
    /// Key size in bits.
    pub key_bits: usize,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// Whether the signature uses SHA-1.
    pub sha1_signature: bool,
    /// Whether this is a CA certificate.
    pub is_ca: bool,
    /// Whether subject and issuer are the same (a root).
    pub self_issued: bool,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
        Ok(describe(&cert, der))
    }

    /// Days from `now` until the certificate expires (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        (self.not_after - unix(now)).div_euclid(86_400)
    }

    /// The end of validity as RFC 3339.
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }

    /// The start of validity as RFC 3339.
    pub fn not_before_rfc3339(&self) -> String {
        rfc3339(self.not_before)
    }

    /// Whether a host name (lower case) is covered by the DNS SANs,
    /// wildcards included.
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names.iter().any(|n| name_matches(n, host))
    }
}

/// Whether a certificate name (possibly `*.example.com`) matches a host.
/// A wildcard covers exactly one left-most label.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Formats seconds since the epoch as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of some bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn describe(cert: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
    let mut sans = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    sans.push(format!("DNS:{d}"));
                    dns_names.push(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(ip) => sans.push(format!("IP:{}", ip_string(ip))),
                GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                GeneralName::RFC822Name(e) => sans.push(format!("email:{e}")),
                other => sans.push(format!("{other}")),
            }
        }
    }
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let (key_type, key_bits) = match (alg.as_str(), spki.parsed()) {
        ("1.3.101.112", _) => ("Ed25519".to_string(), 256),
        ("1.3.101.113", _) => ("Ed448".to_string(), 456),
        (_, Ok(x509_parser::public_key::PublicKey::RSA(rsa))) => {
            ("RSA".to_string(), rsa.key_size())
        }
        (_, Ok(x509_parser::public_key::PublicKey::EC(ec))) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let name = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256",
                Some("1.3.132.0.34") => "ECDSA P-384",
                Some("1.3.132.0.35") => "ECDSA P-521",
                _ => "ECDSA",
            };
            (name.to_string(), ec.key_size())
        }
        (_, Ok(k)) => (alg.clone(), k.key_size()),
        (_, Err(_)) => (alg.clone(), 0),
    };
    let sig = cert.signature_algorithm.algorithm.to_id_string();
    let signature_algorithm = match sig.as_str() {
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        other => other,
    }
    .to_string();
    let sha1_signature = signature_algorithm.contains("sha1")
        || signature_algorithm.contains("SHA1")
        || signature_algorithm.starts_with("md5");
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        dns_names,
        serial: cert.tbs_certificate.serial.to_str_radix(16),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_type,
        key_bits,
        signature_algorithm,
        sha1_signature,
        is_ca: cert.is_ca(),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        sha256: sha256_hex(der),
    }
}

fn ip_string(ip: &[u8]) -> String {
    match ip.len() {
        4 => std::net::Ipv4Addr::from([ip[0], ip[1], ip[2], ip[3]]).to_string(),
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(ip);
            std::net::Ipv6Addr::from(b).to_string()
        }
        _ => hex(ip),
    }
}

/// A certificate chain and key that loaded and passed every check.
#[derive(Clone)]
pub struct LoadedCert {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// One description per certificate in the chain, leaf first.
    pub chain: Vec<CertInfo>,
    /// The chain file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("LoadedCert")
            .field("cert_path", &self.cert_path)
            .field("leaf", &self.leaf().subject)
            .finish_non_exhaustive()
    }
}

impl LoadedCert {
    /// The leaf certificate's description.
    pub fn leaf(&self) -> &CertInfo {
        &self.chain[0]
    }

    /// The DER of the issuer of the leaf, when the chain includes it.
    pub fn issuer_der(&self) -> Option<&CertificateDer<'static>> {
        self.key.cert.get(1)
    }
}

/// Reads a whole file, with an error that names it and says what to do.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "check the path; relative paths start from the directory of the configuration file".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "make the file readable by the user moat runs as (for example chmod 0640 and chgrp to moat's group)".to_string()
            }
            _ => format!("make sure the {what} is a readable file"),
        };
        CertError::new(path, format!("cannot read the {what}: {e}"), hint)
    })
}

/// Parses a chain of certificates from PEM (or a single DER certificate).
pub fn parse_certificates(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        if bytes.first() == Some(&0x30) && CertInfo::from_der(bytes).is_ok() {
            return Ok(vec![CertificateDer::from(bytes.to_vec())]);
        }
        return Err(CertError::new(
            path,
            "no PEM certificate found in the file",
            "the file must hold one or more -----BEGIN CERTIFICATE----- blocks, leaf first",
        ));
    }
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        let der = item.map_err(|e| {
            CertError::new(
                path,
                format!("the PEM data is damaged: {e}"),
                "re-export the certificate chain; a truncated copy or stray characters inside a block cause this",
            )
        })?;
        certs.push(der);
    }
    if certs.is_empty() {
        let hint = if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
            "this looks like a private key; `cert` must name the certificate chain and `key` the key"
        } else {
            "the file must hold -----BEGIN CERTIFICATE----- blocks, leaf first"
        };
        return Err(CertError::new(
            path,
            "no certificate found in the file",
            hint,
        ));
    }
    Ok(certs)
}

/// Parses a private key in PKCS#8, SEC1 or PKCS#1 PEM form.
pub fn parse_private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(CertError::new(
            path,
            "the private key is encrypted with a passphrase",
            "moat cannot prompt for passphrases; decrypt it with `openssl pkey -in KEY -out KEY.dec` and protect the file with permissions (0600) instead",
        ));
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        let hint = if bytes.windows(11).any(|w| w == b"CERTIFICATE") {
            "this looks like a certificate; `key` must name the private key file"
        } else {
            "the file must hold a -----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY block"
        };
        CertError::new(path, format!("no usable private key found: {e}"), hint)
    })
}

/// Parses a chain and key read from `cert_path` and `key_path` and checks
/// that they belong together and are valid now.
pub fn load(
    cert_path: &Path,
    cert_bytes: &[u8],
    key_path: &Path,
    key_bytes: &[u8],
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<LoadedCert, CertError> {
    let chain = parse_certificates(cert_path, cert_bytes)?;
    let key = parse_private_key(key_path, key_bytes)?;
    build(cert_path, key_path, chain, key, provider, now)
}

/// Checks an already-read chain and key: each certificate parses, the key
/// belongs to the leaf, each certificate is issued by the next, and every
/// one is valid now.
pub fn build(
    cert_path: &Path,
    key_path: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<LoadedCert, CertError> {
    let parsed = parse_chain(cert_path, &chain)?;
    let infos: Vec<CertInfo> = parsed.iter().map(|(der, c)| describe(c, der)).collect();

    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        CertError::new(
            key_path,
            format!("the private key cannot be used: {e}"),
            "moat accepts RSA (2048 to 8192 bits), ECDSA P-256/P-384 and Ed25519 keys",
        )
    })?;
    if let Some(spki) = signing_key.public_key() {
        check_key_belongs_to_leaf(cert_path, key_path, &parsed, &infos, spki.as_ref())?;
    }
    check_links(cert_path, &parsed, &infos)?;
    check_validity(cert_path, &infos, now)?;
    drop(parsed);

    let certified = CertifiedKey::new(chain, signing_key);
    Ok(LoadedCert {
        key: Arc::new(certified),
        chain: infos,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
    })
}

/// Each certificate of `chain`, parsed.
fn parse_chain<'a>(
    cert_path: &Path,
    chain: &'a [CertificateDer<'static>],
) -> Result<Vec<(&'a [u8], X509Certificate<'a>)>, CertError> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| (der.as_ref(), c))
                .map_err(|e| {
                    CertError::new(
                        cert_path,
                        format!("certificate #{} is not valid X.509: {e}", i + 1),
                        "re-export the chain from your CA",
                    )
                })
        })
        .collect::<Result<_, _>>()
}

/// The key must belong to the first certificate. If it belongs to another
/// one, the chain is in the wrong order.
fn check_key_belongs_to_leaf(
    cert_path: &Path,
    key_path: &Path,
    parsed: &[(&[u8], X509Certificate<'_>)],
    infos: &[CertInfo],
    spki: &[u8],
) -> Result<(), CertError> {
    match parsed.iter().position(|(_, c)| c.public_key().raw == spki) {
        Some(0) => Ok(()),
        Some(i) => Err(CertError::new(
            cert_path,
            format!(
                "the chain is in the wrong order: the key matches certificate #{} ({}), but the leaf must come first",
                i + 1,
                infos[i].subject
            ),
            "put the server certificate first, then its issuer, then any further intermediates",
        )),
        None => Err(CertError::new(
            key_path,
            format!(
                "the private key does not match the certificate in {} (subject {})",
                cert_path.display(),
                infos[0].subject
            ),
            "pair each certificate with the key it was issued for; compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`",
        )),
    }
}

/// Each certificate must be issued (and signed) by the next one.
fn check_links(
    cert_path: &Path,
    parsed: &[(&[u8], X509Certificate<'_>)],
    infos: &[CertInfo],
) -> Result<(), CertError> {
    for i in 0..parsed.len().saturating_sub(1) {
        let (child, parent) = (&parsed[i].1, &parsed[i + 1].1);
        // aws-lc cannot verify every algorithm (RSA under 2048 bits, some
        // curve and hash pairings); for those the names must link and
        // `moat check` warns about the weak key.
        let weak_parent = infos[i + 1].key_type == "RSA" && infos[i + 1].key_bits < 2048;
        let signature_ok = weak_parent
            || !matches!(
                child.verify_signature(Some(parent.public_key())),
                Err(X509Error::SignatureVerificationError)
            );
        let linked = child.issuer().as_raw() == parent.subject().as_raw() && signature_ok;
        if !linked {
            let elsewhere = parsed
                .iter()
                .enumerate()
                .find(|(j, (_, p))| *j != i && child.issuer().as_raw() == p.subject().as_raw());
            let message = match elsewhere {
                Some((j, _)) => format!(
                    "the chain is in the wrong order: certificate #{} ({}) is issued by #{}, not by the next one (#{})",
                    i + 1,
                    infos[i].subject,
                    j + 1,
                    i + 2
                ),
                None => format!(
                    "certificate #{} ({}) is not issued by certificate #{} ({})",
                    i + 1,
                    infos[i].subject,
                    i + 2,
                    infos[i + 1].subject
                ),
            };
            return Err(CertError::new(
                cert_path,
                message,
                "list the leaf first, then each issuer in turn; remove certificates that do not belong to this chain",
            ));
        }
    }
    Ok(())
}

/// Every certificate must be valid at `now`, and the leaf's RSA key at
/// least 2048 bits.
fn check_validity(cert_path: &Path, infos: &[CertInfo], now: SystemTime) -> Result<(), CertError> {
    let now_s = unix(now);
    for (i, info) in infos.iter().enumerate() {
        let which = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("chain certificate #{} ({})", i + 1, info.subject)
        };
        if info.not_after < now_s {
            return Err(CertError::new(
                cert_path,
                format!("{which} expired at {}", info.not_after_rfc3339()),
                "renew it (for example `certbot renew`) and point moat at the new files; moat reloads them without a restart",
            ));
        }
        if info.not_before > now_s {
            return Err(CertError::new(
                cert_path,
                format!("{which} is not valid until {}", info.not_before_rfc3339()),
                "check the system clock, or wait until the certificate becomes valid",
            ));
        }
        // The leaf's key signs our handshakes; weak chain keys only warn.
        if i == 0 && info.key_type == "RSA" && info.key_bits < 2048 {
            return Err(CertError::new(
                cert_path,
                format!("{which} has a {}-bit RSA key; at least 2048 bits are required", info.key_bits),
                "issue a new certificate with a 2048-bit (or larger) RSA key, or an ECDSA P-256 key",
            ));
        }
    }
    Ok(())
}

/// Parses a bundle of CA certificates (for client authentication).
pub fn parse_ca_bundle(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(CertificateDer<'static>, CertInfo)>, CertError> {
    let certs = parse_certificates(path, bytes)?;
    certs
        .into_iter()
        .enumerate()
        .map(|(i, der)| {
            let info = CertInfo::from_der(&der).map_err(|e| {
                CertError::new(
                    path,
                    format!("certificate #{} in the CA bundle: {e}", i + 1),
                    "re-export the CA bundle from your PKI",
                )
            })?;
            Ok((der, info))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, KeyPair};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        pem: String,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf signed by `issuer`, valid from/to the given years when set.
    fn leaf(issuer: &Ca, names: &[&str], years: Option<(i32, i32)>) -> (String, KeyPair) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let iss = rcgen::Issuer::from_params(&issuer.params, &issuer.key);
        let cert = params.signed_by(&key, &iss).expect("signed");
        (cert.pem(), key)
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn load_pem(chain: &str, key: &str) -> Result<LoadedCert, CertError> {
        let chain_der = parse_certificates(Path::new("chain.pem"), chain.as_bytes())?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key pem");
        build(
            Path::new("chain.pem"),
            Path::new("key.pem"),
            chain_der,
            key,
            &provider(),
            SystemTime::now(),
        )
    }

    #[test]
    fn good_chain_loads_and_is_described() {
        let root = ca("Test Root");
        let (cert, key) = leaf(&root, &["mqtt.example.com", "*.devices.example.com"], None);
        let chain = format!("{cert}{}", root.pem);
        let loaded = load_pem(&chain, &key.serialize_pem()).expect("loads");
        let leaf = loaded.leaf();
        assert_eq!(leaf.key_type, "ECDSA P-256");
        assert_eq!(leaf.key_bits, 256);
        assert!(leaf.subject.contains("mqtt.example.com"));
        assert!(leaf.issuer.contains("Test Root"));
        assert_eq!(leaf.sans[0], "DNS:mqtt.example.com");
        assert!(leaf.covers("mqtt.example.com"));
        assert!(leaf.covers("a.devices.example.com"));
        assert!(!leaf.covers("a.b.devices.example.com"));
        assert!(!leaf.covers("example.com"));
        assert_eq!(leaf.sha256.len(), 64);
        assert!(loaded.issuer_der().is_some());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn mismatched_key_is_refused_naming_the_key_file() {
        let root = ca("Root");
        let (cert, _) = leaf(&root, &["a.example"], None);
        let other = KeyPair::generate().expect("key");
        let e = load_pem(&cert, &other.serialize_pem()).expect_err("mismatch");
        assert_eq!(e.file, Path::new("key.pem"));
        assert!(e.message.contains("does not match"), "{e}");
    }

    #[test]
    fn chain_in_wrong_order_is_refused() {
        let root = ca("Root");
        let (cert, key) = leaf(&root, &["a.example"], None);
        let chain = format!("{}{cert}", root.pem);
        let e = load_pem(&chain, &key.serialize_pem()).expect_err("order");
        assert!(e.message.contains("wrong order"), "{e}");
    }

    #[test]
    fn unrelated_chain_certificate_is_refused() {
        let root = ca("Root");
        let stranger = ca("Stranger");
        let (cert, key) = leaf(&root, &["a.example"], None);
        let chain = format!("{cert}{}", stranger.pem);
        let e = load_pem(&chain, &key.serialize_pem()).expect_err("unrelated");
        assert!(e.message.contains("is not issued by"), "{e}");
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        let root = ca("Root");
        let (cert, key) = leaf(&root, &["a.example"], Some((2001, 2002)));
        let e = load_pem(&cert, &key.serialize_pem()).expect_err("expired");
        assert!(e.message.contains("expired at 2002-01-01"), "{e}");

        let (cert, key) = leaf(&root, &["a.example"], Some((2999, 3000)));
        let e = load_pem(&cert, &key.serialize_pem()).expect_err("future");
        assert!(e.message.contains("not valid until 2999"), "{e}");
    }

    #[test]
    fn files_without_certificates_get_a_hint() {
        let key = KeyPair::generate().expect("key").serialize_pem();
        let e = parse_certificates(Path::new("x.pem"), key.as_bytes()).expect_err("key");
        assert!(e.hint.contains("private key"), "{e}");
        let e = parse_certificates(Path::new("x.pem"), b"hello").expect_err("garbage");
        assert!(e.message.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn name_matching() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(name_matches("*.example.com", "A.EXAMPLE.COM."));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("example.com", "Example.com"));
        assert!(!name_matches("example.com", "a.example.com"));
    }
}
