//! The files a listener's TLS state is made of, read once into memory.
//!
//! A reload reads every file (chains, keys, client CA bundle) into a
//! [`Sources`] snapshot, hashes it, and builds the new state from exactly
//! those bytes. The hash says whether anything changed, so a reload of
//! unchanged files is a no-op, and the state is never built from a file
//! that changed between hashing and parsing. Key bytes are wiped from
//! memory when the snapshot is dropped.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Context, SHA256};
use zeroize::Zeroizing;

use super::certs::{read_file, CertError};
use crate::config::{ClientAuthMode, ListenerConfig};

/// A SHA-256 over file paths and contents.
pub type Digest = [u8; 32];

/// One file's path and contents.
pub struct SourceFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it held.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl SourceFile {
    fn read(path: &Path, what: &str) -> Result<Self, CertError> {
        Ok(Self {
            path: path.to_path_buf(),
            bytes: Zeroizing::new(read_file(path, what)?),
        })
    }
}

/// The files a reload reads again: certificates, keys, the client CA
/// bundle, CRLs and the session ticket keys.
pub fn reloadable_files(listener: &ListenerConfig) -> Vec<PathBuf> {
    let tls = &listener.tls;
    let mut files = Vec::new();
    for c in &tls.certificates {
        files.push(c.cert.clone());
        files.push(c.key.clone());
    }
    files.extend(tls.client_auth.ca.clone());
    files.extend(tls.client_auth.crl.0.iter().cloned());
    files.extend(tls.session_ticket_keys.clone());
    files
}

/// Every file of one listener's TLS settings.
pub struct Sources {
    /// (chain, key) per configured certificate, in configuration order;
    /// `None` for an ACME entry whose certificate is not obtained yet.
    pub certs: Vec<Option<(SourceFile, SourceFile)>>,
    /// The client CA bundle, when client authentication is on.
    pub client_ca: Option<SourceFile>,
    /// Certificate revocation lists for client certificates.
    pub crls: Vec<SourceFile>,
    /// Session ticket keys shared between replicas.
    pub ticket_keys: Option<SourceFile>,
}

impl Sources {
    /// Reads every file the listener names. An ACME entry whose chain
    /// file does not exist yet is pending: its names are not served until
    /// the ACME manager writes it. Any other missing file is an error.
    pub fn read(listener: &ListenerConfig) -> Result<Self, CertError> {
        let mut certs = Vec::with_capacity(listener.tls.certificates.len());
        for c in &listener.tls.certificates {
            if c.acme.is_some() && !c.cert.exists() {
                certs.push(None);
                continue;
            }
            certs.push(Some((
                SourceFile::read(&c.cert, "certificate file")?,
                SourceFile::read(&c.key, "private key file")?,
            )));
        }
        let auth = &listener.tls.client_auth;
        let client_ca = match (auth.mode, &auth.ca) {
            (ClientAuthMode::None, _) | (_, None) => None,
            (_, Some(p)) => Some(SourceFile::read(p, "client CA bundle")?),
        };
        let mut crls = Vec::new();
        if auth.mode != ClientAuthMode::None {
            for p in &auth.crl.0 {
                crls.push(SourceFile::read(p, "CRL file")?);
            }
        }
        let ticket_keys = match (
            &listener.tls.session_ticket_keys,
            listener.tls.session_tickets,
        ) {
            (Some(p), true) => Some(SourceFile::read(p, "session ticket key file")?),
            _ => None,
        };
        Ok(Self {
            certs,
            client_ca,
            crls,
            ticket_keys,
        })
    }

    /// A hash of every file's path and contents.
    pub fn digest(&self) -> Digest {
        let mut ctx = Context::new(&SHA256);
        for entry in &self.certs {
            match entry {
                Some((c, k)) => {
                    feed(&mut ctx, c);
                    feed(&mut ctx, k);
                }
                None => ctx.update(b"pending"),
            }
        }
        if let Some(ca) = &self.client_ca {
            feed(&mut ctx, ca);
        }
        for crl in &self.crls {
            feed(&mut ctx, crl);
        }
        if let Some(k) = &self.ticket_keys {
            feed(&mut ctx, k);
        }
        finish(ctx)
    }

    /// A hash of the session ticket key file.
    pub fn ticket_keys_digest(&self) -> Digest {
        let mut ctx = Context::new(&SHA256);
        if let Some(k) = &self.ticket_keys {
            feed(&mut ctx, k);
        }
        finish(ctx)
    }

    /// A hash of the client CA bundle: when it changes, session tickets are
    /// replaced. (CRL changes need no new tickets: resumed sessions are
    /// checked against the current CRLs, see `listener`.)
    pub fn client_auth_digest(&self) -> Digest {
        let mut ctx = Context::new(&SHA256);
        if let Some(ca) = &self.client_ca {
            feed(&mut ctx, ca);
        }
        finish(ctx)
    }
}

fn feed(ctx: &mut Context, f: &SourceFile) {
    let path = f.path.as_os_str().as_encoded_bytes();
    ctx.update(&(path.len() as u64).to_be_bytes());
    ctx.update(path);
    ctx.update(&(f.bytes.len() as u64).to_be_bytes());
    ctx.update(&f.bytes);
}

fn finish(ctx: Context) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
