//! Test PKI, generated at test time: CAs, server and device certificates.
//!
//! rcgen makes the material in-process (fast); openssl converts keys to the
//! other encodings operators have on disk (PKCS#1, SEC1) and makes what
//! rcgen cannot (SHA-1 signatures, small RSA keys). [`OpensslCa`] is a CA
//! run with `openssl ca` and its `index.txt` database, the way operators
//! run one: it revokes, publishes CRLs and (see [`crate::ocsp`]) answers
//! OCSP.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::{pem::PemObject, CertificateDer};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};

/// Key algorithms for generated certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048 bits.
    Rsa2048,
}

impl KeyAlg {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The `openssl genpkey` arguments that make a key of this kind.
    pub fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            Self::EcdsaP256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Self::EcdsaP384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Self::Ed25519 => &["-algorithm", "ED25519"],
            Self::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        }
    }
}

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (or chain) PEM file.
    pub cert: PathBuf,
    /// The private key PEM file.
    pub key: PathBuf,
    /// The certificate PEM text.
    pub cert_pem: String,
}

impl CertFiles {
    /// The DER of the (first) certificate.
    pub fn der(&self) -> Vec<u8> {
        pem_to_der(&self.cert_pem)
    }

    /// The SHA-256 fingerprint of the certificate as openssl prints it,
    /// normalised to lower-case hex without colons.
    pub fn sha256(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&self.cert)
            .output()
            .expect("run openssl x509");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split('=')
            .nth(1)
            .expect("fingerprint line")
            .trim()
            .replace(':', "")
            .to_ascii_lowercase()
    }

    /// The serial number as openssl prints it (upper-case hex).
    pub fn serial(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&self.cert)
            .output()
            .expect("run openssl x509");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_string()
    }
}

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate PEM file.
    pub cert: PathBuf,
    /// The CA certificate PEM text.
    pub cert_pem: String,
}

/// A date as (year, month, day).
pub type Ymd = (i32, u8, u8);

/// Options for an issued certificate.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    /// Subject common name.
    pub cn: &'a str,
    /// Subject alternative names (DNS names or IP addresses).
    pub sans: &'a [&'a str],
    /// Key algorithm.
    pub alg: KeyAlg,
    /// Validity as (not_before, not_after); default 2025 to 2035.
    pub validity: Option<(Ymd, Ymd)>,
    /// Whether the certificate is a client (device) certificate.
    pub client: bool,
}

impl<'a> Issue<'a> {
    /// A server certificate for `sans`, ECDSA P-256.
    pub fn server(cn: &'a str, sans: &'a [&'a str]) -> Self {
        Self {
            cn,
            sans,
            alg: KeyAlg::EcdsaP256,
            validity: None,
            client: false,
        }
    }

    /// A device certificate with common name `cn`, ECDSA P-256.
    pub fn client(cn: &'a str) -> Self {
        Self {
            cn,
            sans: &[],
            alg: KeyAlg::EcdsaP256,
            validity: None,
            client: true,
        }
    }

    /// With another key algorithm.
    pub fn alg(mut self, alg: KeyAlg) -> Self {
        self.alg = alg;
        self
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write PEM");
    // Keys get the permissions a careful operator gives them.
    if text.contains("PRIVATE KEY") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// The usual server PKI in `dir`: a CA `ca.pem` ("Test CA") and the
/// certificate `server.pem` for `localhost` it issued.
pub fn localhost_pki(dir: &Path) -> (Ca, CertFiles) {
    let ca = Ca::new(dir, "ca", "Test CA");
    let server = ca.issue(dir, "server", &Issue::server("localhost", &["localhost"]));
    (ca, server)
}

/// The parameters of a CA called `name`, which signs certificates and
/// CRLs.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Ca {
    /// A new self-signed CA written to `dir/<stem>.pem`.
    pub fn new(dir: &Path, stem: &str, name: &str) -> Self {
        Self::with_alg(dir, stem, name, KeyAlg::EcdsaP256)
    }

    /// A new self-signed CA with the given key algorithm.
    pub fn with_alg(dir: &Path, stem: &str, name: &str, alg: KeyAlg) -> Self {
        let params = ca_params(name);
        let key = KeyPair::generate_for(alg.alg()).expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self::written(dir, stem, params, key, &cert)
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, dir: &Path, stem: &str, name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign intermediate");
        Self::written(dir, stem, params, key, &cert)
    }

    /// The CA of `params`, `key` and `cert`, written to `dir/<stem>.pem`
    /// and `.key`.
    fn written(
        dir: &Path,
        stem: &str,
        params: CertificateParams,
        key: KeyPair,
        cert: &rcgen::Certificate,
    ) -> Ca {
        let path = dir.join(format!("{stem}.pem"));
        write(&path, &cert.pem());
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem());
        Ca {
            params,
            key,
            cert: path,
            cert_pem: cert.pem(),
        }
    }

    /// Issues a certificate, written to `dir/<stem>.pem` and `.key`.
    pub fn issue(&self, dir: &Path, stem: &str, opts: &Issue<'_>) -> CertFiles {
        let mut params =
            CertificateParams::new(opts.sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, opts.cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if opts.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let (from, to) = opts.validity.unwrap_or(((2025, 1, 1), (2035, 1, 1)));
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = KeyPair::generate_for(opts.alg.alg()).expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        write(&cert_path, &cert.pem());
        write(&key_path, &key.serialize_pem());
        CertFiles {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
        }
    }
}

/// Rewrites a PKCS#8 key file in its "traditional" encoding: PKCS#1 for
/// RSA, SEC1 for EC. Returns the new file.
pub fn to_traditional_key(key: &Path) -> PathBuf {
    let out = key.with_extension("trad.key");
    let status = Command::new("openssl")
        .args(["pkey", "-traditional", "-in"])
        .arg(key)
        .arg("-out")
        .arg(&out)
        .status()
        .expect("run openssl pkey");
    assert!(status.success(), "openssl pkey -traditional failed");
    out
}

/// The DER of the first certificate in PEM text.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// Runs openssl with arguments in `dir`, failing the test on error.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}): install it with `apt-get install -y openssl`, \
                 or run scripts/test, which installs every peer"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `openssl_issue` makes.
#[derive(Debug, Clone)]
pub struct OpensslIssue<'a> {
    /// Subject common name.
    pub cn: &'a str,
    /// `subjectAltName` value, e.g. `DNS:localhost`; empty for none.
    pub san: &'a str,
    /// Days of validity from now.
    pub days: u32,
    /// Signature digest (`sha256`, `sha1`).
    pub digest: &'a str,
    /// `openssl genpkey` arguments for the key.
    pub key: &'a [&'a str],
    /// Whether it is a CA.
    pub ca: bool,
}

impl Default for OpensslIssue<'_> {
    fn default() -> Self {
        Self {
            cn: "localhost",
            san: "DNS:localhost",
            days: 365,
            digest: "sha256",
            key: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ca: false,
        }
    }
}

/// Issues a certificate with the openssl command line, for what rcgen
/// cannot make (SHA-1 signatures, small RSA keys, validity relative to now).
/// The issuer is `(cert, key)`, or `None` for self-signed.
pub fn openssl_issue(
    dir: &Path,
    stem: &str,
    issuer: Option<(&Path, &Path)>,
    o: &OpensslIssue<'_>,
) -> CertFiles {
    let key = dir.join(format!("{stem}.key"));
    let csr = dir.join(format!("{stem}.csr"));
    let cert = dir.join(format!("{stem}.pem"));
    let ext = dir.join(format!("{stem}.ext"));
    let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
    let mut genpkey = vec!["genpkey".to_string()];
    genpkey.extend(o.key.iter().map(|s| s.to_string()));
    genpkey.extend(["-out".into(), p(&key)]);
    openssl(dir, &genpkey.iter().map(String::as_str).collect::<Vec<_>>());
    let mut exts = String::new();
    if !o.san.is_empty() {
        exts.push_str(&format!("subjectAltName={}\n", o.san));
    }
    if o.ca {
        exts.push_str("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
    }
    std::fs::write(&ext, exts).expect("ext file");
    let subj = format!("/CN={}", o.cn);
    let days = o.days.to_string();
    let digest = format!("-{}", o.digest);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &p(&key),
            "-subj",
            &subj,
            "-out",
            &p(&csr),
        ],
    );
    // Signed by the issuer, or by its own key.
    let signer: Vec<String> = match issuer {
        Some((ic, ik)) => vec![
            "-CA".into(),
            p(ic),
            "-CAkey".into(),
            p(ik),
            "-CAcreateserial".into(),
        ],
        None => vec!["-signkey".into(), p(&key)],
    };
    let (csr_arg, ext_arg, cert_arg) = (p(&csr), p(&ext), p(&cert));
    let mut x509 = vec!["x509", "-req", "-in", &csr_arg];
    x509.extend(signer.iter().map(String::as_str));
    x509.extend([
        "-days", &days, &digest, "-extfile", &ext_arg, "-out", &cert_arg,
    ]);
    openssl(dir, &x509);
    let cert_pem = std::fs::read_to_string(&cert).expect("read cert");
    CertFiles {
        cert,
        key,
        cert_pem,
    }
}

/// Puts `new`'s certificate and key in place of `cert` and `key` the way
/// careful tools do: write a temporary file beside each, then rename it
/// over the old one (certificate first, then key).
pub fn replace_atomically(new: &CertFiles, cert: &Path, key: &Path) {
    for (from, to) in [(&new.cert, cert), (&new.key, key)] {
        let tmp = to.with_extension("tmp-new");
        std::fs::copy(from, &tmp).expect("copy to temporary file");
        std::fs::rename(&tmp, to).expect("rename into place");
    }
}
