//! An ACME entry's state on disk, in `state_dir` (0700): the account
//! (`account.json`), the certificate key (`key.pem`) and chain
//! (`cert.pem`), each 0600 and each replaced atomically (a temporary file
//! renamed over the old), so the reload watcher never reads half a file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use instant_acme::CertificateIdentifier;
use rustls::pki_types::Der;
use x509_parser::prelude::*;

/// The account's credentials (its private key and URL).
pub fn account_file(state_dir: &Path) -> PathBuf {
    state_dir.join("account.json")
}

/// Creates `state_dir` (0700) if it does not exist.
pub fn ensure_dir(state_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file in the
/// same directory renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The validity (notBefore, notAfter, in Unix seconds) and serial of the
/// stored certificate, when it exists, parses, and its names are exactly
/// `domains` (a changed list orders again).
pub fn stored(cert_pem: &Path, domains: &[String]) -> Option<Stored> {
    let text = std::fs::read(cert_pem).ok()?;
    let (_, pem) = parse_x509_pem(&text).ok()?;
    let (_, cert) = parse_x509_certificate(&pem.contents).ok()?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut wanted: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    names.sort();
    wanted.sort();
    wanted.dedup();
    let ari = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| {
                CertificateIdentifier::new(
                    Der::from_slice(k.0),
                    Der::from_slice(cert.tbs_certificate.raw_serial()),
                )
                .into_owned()
            }),
            _ => None,
        });
    (names == wanted).then(|| Stored {
        not_before: u64::try_from(cert.validity().not_before.timestamp()).unwrap_or(0),
        not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
        serial: cert.raw_serial_as_string(),
        ari,
    })
}

/// What the stored certificate says of itself.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Start of validity, Unix seconds.
    pub not_before: u64,
    /// End of validity, Unix seconds.
    pub not_after: u64,
    /// Serial number, hex.
    pub serial: String,
    /// Its ACME Renewal Information identifier (authority key identifier
    /// and serial), when it has an authority key identifier.
    pub ari: Option<CertificateIdentifier<'static>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        ensure_dir(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let f = state.join("key.pem");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    }

    #[test]
    fn a_stored_certificate_counts_only_for_the_same_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["moat.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = dir.path().join("cert.pem");
        std::fs::write(&f, cert.pem()).unwrap();
        let s = stored(&f, &["MOAT.test".to_string()]).expect("stored");
        assert!(s.not_after > s.not_before);
        // Self-signed, with no authority key identifier: no ARI id.
        assert!(s.ari.is_none());
        assert!(stored(&f, &["other.test".to_string()]).is_none());
        assert!(stored(&dir.path().join("none.pem"), &["moat.test".to_string()]).is_none());
    }
}
