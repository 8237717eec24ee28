//! A CA run with `openssl ca` and its `index.txt` database, the way
//! operators run one: it issues, revokes, publishes CRLs and (see
//! [`crate::ocsp`]) answers OCSP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::pki::{openssl, pem_to_der, CertFiles, KeyAlg};

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
    /// The CRL distribution point URL device certificates
    /// ([`Profile::Client`], [`Profile::ClientOcsp`]) name, e.g. a
    /// [`Responder::url`](crate::Responder::url) serving
    /// [`OpensslCa::gencrl`]'s output; `None` for none.
    pub crl_url: Option<String>,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            alg: KeyAlg::EcdsaP256,
            ocsp_url: None,
            crl_url: None,
        }
    }
}

impl CaOptions {
    /// An ECDSA P-256 CA whose device certificates name `url` as their CRL
    /// distribution point.
    pub fn crl(url: impl Into<String>) -> Self {
        Self {
            crl_url: Some(url.into()),
            ..Self::default()
        }
    }

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
    /// [`Profile::Client`] naming the CA's OCSP URL, if it has one, in
    /// authorityInfoAccess (for OCSP checks of device certificates).
    ClientOcsp,
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
            Self::ClientOcsp => "client_ocsp_ext",
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
    pub(crate) signers: Mutex<HashMap<Signer, CertFiles>>,
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
        let cdp = opts
            .crl_url
            .as_deref()
            .map(|url| format!("crlDistributionPoints = URI:{url}\n"))
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
{cdp}
[ client_ocsp_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
{aia}{cdp}
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
        self.issue_with(out, stem, subject, None, profile, &[])
    }

    /// `leaf` as a server serves it: a file `out/<name>` with its
    /// certificate and then this CA's, and its key.
    pub fn chain(&self, out: &Path, name: &str, leaf: &CertFiles) -> CertFiles {
        let ca = std::fs::read_to_string(&self.cert).expect("CA");
        let chain = out.join(name);
        std::fs::write(&chain, format!("{}{ca}", leaf.cert_pem)).expect("write chain");
        CertFiles {
            cert: chain,
            key: leaf.key.clone(),
            cert_pem: leaf.cert_pem.clone(),
        }
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
            &["-days".into(), days.to_string()],
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
        self.issue_with(out, stem, subject, san, Profile::Client, &[])
    }

    /// A device certificate like [`Self::issue_client`]'s that expires
    /// `secs` seconds from now, to watch a live session reach its notAfter.
    pub fn issue_client_expiring_in(
        &self,
        out: &Path,
        stem: &str,
        subject: &str,
        secs: u64,
    ) -> CertFiles {
        let end = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
        let unix = end
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let enddate = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{unix}"), "+%Y%m%d%H%M%SZ"])
            .output()
            .expect("run date");
        let enddate = String::from_utf8(enddate.stdout).expect("utf-8");
        let validity = ["-enddate".to_string(), enddate.trim().to_string()];
        self.issue_with(out, stem, subject, None, Profile::Client, &validity)
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
        validity: &[String],
    ) -> CertFiles {
        let (key, csr, cert) = self.new_request(out, stem, subject, san);
        let p = |x: &Path| x.to_str().expect("utf-8 path").to_string();
        let (csr, cert_out) = (p(&csr), p(&cert));
        let mut args = vec![
            "-batch",
            "-notext",
            "-extensions",
            profile.section(),
            "-in",
            &csr,
            "-out",
            &cert_out,
        ];
        args.extend(validity.iter().map(String::as_str));
        self.ca_command(&args);
        cert_files(cert, key)
    }

    /// Runs `openssl ca -config openssl.cnf` with `args`, the database
    /// held.
    fn ca_command(&self, args: &[&str]) {
        let mut all = vec!["ca", "-config", "openssl.cnf"];
        all.extend_from_slice(args);
        let _db = self.lock_db();
        openssl(&self.dir, &all);
    }

    /// Revokes a certificate in the CA's database (reason keyCompromise).
    pub fn revoke(&self, cert: &Path) {
        self.ca_command(&[
            "-revoke",
            cert.to_str().expect("path"),
            "-crl_reason",
            "keyCompromise",
        ]);
    }

    /// Publishes a CRL (valid for a day) to `out`.
    pub fn gencrl(&self, out: &Path) {
        self.ca_command(&["-gencrl", "-out", out.to_str().expect("path")]);
    }

    /// Publishes a CRL whose nextUpdate is already past.
    pub fn gencrl_expired(&self, out: &Path) {
        self.ca_command(&[
            "-gencrl",
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20200102000000Z",
            "-out",
            out.to_str().expect("path"),
        ]);
    }

    /// Publishes a new CRL over `crl` atomically: written to `<crl>.new`
    /// beside it, then renamed into place, so a watcher never reads half
    /// a file.
    pub fn publish_crl(&self, crl: &Path) {
        let mut tmp = crl.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = std::path::PathBuf::from(tmp);
        self.gencrl(&tmp);
        std::fs::rename(&tmp, crl).expect("CRL into place");
    }

    /// Revokes `cert` and publishes the new CRL over `crl`
    /// ([`OpensslCa::publish_crl`]).
    pub fn revoke_and_publish(&self, cert: &Path, crl: &Path) {
        self.revoke(cert);
        self.publish_crl(crl);
    }

    /// The listener's `client_auth:` lines (under `tls:`) that require a
    /// certificate from this CA and check it against the CRL `crl`.
    pub fn client_auth_with_crl(&self, crl: &Path) -> String {
        format!(
            "client_auth:\n  mode: required\n  ca: {}\n  crl: {}",
            self.cert.display(),
            crl.display()
        )
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

/// Who signs an OCSP response. Every signer but [`Signer::Ca`] is made
/// the first time it is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    /// The issuing CA itself.
    Ca,
    /// A delegated responder, `CN=Moat OCSP Responder`, issued by the CA
    /// with OCSPSigning.
    Delegated,
    /// A certificate issued by the CA without OCSPSigning (serverAuth).
    NoEku,
    /// A self-signed CA with the same name as ours but another key.
    Impostor,
    /// An unrelated self-signed CA (`CN=Other Test CA`, ECDSA P-256).
    Other,
}
