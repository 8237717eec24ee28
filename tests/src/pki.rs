//! Test PKI, generated at test time: CAs, server and device certificates.
//!
//! rcgen makes the material in-process (fast); openssl converts keys to the
//! other encodings operators have on disk (PKCS#1, SEC1) and makes what
//! rcgen cannot (SHA-1 signatures, small RSA keys). [`OpensslCa`] is a CA
//! run with `openssl ca` and its `index.txt` database, the way operators
//! run one: it revokes, publishes CRLs and (see [`crate::ocsp`]) answers
//! OCSP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

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

impl Ca {
    /// A new self-signed CA written to `dir/<stem>.pem`.
    pub fn new(dir: &Path, stem: &str, name: &str) -> Self {
        Self::with_alg(dir, stem, name, KeyAlg::EcdsaP256)
    }

    /// A new self-signed CA with the given key algorithm.
    pub fn with_alg(dir: &Path, stem: &str, name: &str, alg: KeyAlg) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(alg.alg()).expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        let path = dir.join(format!("{stem}.pem"));
        write(&path, &cert.pem());
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem());
        Self {
            params,
            key,
            cert: path,
            cert_pem: cert.pem(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, dir: &Path, stem: &str, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign intermediate");
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
    match issuer {
        Some((ic, ik)) => openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &p(&csr),
                "-CA",
                &p(ic),
                "-CAkey",
                &p(ik),
                "-CAcreateserial",
                "-days",
                &days,
                &digest,
                "-extfile",
                &p(&ext),
                "-out",
                &p(&cert),
            ],
        ),
        None => openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &p(&csr),
                "-signkey",
                &p(&key),
                "-days",
                &days,
                &digest,
                "-extfile",
                &p(&ext),
                "-out",
                &p(&cert),
            ],
        ),
    };
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

/// How an [`OpensslCa`] is made.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The CA's key (ECDSA P-256 by default). Issued certificates always
    /// have ECDSA P-256 keys.
    pub alg: KeyAlg,
    /// The OCSP responder URL that [`Profile::Server`] and
    /// [`Profile::MustStaple`] certificates name in their
    /// authorityInfoAccess, e.g. [`Responder::url`](crate::Responder::url);
    /// `None` for no authorityInfoAccess.
    pub ocsp_url: Option<String>,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            alg: KeyAlg::EcdsaP256,
            ocsp_url: None,
        }
    }
}

impl CaOptions {
    /// An ECDSA P-256 CA whose server certificates name `url` as their
    /// OCSP responder.
    pub fn ocsp(url: impl Into<String>) -> Self {
        Self {
            ocsp_url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// What a certificate issued by an [`OpensslCa`] is for: its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A device certificate: extendedKeyUsage clientAuth.
    Client,
    /// A server certificate for `localhost`, 127.0.0.1 and ::1
    /// (extendedKeyUsage serverAuth), naming the CA's OCSP URL, if it has
    /// one, in authorityInfoAccess.
    Server,
    /// [`Profile::Server`] with the TLS feature `status_request`
    /// (OCSP Must-Staple).
    MustStaple,
    /// [`Profile::Server`] without authorityInfoAccess.
    ServerNoAia,
    /// A delegated OCSP responder: critical extendedKeyUsage OCSPSigning.
    OcspSigning,
}

impl Profile {
    fn section(self) -> &'static str {
        match self {
            Self::Client => "client_ext",
            Self::Server => "server_ext",
            Self::MustStaple => "must_staple_ext",
            Self::ServerNoAia => "server_no_aia_ext",
            Self::OcspSigning => "ocsp_ext",
        }
    }
}

/// A CA run with `openssl ca` and its `index.txt` database, so that
/// certificates can be revoked, CRLs published and OCSP answered (by
/// `openssl ocsp`, see [`crate::ocsp`]) the way operators do it.
///
/// It lives in its own directory (`ca.pem`, `ca.key`, `index.txt`,
/// `openssl.cnf`, ...). Operations that use the database are serialised,
/// so it can be shared (in an `Arc`) with a [`Responder`](crate::Responder)
/// thread while the test issues and revokes.
pub struct OpensslCa {
    pub(crate) dir: PathBuf,
    /// Its CN.
    pub(crate) name: String,
    pub(crate) alg: KeyAlg,
    ocsp_url: Option<String>,
    /// The CA certificate.
    pub cert: PathBuf,
    /// The CA key.
    pub key: PathBuf,
    /// The CA certificate PEM text.
    pub cert_pem: String,
    /// Held while openssl reads or writes the database.
    db: Mutex<()>,
    /// OCSP signers made so far.
    pub(crate) signers: Mutex<HashMap<crate::ocsp::Signer, CertFiles>>,
    _temp: Option<tempfile::TempDir>,
}

impl OpensslCa {
    /// A new ECDSA P-256 CA, `CN=<name>`, in `parent/<name>/`, with no
    /// OCSP URL.
    pub fn new(parent: &Path, name: &str) -> Self {
        Self::with_options(parent, name, &CaOptions::default())
    }

    /// A new CA, `CN=<name>`, in `parent/<name>/`.
    pub fn with_options(parent: &Path, name: &str, opts: &CaOptions) -> Self {
        Self::create(parent.join(name), name, opts, None)
    }

    /// A new CA, `CN=<name>`, in a temporary directory of its own that is
    /// removed when the CA is dropped.
    pub fn in_temp_dir(name: &str, opts: &CaOptions) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("moat-ca-")
            .tempdir()
            .expect("tempdir");
        Self::create(temp.path().to_path_buf(), name, opts, Some(temp))
    }

    fn create(dir: PathBuf, name: &str, opts: &CaOptions, temp: Option<tempfile::TempDir>) -> Self {
        std::fs::create_dir_all(dir.join("newcerts")).expect("mkdir");
        std::fs::write(dir.join("index.txt"), "").expect("index");
        std::fs::write(dir.join("serial"), "1000\n").expect("serial");
        std::fs::write(dir.join("crlnumber"), "1000\n").expect("crlnumber");
        let aia = opts
            .ocsp_url
            .as_deref()
            .map(|url| format!("authorityInfoAccess = OCSP;URI:{url}\n"))
            .unwrap_or_default();
        let server = "basicConstraints = critical, CA:FALSE\n\
                      keyUsage = critical, digitalSignature\n\
                      extendedKeyUsage = serverAuth\n\
                      subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1\n";
        let cnf = format!(
            r#"[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = copy
[ policy_any ]
commonName = supplied
organizationalUnitName = optional
[ req ]
distinguished_name = dn
[ dn ]
[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
[ server_ext ]
{server}{aia}
[ must_staple_ext ]
{server}{aia}tlsfeature = status_request
[ server_no_aia_ext ]
{server}
[ ocsp_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, OCSPSigning
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("openssl.cnf"), cnf).expect("cnf");
        let cert_pem = self_signed_ca(&dir, "ca", name, opts.alg);
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            cert_pem,
            dir,
            name: name.to_string(),
            alg: opts.alg,
            ocsp_url: opts.ocsp_url.clone(),
            db: Mutex::new(()),
            signers: Mutex::new(HashMap::new()),
            _temp: temp,
        }
    }

    /// Its directory (`index.txt`, `openssl.cnf`, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OCSP URL its server certificates name, if any.
    pub fn ocsp_url(&self) -> Option<&str> {
        self.ocsp_url.as_deref()
    }

    /// The DER of the CA certificate.
    pub fn cert_der(&self) -> Vec<u8> {
        pem_to_der(&self.cert_pem)
    }

    /// The CA itself as certificate and key files.
    pub fn files(&self) -> CertFiles {
        CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            cert_pem: self.cert_pem.clone(),
        }
    }

    /// Holds the database for one openssl command.
    pub(crate) fn lock_db(&self) -> MutexGuard<'_, ()> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a certificate with `openssl ca` (recorded in `index.txt`),
    /// written to `out/<stem>.pem` and `.key` (ECDSA P-256). `subject` is
    /// an openssl subject such as `/CN=localhost`.
    pub fn issue(&self, out: &Path, stem: &str, subject: &str, profile: Profile) -> CertFiles {
        self.issue_with(out, stem, subject, None, profile, None)
    }

    /// A [`Profile::Server`] certificate with `CN=localhost`.
    pub fn issue_server(&self, out: &Path, stem: &str) -> CertFiles {
        self.issue(out, stem, "/CN=localhost", Profile::Server)
    }

    /// A [`Profile::Server`] certificate with `CN=localhost`, valid for
    /// `days` (Mozilla's "modern" profile wants fewer than 90).
    pub fn issue_server_for_days(&self, out: &Path, stem: &str, days: u32) -> CertFiles {
        self.issue_with(
            out,
            stem,
            "/CN=localhost",
            None,
            Profile::Server,
            Some(days),
        )
    }

    /// Issues a device (client) certificate with `openssl ca`. `subject`
    /// is an openssl subject such as `/CN=device-1/OU=fleet-a`; `san` an
    /// optional subjectAltName value such as `DNS:d1.fleet.example`.
    pub fn issue_client(
        &self,
        out: &Path,
        stem: &str,
        subject: &str,
        san: Option<&str>,
    ) -> CertFiles {
        self.issue_with(out, stem, subject, san, Profile::Client, None)
    }

    /// Issues a [`Profile::Server`] certificate (`CN=localhost`) with
    /// `openssl x509 -req`, which leaves it out of `index.txt`: OCSP
    /// answers "unknown" for it.
    pub fn issue_unrecorded(&self, out: &Path, stem: &str) -> CertFiles {
        let (key, csr, cert) = self.new_request(out, stem, "/CN=localhost", None);
        let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
        // Without -set_serial or -CAserial, openssl picks a random serial.
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &p(&csr),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-days",
                "365",
                "-extfile",
                "openssl.cnf",
                "-extensions",
                Profile::Server.section(),
                "-out",
                &p(&cert),
            ],
        );
        cert_files(cert, key)
    }

    /// A new key and certificate request: (key, csr, where the
    /// certificate goes).
    fn new_request(
        &self,
        out: &Path,
        stem: &str,
        subject: &str,
        san: Option<&str>,
    ) -> (PathBuf, PathBuf, PathBuf) {
        let key = out.join(format!("{stem}.key"));
        let csr = out.join(format!("{stem}.csr"));
        let cert = out.join(format!("{stem}.pem"));
        let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
        let mut genpkey = vec!["genpkey"];
        genpkey.extend_from_slice(KeyAlg::EcdsaP256.genpkey_args());
        let key_arg = p(&key);
        genpkey.extend_from_slice(&["-out", &key_arg]);
        openssl(&self.dir, &genpkey);
        let mut req = vec![
            "req".to_string(),
            "-config".into(),
            "openssl.cnf".into(),
            "-new".into(),
            "-key".into(),
            p(&key),
            "-subj".into(),
            subject.into(),
            "-out".into(),
            p(&csr),
        ];
        if let Some(san) = san {
            req.extend(["-addext".into(), format!("subjectAltName={san}")]);
        }
        openssl(
            &self.dir,
            &req.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        (key, csr, cert)
    }

    fn issue_with(
        &self,
        out: &Path,
        stem: &str,
        subject: &str,
        san: Option<&str>,
        profile: Profile,
        days: Option<u32>,
    ) -> CertFiles {
        let (key, csr, cert) = self.new_request(out, stem, subject, san);
        let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
        let (csr, cert_out) = (p(&csr), p(&cert));
        let days = days.map(|d| d.to_string());
        let mut args = vec![
            "ca",
            "-config",
            "openssl.cnf",
            "-batch",
            "-notext",
            "-extensions",
            profile.section(),
            "-in",
            &csr,
            "-out",
            &cert_out,
        ];
        if let Some(days) = &days {
            args.extend(["-days", days.as_str()]);
        }
        let _db = self.lock_db();
        openssl(&self.dir, &args);
        cert_files(cert, key)
    }

    /// Revokes a certificate in the CA's database (reason keyCompromise).
    pub fn revoke(&self, cert: &Path) {
        let _db = self.lock_db();
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-revoke",
                cert.to_str().expect("path"),
                "-crl_reason",
                "keyCompromise",
            ],
        );
    }

    /// Publishes a CRL (valid for a day) to `out`.
    pub fn gencrl(&self, out: &Path) {
        let _db = self.lock_db();
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-gencrl",
                "-out",
                out.to_str().expect("path"),
            ],
        );
    }

    /// Publishes a CRL whose nextUpdate is already past.
    pub fn gencrl_expired(&self, out: &Path) {
        let _db = self.lock_db();
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "openssl.cnf",
                "-gencrl",
                "-crl_lastupdate",
                "20200101000000Z",
                "-crl_nextupdate",
                "20200102000000Z",
                "-out",
                out.to_str().expect("path"),
            ],
        );
    }
}

/// Makes a self-signed CA `dir/<stem>.pem` and `.key` with the `v3_ca`
/// section of `dir/openssl.cnf`; returns the certificate PEM.
pub(crate) fn self_signed_ca(dir: &Path, stem: &str, cn: &str, alg: KeyAlg) -> String {
    let key = format!("{stem}.key");
    let cert = format!("{stem}.pem");
    let mut genpkey = vec!["genpkey"];
    genpkey.extend_from_slice(alg.genpkey_args());
    genpkey.extend_from_slice(&["-out", &key]);
    openssl(dir, &genpkey);
    openssl(
        dir,
        &[
            "req",
            "-config",
            "openssl.cnf",
            "-new",
            "-x509",
            "-key",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "3650",
            "-extensions",
            "v3_ca",
            "-out",
            &cert,
        ],
    );
    std::fs::read_to_string(dir.join(cert)).expect("read CA certificate")
}

fn cert_files(cert: PathBuf, key: PathBuf) -> CertFiles {
    let cert_pem = std::fs::read_to_string(&cert).expect("read certificate");
    CertFiles {
        cert,
        key,
        cert_pem,
    }
}
