//! A listener's `tls:` section: certificates, versions and suites, client
//! certificates, session tickets and OCSP stapling.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{HumanDuration, OneOrMany};
use crate::tls::allow::AllowRule;

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificates; picked by SNI, the first is the default.
    pub certificates: Vec<CertificateConfig>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<String>,
    /// A preset: `intermediate` (the default: TLS 1.2 and 1.3) or `modern`
    /// (TLS 1.3 only), after Mozilla's server-side TLS profiles.
    pub profile: Option<TlsProfile>,
    /// Optional allowlist of cipher suites (IANA or OpenSSL names).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Optional key exchange groups, in preference order.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Client certificates (mutual TLS).
    #[serde(default)]
    pub client_auth: ClientAuthConfig,
    /// Session resumption with tickets.
    #[serde(default = "default_true")]
    pub session_tickets: bool,
    /// Ticket keys shared between replicas, from a file (one base64 key of
    /// 48 bytes per line; the first encrypts, all decrypt).
    pub session_ticket_keys: Option<PathBuf>,
    /// ALPN protocols to accept, in preference order; empty accepts any
    /// client (ALPN is not negotiated).
    #[serde(default)]
    pub alpn: Vec<String>,
    /// Host names devices use to reach this listener. `moat check` and the
    /// start-up warn when no certificate covers one of them.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// OCSP stapling.
    #[serde(default)]
    pub ocsp: OcspConfig,
}

/// OCSP stapling of a listener's certificates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcspConfig {
    /// `auto`, `true` or `false`.
    #[serde(default)]
    pub stapling: Stapling,
    /// Query this responder instead of the certificates' own.
    pub responder_url: Option<String>,
    /// Refresh at this fraction of a response's validity.
    #[serde(default = "default_refresh_fraction")]
    pub refresh_fraction: f64,
    /// Keep the last good response per certificate here.
    pub cache_dir: Option<PathBuf>,
    /// Staple this DER file instead of querying (single-certificate
    /// listeners; see `certificates[].ocsp_file` otherwise).
    pub static_file: Option<PathBuf>,
}

impl Default for OcspConfig {
    fn default() -> Self {
        Self {
            stapling: Stapling::Auto,
            responder_url: None,
            refresh_fraction: default_refresh_fraction(),
            cache_dir: None,
            static_file: None,
        }
    }
}

fn default_refresh_fraction() -> f64 {
    0.5
}

/// Whether to staple OCSP responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stapling {
    /// Staple certificates that name an OCSP responder and come with their
    /// issuer; leave the others alone.
    #[default]
    Auto,
    /// Staple every certificate; warn loudly about those that cannot be.
    On,
    /// Never staple.
    Off,
}

impl<'de> Deserialize<'de> for Stapling {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Stapling;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("auto, true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Stapling, E> {
                Ok(if v { Stapling::On } else { Stapling::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Stapling, E> {
                match v {
                    "auto" => Ok(Stapling::Auto),
                    "true" | "on" | "yes" => Ok(Stapling::On),
                    "false" | "off" | "no" => Ok(Stapling::Off),
                    other => Err(E::custom(format!(
                        "invalid stapling {other:?}: use auto, true or false"
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Mozilla's server-side TLS profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsProfile {
    /// TLS 1.2 and 1.3, forward-secret AEAD suites: every client of the
    /// last several years. moat's default.
    Intermediate,
    /// TLS 1.3 only, for fleets whose every device speaks it.
    Modern,
}

impl TlsConfig {
    /// The lowest TLS version, from `min_version` or the profile.
    pub fn effective_min_version(&self) -> &str {
        match (&self.min_version, self.profile) {
            (Some(v), _) => v,
            (None, Some(TlsProfile::Modern)) => "1.3",
            _ => "1.2",
        }
    }
}

fn default_true() -> bool {
    true
}

/// One certificate chain and its private key: from files (`cert`, `key`)
/// or obtained by ACME (`acme`, whose `state_dir` then holds both files).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the chain, leaf first; set from `acme.state_dir` for
    /// an ACME entry.
    #[serde(default)]
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, SEC1 or PKCS#1).
    #[serde(default)]
    pub key: PathBuf,
    /// Obtain and renew this certificate by ACME instead.
    pub acme: Option<super::acme::AcmeConfig>,
    /// A DER OCSP response file to staple for this certificate, instead of
    /// querying a responder.
    pub ocsp_file: Option<PathBuf>,
}

/// Client certificate settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// `none`, `optional` or `required`.
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// PEM bundle of the CAs that issue device certificates.
    pub ca: Option<PathBuf>,
    /// Which verified devices may connect; empty admits every device the
    /// CA bundle verifies.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Certificate revocation lists (PEM or DER), one file or a list.
    #[serde(default)]
    pub crl: OneOrMany<PathBuf>,
    /// What to do with a CRL past its nextUpdate.
    #[serde(default)]
    pub expired_crl: ExpiredCrlPolicy,
    /// Ask each device certificate's OCSP responder (its AIA URL) whether
    /// it is revoked, after the handshake and before the broker.
    #[serde(default)]
    pub ocsp: ClientOcspMode,
    /// Time allowed for one OCSP query of a device certificate
    /// ([`ClientAuthConfig::ocsp_timeout`] gives the default).
    #[serde(rename = "ocsp_timeout")]
    pub ocsp_timeout_setting: Option<HumanDuration>,
    /// Keep each device's verified OCSP answer here too (one file per
    /// certificate, written atomically), so that a fleet reconnecting
    /// after a restart reuses them instead of asking the responder again.
    pub ocsp_cache_dir: Option<PathBuf>,
    /// Download the CRL each device certificate names (its CRL
    /// distribution points, over HTTP) and refuse a revoked device, after
    /// the handshake; the same modes as `ocsp` (`prefer`: fail open,
    /// `require`: fail closed).
    #[serde(default)]
    pub crl_distribution_points: ClientOcspMode,
    /// Time allowed for one CRL download
    /// ([`ClientAuthConfig::crl_fetch_timeout`] gives the default).
    #[serde(rename = "crl_fetch_timeout")]
    pub crl_fetch_timeout_setting: Option<HumanDuration>,
    /// How often live sessions are checked again against their OCSP answer
    /// and CRL distribution points (`0s`: only at connect;
    /// [`ClientAuthConfig::revocation_recheck`] gives the default).
    #[serde(rename = "revocation_recheck")]
    pub revocation_recheck_setting: Option<HumanDuration>,
}

impl ClientAuthConfig {
    /// The default of `ocsp_timeout`.
    pub const DEFAULT_OCSP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

    /// The default of `crl_fetch_timeout`.
    pub const DEFAULT_CRL_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    /// The default of `revocation_recheck`.
    pub const DEFAULT_REVOCATION_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

    /// How often live sessions are checked again for revocation: `None`
    /// when neither `ocsp` nor `crl_distribution_points` is on, or
    /// `revocation_recheck` is `0s`.
    pub fn revocation_recheck(&self) -> Option<std::time::Duration> {
        let online =
            self.ocsp != ClientOcspMode::Off || self.crl_distribution_points != ClientOcspMode::Off;
        let every = self
            .revocation_recheck_setting
            .map_or(Self::DEFAULT_REVOCATION_RECHECK, |d| d.0);
        (online && !every.is_zero()).then_some(every)
    }

    /// `crl_fetch_timeout`, or its default.
    pub fn crl_fetch_timeout(&self) -> std::time::Duration {
        self.crl_fetch_timeout_setting
            .map_or(Self::DEFAULT_CRL_FETCH_TIMEOUT, |d| d.0)
    }

    /// `ocsp_timeout`, or its default.
    pub fn ocsp_timeout(&self) -> std::time::Duration {
        self.ocsp_timeout_setting
            .map_or(Self::DEFAULT_OCSP_TIMEOUT, |d| d.0)
    }
}

/// Whether device certificates are checked with their OCSP responder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientOcspMode {
    /// No OCSP check (the default).
    #[default]
    Off,
    /// Refuse a device its responder says is revoked; let it in when the
    /// responder cannot be asked or gives no usable answer (fail open).
    Prefer,
    /// Let a device in only on a verified "good" answer (fail closed).
    Require,
}

impl fmt::Display for ClientOcspMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Prefer => "prefer",
            Self::Require => "require",
        })
    }
}

/// What to do when a CRL is past its nextUpdate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiredCrlPolicy {
    /// Refuse devices whose revocation status depends on an expired CRL.
    #[default]
    Deny,
    /// Keep using the expired CRL (logged).
    Allow,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; one that is sent must verify.
    Optional,
    /// A certificate is required and must verify.
    Required,
}

impl fmt::Display for ClientAuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        })
    }
}
