//! The soak's PKI, whose CA stays in memory so that the server
//! certificate can be renewed during the run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{CertificateParams, Issuer, KeyPair, SerialNumber};

use crate::pki::{localhost_server_params, self_signed_ca};

/// The test CA, and the server certificate it renews.
pub(crate) struct SoakPki {
    pub(crate) ca_params: CertificateParams,
    pub(crate) ca_key: KeyPair,
    pub(crate) ca_pem: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) serial: u64,
}

pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

impl SoakPki {
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_params, ca_key, ca_cert) = self_signed_ca("moat soak CA")?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem())?;
        let mut pki = Self {
            ca_params,
            ca_key,
            ca_pem,
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            serial: 0,
        };
        pki.renew()?;
        Ok(pki)
    }

    /// Issues a new server certificate with a new key and swaps both into
    /// place the way a renewal does: written next to the live files, then
    /// renamed over them (the key first). Returns the certificate's DER.
    pub(crate) fn renew(&mut self) -> Result<Vec<u8>> {
        self.serial += 1;
        let mut params = localhost_server_params()?;
        params.serial_number = Some(SerialNumber::from(1000 + self.serial));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        let tmp_key = self.key.with_extension("key.new");
        let tmp_cert = self.cert.with_extension("pem.new");
        write_private(&tmp_key, &key.serialize_pem())?;
        std::fs::write(&tmp_cert, cert.pem())?;
        std::fs::rename(&tmp_key, &self.key)?;
        std::fs::rename(&tmp_cert, &self.cert)?;
        Ok(cert.der().to_vec())
    }
}
