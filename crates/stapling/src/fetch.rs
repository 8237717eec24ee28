//! Querying the OCSP responder over HTTP. The certificate's own responder
//! (from its Authority Information Access extension) is queried with
//! ocsp-stapler's `Client`; a configured override URL with a request built
//! here the same way. The answer is returned as the DER bytes that will be
//! stapled, not yet verified.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use rasn::types::{Integer, OctetString, Oid};
use rasn_ocsp::{CertId, OcspRequest, OcspResponse, Request, TbsRequest};
use rasn_pkix::AlgorithmIdentifier;
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use x509_parser::num_bigint::BigInt;

use crate::cache::MAX_RESPONSE_SIZE;
use crate::cert::{key_hash, parse_cert, responder_url, CertIdHash};
use crate::config::StaplingConfig;

/// Why a query brought no response to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The certificate names no OCSP responder and none is configured.
    NoResponderUrl,
    /// The responder did not answer in time.
    Timeout(String),
    /// The connection or the HTTP exchange failed.
    Failed(String),
    /// The responder answered with an HTTP status other than 200.
    HttpStatus(String),
    /// The body is not an OCSP response.
    Malformed(String),
    /// The request could not be built from the certificates.
    BadCertificate(String),
    /// A bug: the query panicked. Caught so the stapler keeps running.
    Internal(String),
}

impl FetchError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoResponderUrl => "no_responder_url",
            Self::Timeout(_) => "timeout",
            Self::Failed(_) => "fetch_failed",
            Self::HttpStatus(_) => "http_status",
            Self::Malformed(_) => "malformed",
            Self::BadCertificate(_) => "bad_certificate",
            Self::Internal(_) => "internal",
        }
    }

    /// Every label [`FetchError::reason`] can return.
    pub const REASONS: &'static [&'static str] = &[
        "no_responder_url",
        "timeout",
        "fetch_failed",
        "http_status",
        "malformed",
        "bad_certificate",
        "internal",
    ];
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResponderUrl => f.write_str(
                "the certificate names no OCSP responder (no AIA OCSP URL) and no responder_url is set",
            ),
            Self::Timeout(d) => write!(f, "OCSP query timed out: {d}"),
            Self::Failed(d) => write!(f, "OCSP query failed: {d}"),
            Self::HttpStatus(d) => write!(f, "OCSP responder refused the query: {d}"),
            Self::Malformed(d) => write!(f, "OCSP responder sent no valid response: {d}"),
            Self::BadCertificate(d) => write!(f, "cannot build an OCSP request: {d}"),
            Self::Internal(d) => write!(f, "internal error during the OCSP query: {d}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Queries one responder; shared by a stapler's attempts.
pub(crate) struct Fetcher {
    client: ocsp_stapler::Client,
    http: reqwest::Client,
    /// The URL to query with this module's own request instead of
    /// ocsp-stapler's `Client`; see [`own_query_url`].
    own_url: Option<Url>,
}

/// When this module queries by itself rather than through
/// `ocsp_stapler::Client`:
/// * a configured `responder_url`: the `Client` always takes the URL from
///   the certificate;
/// * an AIA URL with a path not ending in '/' (such as
///   `http://ocsp.example.com/ca1`): the `Client` appends the request with
///   `Url::join`, which replaces the last path segment, and would query the
///   wrong URL.
fn own_query_url(
    responder_url: Option<&str>,
    aia_url: Option<&str>,
) -> Result<Option<Url>, FetchError> {
    if let Some(url) = responder_url {
        return Url::parse(url)
            .map(Some)
            .map_err(|e| FetchError::Internal(format!("responder_url {url:?} is not a URL: {e}")));
    }
    Ok(aia_url.and_then(|aia| Url::parse(aia).ok()).filter(|url| {
        let path = url.path();
        !path.is_empty() && !path.ends_with('/')
    }))
}

impl Fetcher {
    /// Builds the HTTP client with the configured timeouts.
    pub(crate) fn new(config: &StaplingConfig, aia_url: Option<&str>) -> Result<Self, FetchError> {
        let http = http_client(config.connect_timeout, config.request_timeout)?;
        Ok(Self {
            client: ocsp_stapler::Client::new_with_client(http.clone()),
            http,
            own_url: own_query_url(config.responder_url.as_deref(), aia_url)?,
        })
    }

    /// Queries the responder about `leaf` and returns the DER response.
    pub(crate) async fn fetch(&self, leaf: &[u8], issuer: &[u8]) -> Result<Vec<u8>, FetchError> {
        query(
            &self.client,
            &self.http,
            self.own_url.as_ref(),
            leaf,
            issuer,
        )
        .await
    }
}

/// Queries a responder about `leaf`: at `own_url` with this module's own
/// request, else with ocsp-stapler's `Client` at the certificate's URL.
///
/// ocsp-stapler decodes the response with rasn; it is re-encoded here,
/// and these re-encoded bytes are what gets verified and stapled. The
/// BasicOCSPResponse (the signed part) is an OCTET STRING inside, so it
/// is carried over byte for byte.
async fn query(
    client: &ocsp_stapler::Client,
    http: &reqwest::Client,
    own_url: Option<&Url>,
    leaf: &[u8],
    issuer: &[u8],
) -> Result<Vec<u8>, FetchError> {
    let response = match own_url {
        Some(url) => query_own(http, url, leaf, issuer).await?,
        None => client.query_raw(leaf, issuer).await.map_err(classify)?,
    };
    rasn::der::encode(&response)
        .map_err(|e| FetchError::Malformed(format!("cannot re-encode the response: {e}")))
}

/// The query to a URL ocsp-stapler's `Client` cannot handle (see
/// [`own_query_url`]). Its request builder is private, so the request
/// is built here the same way (SHA-1 CertID, no nonce: RFC 5019, which
/// Let's Encrypt requires) and sent with GET when it fits in 255 bytes
/// (base64 then percent-encoded, appended after a '/'), else POST.
async fn query_own(
    http: &reqwest::Client,
    url: &Url,
    leaf: &[u8],
    issuer: &[u8],
) -> Result<OcspResponse, FetchError> {
    let request = build_request(leaf, issuer)?;
    let builder = if request.len() <= 255 && url.query().is_none() {
        let encoded = BASE64_STANDARD
            .encode(&request)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let mut get = url.as_str().to_owned();
        if !get.ends_with('/') {
            get.push('/');
        }
        get.push_str(&encoded);
        let get = Url::parse(&get)
            .map_err(|e| FetchError::Failed(format!("cannot build the GET URL: {e}")))?;
        http.get(get)
    } else {
        http.post(url.clone())
            .header(CONTENT_TYPE, "application/ocsp-request")
            .body(request)
    };
    let mut response = builder.send().await.map_err(from_reqwest)?;
    if response.status() != StatusCode::OK {
        return Err(FetchError::HttpStatus(format!(
            "HTTP {} from {url}",
            response.status()
        )));
    }
    let body = read_body(&mut response, MAX_RESPONSE_SIZE).await?;
    rasn::der::decode::<OcspResponse>(&body)
        .map_err(|e| FetchError::Malformed(format!("cannot decode the OCSP response: {e}")))
}

/// The body of `response`, refused past `limit` bytes.
async fn read_body(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::Malformed(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The largest CRL fetched: a CA with a million revoked certificates
/// publishes about 40 MB; device CAs are far smaller.
pub const MAX_CRL_SIZE: u64 = 64 * 1024 * 1024;

/// Fetches certificate revocation lists over HTTP(S) by URL (a device
/// certificate's CRL distribution points), for the proxy's client
/// certificate checks. The bytes are returned as served (DER or PEM), not
/// yet parsed or verified.
#[derive(Clone)]
pub struct CrlClient {
    http: reqwest::Client,
}

impl std::fmt::Debug for CrlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrlClient").finish_non_exhaustive()
    }
}

impl CrlClient {
    /// A client allowing `connect` to connect and `request` for a whole
    /// download.
    pub fn new(connect: Duration, request: Duration) -> Result<Self, FetchError> {
        Ok(Self {
            http: http_client(connect, request)?,
        })
    }

    /// GETs the CRL at `url`: the body of a 200 answer, at most
    /// [`MAX_CRL_SIZE`] bytes.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let url =
            Url::parse(url).map_err(|e| FetchError::Failed(format!("bad CRL URL {url:?}: {e}")))?;
        let mut response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(from_reqwest)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::HttpStatus(format!(
                "HTTP {} from {url}",
                response.status()
            )));
        }
        read_body(&mut response, MAX_CRL_SIZE).await
    }
}

/// The HTTP client responders are queried with.
///
/// TLS (for the rare https:// responder) uses aws-lc-rs and the Mozilla
/// roots explicitly: reqwest would otherwise panic when the process has
/// not installed a default rustls `CryptoProvider`.
fn http_client(connect: Duration, request: Duration) -> Result<reqwest::Client, FetchError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Internal(format!("TLS client set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(connect)
        .timeout(request)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("moat-stapling/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Internal(format!("HTTP client set-up: {e}")))
}

/// Queries the OCSP responders of many certificates, each the one its own
/// Authority Information Access extension names, over one shared HTTP
/// client: for checking the certificates clients present, where the
/// stapler's [`Fetcher`] serves one certificate of our own.
///
/// The answer is the DER response, not yet verified: give it to
/// [`verify_response`](crate::verify_response) with the same certificates.
pub struct OcspClient {
    client: ocsp_stapler::Client,
    http: reqwest::Client,
}

impl std::fmt::Debug for OcspClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OcspClient").finish_non_exhaustive()
    }
}

impl OcspClient {
    /// A client allowing `connect` to connect to a responder and `request`
    /// for a whole query.
    pub fn new(connect: Duration, request: Duration) -> Result<Self, FetchError> {
        let http = http_client(connect, request)?;
        Ok(Self {
            client: ocsp_stapler::Client::new_with_client(http.clone()),
            http,
        })
    }

    /// Queries the responder `leaf` names (its first AIA OCSP URL) about
    /// it; `issuer` is the certificate that issued it. Fails with
    /// [`FetchError::NoResponderUrl`] when it names none.
    pub async fn query(&self, leaf: &[u8], issuer: &[u8]) -> Result<Vec<u8>, FetchError> {
        let aia = responder_url_of(leaf)?.ok_or(FetchError::NoResponderUrl)?;
        let own_url = own_query_url(None, Some(&aia))?;
        query(&self.client, &self.http, own_url.as_ref(), leaf, issuer).await
    }
}

/// The first AIA OCSP URL of a DER certificate.
///
/// Fails when the certificate cannot be parsed.
pub fn responder_url_of(leaf: &[u8]) -> Result<Option<String>, FetchError> {
    let cert = parse_cert(leaf, "leaf").map_err(FetchError::BadCertificate)?;
    Ok(responder_url(&cert))
}

/// A DER OCSPRequest for one certificate, with a SHA-1 CertID.
pub(crate) fn build_request(leaf_der: &[u8], issuer_der: &[u8]) -> Result<Vec<u8>, FetchError> {
    let leaf = parse_cert(leaf_der, "leaf").map_err(FetchError::BadCertificate)?;
    let issuer = parse_cert(issuer_der, "issuer").map_err(FetchError::BadCertificate)?;
    let req_cert = CertId {
        hash_algorithm: AlgorithmIdentifier {
            algorithm: Oid::ISO_IDENTIFIED_ORGANISATION_OIW_SECSIG_ALGORITHM_SHA1.to_owned(),
            parameters: None,
        },
        issuer_name_hash: OctetString::from(
            CertIdHash::Sha1.digest(leaf.issuer().as_raw()).as_ref(),
        ),
        issuer_key_hash: OctetString::from(key_hash(&issuer, CertIdHash::Sha1).as_ref()),
        serial_number: Integer::from(BigInt::from_signed_bytes_be(leaf.raw_serial())),
    };
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Integer::from(0),
            requestor_name: None,
            request_list: vec![Request {
                req_cert,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    rasn::der::encode(&request)
        .map_err(|e| FetchError::BadCertificate(format!("cannot encode the OCSP request: {e}")))
}

fn from_reqwest(e: reqwest::Error) -> FetchError {
    let message = error_chain(&e);
    if e.is_timeout() {
        FetchError::Timeout(message)
    } else {
        FetchError::Failed(message)
    }
}

/// `e` and its sources, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Sorts an ocsp-stapler error into a [`FetchError`].
fn classify(e: anyhow::Error) -> FetchError {
    // `{:#}` includes every cause.
    let message = format!("{e:#}");
    for cause in e.chain() {
        if let Some(re) = cause.downcast_ref::<reqwest::Error>() {
            return if re.is_timeout() {
                FetchError::Timeout(message)
            } else {
                FetchError::Failed(message)
            };
        }
    }
    // ocsp-stapler's own messages, with a safe default.
    if message.contains("HTTP code") {
        FetchError::HttpStatus(message)
    } else if message.contains("decode") {
        FetchError::Malformed(message)
    } else if message.contains("prepare OCSP request") {
        FetchError::BadCertificate(message)
    } else {
        FetchError::Failed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_builds_without_a_process_crypto_provider() {
        // Nothing in this unit-test binary installs a default provider.
        Fetcher::new(&StaplingConfig::default(), Some("http://ocsp.example.com")).unwrap();
    }

    #[test]
    fn client_for_many_certificates_needs_a_responder_url() {
        let client = OcspClient::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(client.query(b"x", b"y")).unwrap_err();
        assert_eq!(err.reason(), "bad_certificate");
        assert!(err.to_string().contains("leaf"), "{err}");
    }

    #[test]
    fn override_url_must_parse() {
        let config = StaplingConfig {
            responder_url: Some("not a url".into()),
            ..StaplingConfig::default()
        };
        assert_eq!(
            Fetcher::new(&config, None).err().unwrap().reason(),
            "internal"
        );
    }

    #[test]
    fn own_query_for_override_and_for_aia_paths_join_would_break() {
        let own = |over: Option<&str>, aia: Option<&str>| {
            own_query_url(over, aia).unwrap().map(|u| u.to_string())
        };
        assert_eq!(own(None, Some("http://ocsp.example.com")), None);
        assert_eq!(own(None, Some("http://ocsp.example.com/")), None);
        assert_eq!(own(None, Some("http://ocsp.example.com/ca1/")), None);
        assert_eq!(
            own(None, Some("http://ocsp.example.com/ca1")).as_deref(),
            Some("http://ocsp.example.com/ca1")
        );
        assert_eq!(
            own(Some("http://o.example/x"), Some("http://ocsp.example.com")).as_deref(),
            Some("http://o.example/x")
        );
        assert_eq!(own(None, Some("not a url")), None);
        assert_eq!(own(None, None), None);
    }

    #[test]
    fn request_needs_certificates() {
        assert_eq!(
            build_request(b"x", b"y").unwrap_err().reason(),
            "bad_certificate"
        );
    }

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            FetchError::NoResponderUrl,
            FetchError::Timeout(String::new()),
            FetchError::Failed(String::new()),
            FetchError::HttpStatus(String::new()),
            FetchError::Malformed(String::new()),
            FetchError::BadCertificate(String::new()),
            FetchError::Internal(String::new()),
        ];
        for e in &samples {
            assert!(FetchError::REASONS.contains(&e.reason()));
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(samples.len(), FetchError::REASONS.len());
    }

    #[test]
    fn stapler_errors_are_classified() {
        assert_eq!(
            classify(anyhow::anyhow!("Incorrect HTTP code: 500")).reason(),
            "http_status"
        );
        assert_eq!(
            classify(anyhow::anyhow!("unable to decode OcspResponse: x")).reason(),
            "malformed"
        );
        assert_eq!(classify(anyhow::anyhow!("other")).reason(), "fetch_failed");
    }
}
