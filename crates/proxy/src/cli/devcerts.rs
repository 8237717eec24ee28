//! Development certificates for the quickstart.
//!
//! With `development.generate_certificates: true`, every configured
//! certificate whose files are both missing is generated: a development CA
//! (`ca.pem`/`ca.key` beside the certificate, reused when present) and a
//! server certificate for `localhost`, `127.0.0.1` and `::1` signed by it.
//! Nothing is ever overwritten. These certificates are for development
//! only, and moat says so loudly every time it starts with them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::config::ValidConfig;

/// What the generator did for one certificate entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCert {
    /// The development CA clients must trust.
    pub ca: PathBuf,
    /// The server certificate file.
    pub cert: PathBuf,
    /// Whether it was generated just now (false: already there).
    pub generated: bool,
}

/// Generates missing development certificates. Returns one entry per
/// configured certificate it is responsible for.
pub fn ensure(config: &ValidConfig) -> Result<Vec<DevCert>, String> {
    let mut out = Vec::new();
    if !config.config.development.generate_certificates {
        return Ok(out);
    }
    for l in &config.config.listeners {
        for c in &l.tls.certificates {
            let dir = c.cert.parent().unwrap_or(Path::new(".")).to_path_buf();
            let ca_pem = dir.join("ca.pem");
            match (c.cert.exists(), c.key.exists()) {
                (true, true) => out.push(DevCert {
                    ca: ca_pem,
                    cert: c.cert.clone(),
                    generated: false,
                }),
                (false, false) => {
                    generate(&dir, &c.cert, &c.key)?;
                    out.push(DevCert {
                        ca: ca_pem,
                        cert: c.cert.clone(),
                        generated: true,
                    });
                }
                (has_cert, _) => {
                    let (present, missing) = if has_cert {
                        (&c.cert, &c.key)
                    } else {
                        (&c.key, &c.cert)
                    };
                    return Err(format!(
                        "{} exists but {} does not; moat will not overwrite half a certificate pair. Delete {} to regenerate both, or supply the missing file",
                        present.display(),
                        missing.display(),
                        present.display()
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Today's UTC date as (year, month, day).
fn today() -> (i32, u8, u8) {
    // RFC 3339 starts with YYYY-MM-DD; parsing it avoids a calendar crate.
    let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse().ok());
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => (y, m as u8, d as u8),
        _ => (2025, 1, 1),
    }
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("cannot generate development certificates: {e}");

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "moat development CA (DO NOT TRUST IN PRODUCTION)",
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (y, m, d) = today();
    ca_params.not_before = rcgen::date_time_ymd(y, m, d);
    ca_params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));

    let ca_pem_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca_key = if ca_pem_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_key_path)
            .map_err(|e| format!("cannot read {}: {e}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).map_err(err)?
    } else {
        let key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&key).map_err(err)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_pem_path, &ca_cert.pem(), false)?;
        key
    };
    let ca_der = rustls::pki_types::CertificateDer::from(
        rustls::pki_types::pem::PemObject::from_pem_file(&ca_pem_path)
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| format!("cannot read {}: {e}", ca_pem_path.display()))?,
    );
    let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(err)?;

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(err)?;
    params.distinguished_name.push(
        DnType::CommonName,
        "localhost (moat development certificate)",
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // A year, like a real certificate would have; delete the files to get
    // fresh ones.
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 1, m, d.min(28));
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    write_file(key_path, &key.serialize_pem(), true)?;
    write_file(cert_path, &cert.pem(), false)?;
    Ok(())
}

/// Logs, loudly, that development certificates are in use, and how to
/// connect with them.
pub fn announce(config: &ValidConfig, dev: &[DevCert]) {
    for d in dev {
        if d.generated {
            tracing::warn!(
                certificate = %d.cert.display(),
                ca = %d.ca.display(),
                "generated a DEVELOPMENT CA and server certificate"
            );
        }
    }
    let Some(first) = dev.first() else { return };
    tracing::warn!(
        "DEVELOPMENT CERTIFICATES ARE IN USE: they are for trying moat out only. Never use them in production: anyone with {} can impersonate this server. Set development.generate_certificates to false and configure real certificates.",
        first.ca.with_file_name("ca.key").display()
    );
    if let Some(l) = config.config.listeners.first() {
        let ca = std::fs::canonicalize(&first.ca).unwrap_or_else(|_| first.ca.clone());
        let host = match l.listen.ip() {
            ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_string(),
            ip => ip.to_string(),
        };
        tracing::info!(
            "connect with: mosquitto_sub -h {host} -p {} --cafile {} -t '#' -v",
            l.listen.port(),
            ca.display()
        );
    }
}
