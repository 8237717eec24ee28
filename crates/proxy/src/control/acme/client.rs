//! One ACME order, start to finish, with `instant-acme`: the account
//! (created once, then reused from `account.json`), the HTTP-01 or
//! TLS-ALPN-01 challenges, a CSR for a fresh key of the configured type, and the
//! issued chain. Every failure comes back classified for the
//! `moat_acme_failures_total` reason, with the CA's problem document.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, Key, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::pki_types::PrivateKeyDer;
use tracing::info;
use zeroize::Zeroizing;

use super::http01::Tokens;
use super::store;
use crate::config::{AcmeChallenge, AcmeConfig, AcmeKeyType};
use crate::tls::acme_alpn::AlpnChallenges;

/// Where an order puts its challenge answers: the HTTP-01 listeners'
/// tokens, or the TLS listeners' TLS-ALPN-01 table.
#[derive(Clone, Copy)]
pub struct Responders<'a> {
    /// HTTP-01 tokens and key authorizations.
    pub http01: &'a Tokens,
    /// TLS-ALPN-01 challenge certificates, by name.
    pub tls_alpn01: &'a AlpnChallenges,
}

/// A challenge answer to take back when the order is over.
enum Answered {
    Token(String),
    Name(String),
}

/// Why an order failed: the metric's reason and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `directory_unreachable`, `order_refused`, `challenge_failed` or `other`.
    pub reason: &'static str,
    /// The CA's problem type and detail, or the transport error.
    pub message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// An `instant-acme` error at a stage: the CA's problem document is
    /// `refused` (or `challenge_failed` while validating); anything else
    /// before the CA answered is `unreachable`.
    fn of(e: instant_acme::Error, refused: &'static str, unreachable: &'static str) -> Self {
        match e {
            instant_acme::Error::Api(p) => Self::new(refused, problem_text(&p)),
            instant_acme::Error::Other(e) => Self::new(unreachable, e.to_string()),
            other => Self::new("other", other.to_string()),
        }
    }
}

fn problem_text(p: &instant_acme::Problem) -> String {
    format!(
        "ACME problem type {} detail {:?}",
        p.r#type.as_deref().unwrap_or("(none)"),
        p.detail.as_deref().unwrap_or("")
    )
}

/// The HTTP client for the directory: hyper-util over hyper-rustls,
/// trusting `ca_bundle` or the system roots (read once, at start-up,
/// before the sandbox), without connection reuse (orders are rare, and a
/// pooled connection would outlive the start-up runtime).
#[derive(Clone)]
pub struct AcmeHttp(HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl AcmeHttp {
    /// A client trusting the certificates in `ca_bundle`, or the system's.
    pub fn new(ca_bundle: Option<&std::path::Path>) -> Result<Self, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_bundle {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("{}: cannot read the CA bundle: {e}", path.display()))?;
                let certs = crate::tls::certs::parse_certificates(path, &bytes)
                    .map_err(|e| e.to_string())?;
                roots.add_parsable_certificates(certs);
                if roots.is_empty() {
                    return Err(format!("{}: no CA certificate in the file", path.display()));
                }
                builder.with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            None => builder
                .with_native_roots()
                .map_err(|e| format!("cannot read the system's CA certificates: {e}"))?,
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = HyperClient::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self(client))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        let fut = self.0.request(req);
        Box::pin(async move {
            match tokio::time::timeout(Duration::from_secs(30), fut).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    "request timed out after 30 s".into(),
                )),
            }
        })
    }
}

/// The account key of `acme.account_key`: a PKCS#8 ECDSA P-256 key, the
/// only account key type instant-acme signs with. Read at start-up (to
/// refuse a bad file at once) and at each order.
pub fn account_key(path: &std::path::Path) -> Result<(Key, PrivateKeyDer<'static>), String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?,
    );
    let key = crate::tls::certs::parse_private_key(path, &bytes).map_err(|e| e.to_string())?;
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        return Err(format!(
            "{}: not a PKCS#8 key; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`",
            path.display()
        ));
    };
    let signer = Key::from_pkcs8_der(pkcs8.clone_key()).map_err(|e| {
        format!(
            "{}: not an ECDSA P-256 key ({e}); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`",
            path.display()
        )
    })?;
    Ok((signer, PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The account: the one of `acme.account_key` when set (found, or
/// created, at the CA by its key), else the one of `cfg.state_dir`,
/// created (and stored, 0600) on first use.
pub async fn account(cfg: &AcmeConfig, http: &AcmeHttp) -> Result<Account, Failure> {
    if let Some(path) = &cfg.account_key {
        let key = account_key(path)
            .map_err(|e| Failure::new("other", format!("acme.account_key {e}")))?;
        // instant-acme's create_from_key sends neither contacts nor EAB:
        // such an account is registered with them beforehand (docs).
        let (account, _) = Account::builder_with_http(Box::new(http.clone()))
            .create_from_key(key, cfg.directory.clone())
            .await
            .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
        return Ok(account);
    }
    let file = store::account_file(&cfg.state_dir);
    if let Ok(text) = std::fs::read(&file).map(Zeroizing::new) {
        let creds: AccountCredentials = serde_json::from_slice(&text).map_err(|e| {
            Failure::new(
                "other",
                format!("{}: not an ACME account: {e}", file.display()),
            )
        })?;
        return Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(creds)
            .await
            .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"));
    }
    let eab = match &cfg.eab {
        Some(e) => Some(eab_key(&e.kid, &e.hmac_key_file)?),
        None => None,
    };
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, creds) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
    let json = Zeroizing::new(
        serde_json::to_vec(&creds).map_err(|e| Failure::new("other", e.to_string()))?,
    );
    store::write_private(&file, &json)
        .map_err(|e| Failure::new("other", format!("{}: {e}", file.display())))?;
    info!(account = account.id(), "ACME account created");
    Ok(account)
}

fn eab_key(kid: &str, file: &std::path::Path) -> Result<ExternalAccountKey, Failure> {
    use base64::Engine as _;
    let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
        Failure::new(
            "other",
            format!("acme.eab.hmac_key_file {}: {e}", file.display()),
        )
    })?);
    let key = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|_| {
                Failure::new(
                    "other",
                    format!("acme.eab.hmac_key_file {}: not base64url", file.display()),
                )
            })?,
    );
    Ok(ExternalAccountKey::new(kid.to_string(), &key))
}

/// A certificate obtained: its chain and private key, both PEM.
pub struct Issued {
    /// The chain, leaf first.
    pub chain: String,
    /// The private key (PKCS#8).
    pub key: Zeroizing<String>,
}

/// Orders a certificate for `cfg.domains`, answering `cfg.challenge`
/// through `responders`.
pub async fn order(
    cfg: &AcmeConfig,
    account: &Account,
    responders: Responders<'_>,
) -> Result<Issued, Failure> {
    let ids: Vec<Identifier> = cfg
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
    let mut answered = Vec::new();
    let result = async {
        let mut authz = order.authorizations();
        while let Some(a) = authz.next().await {
            let mut a = a.map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let kind = match cfg.challenge {
                AcmeChallenge::Http01 => ChallengeType::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut ch = a.challenge(kind).ok_or_else(|| {
                Failure::new(
                    "order_refused",
                    format!(
                        "the CA offers no {} challenge for this name",
                        cfg.challenge.as_str()
                    ),
                )
            })?;
            match cfg.challenge {
                AcmeChallenge::Http01 => {
                    responders
                        .http01
                        .insert(&ch.token, ch.key_authorization().as_str());
                    answered.push(Answered::Token(ch.token.clone()));
                }
                AcmeChallenge::TlsAlpn01 => {
                    let Identifier::Dns(name) = ch.identifier().identifier else {
                        return Err(Failure::new(
                            "order_refused",
                            "the CA asks to validate an identifier that is not a DNS name",
                        ));
                    };
                    let name = name.clone();
                    responders
                        .tls_alpn01
                        .insert(&name, ch.key_authorization().digest().as_ref())
                        .map_err(|e| Failure::new("other", e))?;
                    answered.push(Answered::Name(name));
                }
            }
            ch.set_ready()
                .await
                .map_err(|e| Failure::of(e, "challenge_failed", "directory_unreachable"))?;
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| Failure::of(e, "challenge_failed", "directory_unreachable"))?;
        if status != OrderStatus::Ready {
            return Err(challenge_problem(&mut order).await);
        }
        let (csr, key) = csr(&cfg.domains, cfg.key_type)?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| Failure::of(e, "order_refused", "directory_unreachable"))?;
        Ok(Issued { chain, key })
    }
    .await;
    for a in &answered {
        match a {
            Answered::Token(t) => responders.http01.remove(t),
            Answered::Name(n) => responders.tls_alpn01.remove(n),
        }
    }
    result
}

/// The problem of the first failed challenge of an invalid order.
async fn challenge_problem(order: &mut instant_acme::Order) -> Failure {
    let mut authz = order.authorizations();
    while let Some(Ok(a)) = authz.next().await {
        if let Some(p) = a.challenges.iter().find_map(|c| c.error.as_ref()) {
            return Failure::new("challenge_failed", problem_text(p));
        }
    }
    Failure::new("challenge_failed", "the order became invalid")
}

/// A CSR for `domains` and its fresh private key.
fn csr(domains: &[String], key_type: AcmeKeyType) -> Result<(Vec<u8>, Zeroizing<String>), Failure> {
    let fail = |e: rcgen::Error| Failure::new("other", format!("cannot make the CSR: {e}"));
    let key = match key_type {
        AcmeKeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        AcmeKeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        AcmeKeyType::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        AcmeKeyType::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
    }
    .map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(fail)?;
    Ok((csr.der().to_vec(), Zeroizing::new(key.serialize_pem())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrs_for_every_key_type() {
        let names = vec!["moat.test".to_string()];
        for t in [
            AcmeKeyType::EcdsaP256,
            AcmeKeyType::Rsa2048,
            AcmeKeyType::Ed25519,
        ] {
            let (der, key) = csr(&names, t).expect("csr");
            assert!(!der.is_empty());
            assert!(key.contains("PRIVATE KEY"));
        }
    }

    #[test]
    fn problems_become_reasons() {
        let p: instant_acme::Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","status":400}"#,
        )
        .unwrap();
        let f = Failure::of(
            instant_acme::Error::Api(p),
            "order_refused",
            "directory_unreachable",
        );
        assert_eq!(f.reason, "order_refused");
        assert!(f.message.contains("rejectedIdentifier"), "{}", f.message);
        let f = Failure::of(
            instant_acme::Error::Other("connection refused".into()),
            "order_refused",
            "directory_unreachable",
        );
        assert_eq!(f.reason, "directory_unreachable");
    }
}
