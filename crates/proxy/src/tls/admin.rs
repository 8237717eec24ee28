//! TLS on the admin endpoint: the server side (`admin.tls`: certificate,
//! key, and an optional CA bundle for client certificates) and the client
//! side moat's own CLI uses to reach it.
//!
//! Both are built from the same loading code as the data listeners
//! (`certs`, `client_auth`), so a bad file, a key that does not belong to
//! its certificate or an expired certificate gives the same error, and the
//! server side has the data listeners' default policy: TLS 1.2 and 1.3,
//! their suites and groups.
//!
//! The CLI does not verify the admin certificate against a CA: it reads
//! the same configuration file as `moat run` and trusts exactly the leaf
//! certificate in `admin.tls.cert` (a pin), which needs no CA, no host
//! name and works for a self-signed certificate. With `admin.tls.client_ca`
//! it presents `admin.tls.cli_cert`.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use zeroize::Zeroizing;

use super::certs::{self, read_file, CertError};
use super::client_auth;
use super::files::SourceFile;
use super::policy::TlsPolicy;
use super::resolver::SniResolver;
use crate::config::{AdminTlsConfig, ClientAuthConfig, ClientAuthMode};

/// Prefixes a file error with the admin field it came from.
fn in_field(field: &str, mut e: CertError) -> CertError {
    e.message = format!("{field}: {}", e.message);
    e
}

/// A certificate chain and key loaded and checked, named by their fields.
fn load_pair(
    (cert_field, cert): (&str, &std::path::Path),
    (key_field, key): (&str, &std::path::Path),
    provider: &CryptoProvider,
) -> Result<certs::LoadedCert, CertError> {
    let cert_bytes = read_file(cert, "certificate").map_err(|e| in_field(cert_field, e))?;
    let key_bytes =
        Zeroizing::new(read_file(key, "private key").map_err(|e| in_field(key_field, e))?);
    certs::load(
        cert,
        &cert_bytes,
        key,
        &key_bytes,
        provider,
        SystemTime::now(),
    )
    .map_err(|e| {
        let field = if e.file == key { key_field } else { cert_field };
        in_field(field, e)
    })
}

/// The admin endpoint's rustls configuration. With `client_ca`, client
/// certificates are verified against it: required in the handshake when
/// `require_client_cert`, otherwise asked for and, when sent, verified
/// (the endpoint then serves the health checks to clients without one).
pub fn server_config(
    tls: &AdminTlsConfig,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, CertError> {
    let policy = TlsPolicy::default_policy();
    let loaded = load_pair(
        ("admin.tls.cert", &tls.cert),
        ("admin.tls.key", &tls.key),
        &policy.provider,
    )?;
    let ca = match &tls.client_ca {
        Some(path) => Some(SourceFile {
            path: path.clone(),
            bytes: Zeroizing::new(
                read_file(path, "client CA bundle")
                    .map_err(|e| in_field("admin.tls.client_ca", e))?,
            ),
        }),
        None => None,
    };
    let auth = ClientAuthConfig {
        mode: if require_client_cert {
            ClientAuthMode::Required
        } else {
            ClientAuthMode::Optional
        },
        ca: tls.client_ca.clone(),
        ..ClientAuthConfig::default()
    };
    let verifier = client_auth::build(&auth, ca.as_ref(), &[], &policy.provider)
        .map_err(|e| in_field("admin.tls.client_ca", e))?
        .verifier;
    let builder = ServerConfig::builder_with_provider(policy.provider.clone())
        .with_protocol_versions(&policy.versions)
        .map_err(|e| CertError {
            file: tls.cert.clone(),
            message: format!("admin.tls: TLS policy is inconsistent: {e}"),
            hint: "this is a bug; please report it".into(),
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver::new(
        std::slice::from_ref(&loaded),
        &[],
    )));
    config.ignore_client_order = policy.server_order;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls configuration `moat healthcheck` and `moat connections` use
/// to reach an admin endpoint with `admin.tls`: the pinned leaf of
/// `admin.tls.cert` and, when configured, `admin.tls.cli_cert`.
pub fn client_config(tls: &AdminTlsConfig) -> Result<Arc<ClientConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let bytes = read_file(&tls.cert, "certificate").map_err(|e| in_field("admin.tls.cert", e))?;
    let leaf = certs::parse_certificates(&tls.cert, &bytes)
        .map_err(|e| in_field("admin.tls.cert", e))?
        .swap_remove(0);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError {
            file: tls.cert.clone(),
            message: format!("admin.tls: cannot build the client's TLS settings: {e}"),
            hint: "this is a bug; please report it".into(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedLeaf {
            leaf,
            provider: provider.clone(),
        }));
    let mut config = match (&tls.cli_cert, &tls.cli_key) {
        (Some(cert), Some(key)) => {
            let loaded = load_pair(
                ("admin.tls.cli_cert", cert),
                ("admin.tls.cli_key", key),
                &provider,
            )?;
            builder.with_client_cert_resolver(Arc::new(OneClientCert(loaded.key)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Trusts one certificate: the admin endpoint's own leaf.
#[derive(Debug)]
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the admin endpoint serves another certificate than admin.tls.cert (moat reads admin.tls at start-up: restart it after replacing the file)".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents the CLI's client certificate whenever one is asked for.
#[derive(Debug)]
struct OneClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn self_signed(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }

    fn tls(cert: PathBuf, key: PathBuf) -> AdminTlsConfig {
        AdminTlsConfig {
            cert,
            key,
            client_ca: None,
            cli_cert: None,
            cli_key: None,
        }
    }

    #[test]
    fn a_good_pair_builds_both_sides() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = self_signed(dir.path(), "admin");
        let mut t = tls(c.clone(), k);
        assert!(server_config(&t, true).is_ok());
        t.client_ca = Some(c);
        assert!(server_config(&t, true).is_ok());
        assert!(server_config(&t, false).is_ok());
        assert!(client_config(&t).is_ok());
    }

    #[test]
    fn file_errors_name_the_admin_field() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = self_signed(dir.path(), "admin");
        let (_, other_key) = self_signed(dir.path(), "other");
        let missing = dir.path().join("missing.pem");
        let e = server_config(&tls(missing.clone(), k.clone()), false).unwrap_err();
        assert!(e.message.starts_with("admin.tls.cert: cannot read"), "{e}");
        assert_eq!(e.file, missing);
        let e = server_config(&tls(c.clone(), other_key), false).unwrap_err();
        assert!(e.message.starts_with("admin.tls."), "{e}");
        let mut t = tls(c, k);
        t.client_ca = Some(missing);
        let e = server_config(&t, true).unwrap_err();
        assert!(
            e.message.starts_with("admin.tls.client_ca: cannot read"),
            "{e}"
        );
        t.client_ca = None;
        t.cli_cert = Some(t.cert.clone());
        t.cli_key = Some(dir.path().join("no.key"));
        let e = client_config(&t).unwrap_err();
        assert!(
            e.message.starts_with("admin.tls.cli_key: cannot read"),
            "{e}"
        );
    }
}
