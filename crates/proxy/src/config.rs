//! The configuration file: its schema, parsing and validation.
//!
//! This module owns the user-facing contract documented in
//! `docs/configuration.md`. It turns YAML text into typed structs and checks
//! everything that can be checked without touching the network or the
//! certificate files: unknown keys (with a "did you mean"), value ranges,
//! duplicate names and addresses, TLS policy names, log filters. Paths are
//! resolved relative to the directory of the configuration file. Input that
//! would take unbounded time or memory is refused before it can: YAML
//! aliases that expand too far, log filters that compile regexes.
//!
//! It does no I/O beyond reading the configuration file itself, so that the
//! validation rules can be unit-tested and fuzzed.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mqtt::acl::AclRule;
use crate::tls::allow::AllowRule;
use crate::tls::policy::{self, TlsPolicy};

/// Default listener connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

/// One problem found in a configuration file.
///
/// It always names the file; it names the field (as a path such as
/// `listeners[0].tls.certificates[1].key`) or the line when it can, and
/// carries a hint that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file (or the file it names) the problem is in.
    pub file: PathBuf,
    /// Where in the file: a field path, possibly with a line and column.
    pub location: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl ConfigError {
    /// A problem at a field of the configuration file.
    pub fn at(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            location: Some(field.into()),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint that says what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(location) = &self.location {
            write!(f, ": {location}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// All the problems found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// A duration written the human way: `10s`, `500ms`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, rather than parsing after the fact, so that the error
        // is raised inside the field and its path names the field.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 500ms or 2m")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {text:?} ({e}); write it with a unit, like 10s, 500ms or 2m"
                        ))
                    })
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; write {n}s or {n}ms"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{n} is not a duration; write it like 10s"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The whole configuration file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin HTTP listener (`/healthz`, `/readyz`, `/metrics`); absent means none.
    pub admin: Option<AdminConfig>,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Development conveniences (the quickstart's generated certificates).
    #[serde(default)]
    pub development: DevelopmentConfig,
    /// Certificate reloading.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// After binding every port, switch to this user (by name or numeric
    /// id). Needs moat to start as root.
    pub user: Option<String>,
    /// The group to switch to; default: the user's primary group.
    pub group: Option<String>,
    /// Restrictions moat places on itself after start-up.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// The TLS listeners.
    pub listeners: Vec<ListenerConfig>,
}

/// The admin HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `127.0.0.1:9090`.
    pub listen: SocketAddr,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a full filter
    /// directive; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::Text,
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Graceful shutdown on SIGTERM or SIGINT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long live connections may keep going after the listeners close.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// How certificate changes are noticed. SIGHUP and `POST /reload` always
/// work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch the directories of every configured file for changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last file event before reloading, so that a
    /// certificate and key written one after the other load together.
    #[serde(default = "default_debounce")]
    pub debounce: HumanDuration,
    /// Also compare file contents this often, for filesystems without
    /// change events; `0s` turns it off.
    #[serde(default = "default_check_interval")]
    pub check_interval: HumanDuration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: default_debounce(),
            check_interval: default_check_interval(),
        }
    }
}

fn default_debounce() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

fn default_check_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// Restrictions moat places on itself once started.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// The Landlock file-access sandbox (Linux 5.13 and later).
    #[serde(default)]
    pub landlock: LandlockMode,
}

/// Whether to confine file access with Landlock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockMode {
    /// No sandbox.
    #[default]
    Off,
    /// Sandbox where the kernel supports Landlock; where it does not, run
    /// without and say so.
    BestEffort,
    /// Refuse to start where the kernel cannot enforce the sandbox.
    Required,
}

/// Development conveniences. Never use these in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevelopmentConfig {
    /// Generate a development CA and server certificates for every
    /// configured certificate whose files do not exist yet.
    #[serde(default)]
    pub generate_certificates: bool,
}

/// One TLS listener in front of one backend broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A short unique name, used in logs and metric labels.
    pub name: String,
    /// Address to accept TLS connections on.
    pub listen: SocketAddr,
    /// The plaintext broker, as `host:port`.
    pub backend: String,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Connections beyond this many are refused at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The listen socket's accept backlog.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// Limits on handshakes and per source address.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Report not ready after this many backend failures in a row (0: never).
    #[serde(default)]
    pub unready_after_backend_failures: u32,
    /// Send a PROXY protocol header to the backend first.
    #[serde(default)]
    pub backend_proxy_protocol: ProxyProtocol,
    /// MQTT awareness; absent, the relay is an opaque byte pipe. A bare
    /// `mqtt:` turns it on with the defaults.
    #[serde(default, deserialize_with = "mqtt_section")]
    pub mqtt: Option<MqttConfig>,
    /// SNI routes to other backends, each with its own TLS settings; the
    /// listener's own `backend` and `tls` serve every other name.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Set on the listeners made from routes: which listener they belong
    /// to and which names select them.
    #[serde(skip)]
    pub route: Option<RouteOf>,
}

/// One SNI route of a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A short name, unique in the listener (letters, digits, `-`, `_`).
    pub name: String,
    /// The names (exact, or `*.example.com`) that select this route.
    pub server_names: Vec<String>,
    /// The broker for this route.
    pub backend: String,
    /// TLS settings for this route.
    pub tls: TlsConfig,
    /// PROXY protocol to this route's backend.
    #[serde(default)]
    pub backend_proxy_protocol: ProxyProtocol,
    /// MQTT awareness for this route.
    #[serde(default, deserialize_with = "mqtt_section")]
    pub mqtt: Option<MqttConfig>,
}

/// What makes a listener a route of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOf {
    /// The listener that accepts the connections.
    pub parent: String,
    /// The names that select this route, lower case.
    pub server_names: Vec<String>,
    /// Where it is in the file, e.g. `listeners[0].routes[1]`.
    pub field: String,
}

/// Turns each route into a listener of its own (named `parent/route`,
/// sharing the parent's address, timeouts and limits), placed after its
/// parent, so that every later stage treats routes like listeners.
fn expand_routes(config: &mut Config) {
    let mut out = Vec::with_capacity(config.listeners.len());
    for (i, mut l) in std::mem::take(&mut config.listeners)
        .into_iter()
        .enumerate()
    {
        let routes = std::mem::take(&mut l.routes);
        let parent = l.clone();
        out.push(l);
        for (k, r) in routes.into_iter().enumerate() {
            out.push(ListenerConfig {
                name: format!("{}/{}", parent.name, r.name),
                backend: r.backend,
                tls: r.tls,
                backend_proxy_protocol: r.backend_proxy_protocol,
                mqtt: r.mqtt,
                routes: Vec::new(),
                route: Some(RouteOf {
                    parent: parent.name.clone(),
                    server_names: r
                        .server_names
                        .iter()
                        .map(|n| n.to_ascii_lowercase())
                        .collect(),
                    field: format!("listeners[{i}].routes[{k}]"),
                }),
                ..parent.clone()
            });
        }
    }
    config.listeners = out;
}

fn mqtt_section<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MqttConfig>, D::Error> {
    Ok(Some(
        Option::<MqttConfig>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// MQTT awareness of a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The first packet must be a CONNECT within this time.
    #[serde(default = "default_mqtt_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Largest packet a client may send, in bytes.
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: u32,
    /// Which certificate field is the device's identity.
    #[serde(default)]
    pub identity: IdentitySource,
    /// How the client id must relate to the identity.
    #[serde(default)]
    pub client_id: ClientIdPolicy,
    /// What username the broker sees.
    #[serde(default)]
    pub username: UsernamePolicy,
    /// What a denied PUBLISH or SUBSCRIBE gets.
    #[serde(default)]
    pub on_deny: OnDeny,
    /// Topic ACL rules; absent, every topic is allowed.
    pub acl: Option<Vec<AclRule>>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            connect_timeout: default_mqtt_connect_timeout(),
            max_packet_size: default_max_packet_size(),
            identity: IdentitySource::default(),
            client_id: ClientIdPolicy::default(),
            username: UsernamePolicy::default(),
            on_deny: OnDeny::default(),
            acl: None,
        }
    }
}

fn default_mqtt_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_max_packet_size() -> u32 {
    1024 * 1024
}

/// The certificate field that names the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The subject common name.
    #[default]
    CommonName,
    /// The first SAN URI (a SPIFFE ID, say).
    Uri,
    /// The first SAN DNS name.
    Dns,
    /// The whole subject, like Mosquitto's `use_subject_as_username`.
    Subject,
}

/// How the CONNECT's client id must relate to the identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdPolicy {
    /// Any client id.
    #[default]
    Any,
    /// Exactly the identity.
    EqualToIdentity,
    /// The identity, optionally followed by more (`sensor-7`, `sensor-7/ota`).
    PrefixedByIdentity,
}

/// The username the broker sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernamePolicy {
    /// Whatever the client sent.
    #[default]
    Passthrough,
    /// The identity; the client's username and password are dropped.
    Identity,
}

/// What a denied PUBLISH or SUBSCRIBE gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeny {
    /// Mosquitto's behaviour: dropped, but acknowledged (PUBACK/PUBREC, a
    /// failure code in the SUBACK); the connection stays.
    #[default]
    Acknowledge,
    /// The connection is closed (MQTT 5: DISCONNECT 0x87 first).
    Disconnect,
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_backlog() -> u32 {
    4096
}

/// Per-listener limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// TLS handshakes in progress at once.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// Connections one source address may have open (0: no limit).
    #[serde(default = "default_per_ip_connections")]
    pub per_ip_connections: u32,
    /// New connections per second one source address may open, with bursts
    /// of twice that (0: no limit).
    #[serde(default = "default_per_ip_rate")]
    pub per_ip_rate: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_handshakes: default_max_handshakes(),
            per_ip_connections: default_per_ip_connections(),
            per_ip_rate: default_per_ip_rate(),
        }
    }
}

fn default_max_handshakes() -> usize {
    8192
}

fn default_per_ip_connections() -> u32 {
    10_000
}

fn default_per_ip_rate() -> f64 {
    1000.0
}

/// Per-listener timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Time allowed for a TLS handshake, from accept to finished.
    #[serde(default = "default_handshake_timeout")]
    pub handshake: HumanDuration,
    /// Time allowed to connect to the backend (retries included).
    #[serde(default = "default_connect_timeout")]
    pub connect: HumanDuration,
    /// Close a connection with no traffic either way for this long (`0s`:
    /// never). MQTT-aware listeners use 1.5 times the client's keep-alive
    /// instead, like a broker.
    #[serde(default = "zero_duration")]
    pub idle: HumanDuration,
    /// TCP keep-alive probes on client connections after this much silence,
    /// so vanished devices are noticed (`0s`: off).
    #[serde(default = "default_tcp_keepalive")]
    pub tcp_keepalive: HumanDuration,
}

fn zero_duration() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

fn default_tcp_keepalive() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            handshake: default_handshake_timeout(),
            connect: default_connect_timeout(),
            idle: zero_duration(),
            tcp_keepalive: default_tcp_keepalive(),
        }
    }
}

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// TLS settings of a listener.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// One certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// A DER OCSP response file to staple for this certificate, instead of
    /// querying a responder.
    pub ocsp_file: Option<PathBuf>,
}

/// Client certificate settings.
#[derive(Debug, Clone, Default, Deserialize)]
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
}

/// A value written either alone or as a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Many(Vec<T>),
            One(T),
        }
        match Either::deserialize(d) {
            Ok(Either::Many(v)) => Ok(Self(v)),
            Ok(Either::One(x)) => Ok(Self(vec![x])),
            Err(_) => Err(serde::de::Error::custom(
                "expected a file name or a list of file names",
            )),
        }
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

/// Whether and how the backend hears who the client is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Plain bytes only.
    #[default]
    None,
    /// PROXY protocol v1 (text): the client address.
    V1,
    /// PROXY protocol v2 (binary): the client address and TLS details.
    V2,
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

/// A configuration that parsed and passed every check that needs no files.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The configuration file.
    pub path: PathBuf,
    /// The settings as written, with relative paths resolved.
    pub config: Config,
    /// The TLS policy of each listener, in the same order as `listeners`.
    pub policies: Vec<TlsPolicy>,
}

impl ValidConfig {
    /// The listeners with their TLS policies.
    pub fn listeners(&self) -> impl Iterator<Item = (&ListenerConfig, &TlsPolicy)> {
        self.config.listeners.iter().zip(self.policies.iter())
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<ValidConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        location: None,
        message: format!("cannot read the configuration file: {e}"),
        hint: Some(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "check the path given to --config; relative paths start from the current directory"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "make the file readable by the user moat runs as".to_string()
            }
            _ => "check that the path names a readable text file".to_string(),
        }),
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text. `path` names the file in
/// messages and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<ValidConfig, ConfigErrors> {
    check_alias_expansion(path, text)?;
    let de = serde_yaml::Deserializer::from_str(text);
    let mut config: Config =
        serde_path_to_error::deserialize(de).map_err(|e| yaml_error(path, &e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    expand_routes(&mut config);
    resolve_paths(&mut config, base);
    let policies = validate(path, &config)?;
    Ok(ValidConfig {
        path: path.to_path_buf(),
        config,
        policies,
    })
}

/// How much YAML aliases may add to a configuration beyond the file's own
/// length, counting one per value plus the bytes of each string.
///
/// Each alias (`*name`) repeats the whole value of its anchor (`&name`), so
/// nested ones multiply: a few kilobytes can stand for gigabytes (the
/// "billion laughs"). serde_yaml's own repetition limit counts alias jumps,
/// not what they repeat, and lets a 3 KB file grow past 2 GB.
const MAX_ALIAS_EXPANSION: usize = 1 << 18;

/// Refuses a document whose aliases expand it by more than
/// [`MAX_ALIAS_EXPANSION`], by walking it once, aliases expanded, without
/// keeping anything. The walk takes any kind of value, so it stops early
/// only on a YAML error (syntax, nesting, serde_yaml's own repetition
/// limit), which the real parse then reports with the field.
fn check_alias_expansion(path: &Path, text: &str) -> Result<(), ConfigError> {
    // Only an anchor (&name) and its aliases (*name) can expand a document.
    if !(text.contains('&') && text.contains('*')) {
        return Ok(());
    }
    let budget = Budget {
        left: std::cell::Cell::new(text.len().saturating_add(MAX_ALIAS_EXPANSION)),
        spent: std::cell::Cell::new(false),
    };
    match serde::de::DeserializeSeed::deserialize(&budget, serde_yaml::Deserializer::from_str(text))
    {
        Err(e) if budget.spent.get() => Err(ConfigError {
            file: path.to_path_buf(),
            location: e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column())),
            message: format!(
                "YAML aliases expand this file by more than {MAX_ALIAS_EXPANSION} values and bytes"
            ),
            hint: Some(
                "each alias (*name) repeats the whole value of its anchor (&name); write the values out, or do not nest aliases"
                    .to_string(),
            ),
        }),
        _ => Ok(()),
    }
}

/// What is left of the expansion budget, and whether it ran out.
struct Budget {
    left: std::cell::Cell<usize>,
    spent: std::cell::Cell<bool>,
}

impl Budget {
    fn spend<E: serde::de::Error>(&self, cost: usize) -> Result<(), E> {
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.spent.set(true);
                Err(E::custom("alias expansion limit"))
            }
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &Budget {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &Budget {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(1)
    }
    // serde_yaml gives integers beyond 64 bits to these two, whose default
    // is an error: it would end the walk unspent and let a bomb after such
    // a value through (found reviewing fuzz/fuzz_targets/config_loader.rs's
    // fix). The other defaults forward to the methods here.
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(v.len().saturating_add(1))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(v.len().saturating_add(1))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(1)?;
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag value`): the tag, then the value.
        let ((), variant) = data.variant_seed(self)?;
        serde::de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

fn resolve_paths(config: &mut Config, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for l in &mut config.listeners {
        for c in &mut l.tls.certificates {
            resolve(&mut c.cert);
            resolve(&mut c.key);
            if let Some(f) = &mut c.ocsp_file {
                resolve(f);
            }
        }
        if let Some(d) = &mut l.tls.ocsp.cache_dir {
            resolve(d);
        }
        if let Some(k) = &mut l.tls.session_ticket_keys {
            resolve(k);
        }
        if let Some(f) = &mut l.tls.ocsp.static_file {
            resolve(f);
        }
        if let Some(ca) = &mut l.tls.client_auth.ca {
            resolve(ca);
        }
        for crl in &mut l.tls.client_auth.crl.0 {
            resolve(crl);
        }
    }
}

/// Turns a serde_yaml error into one that names the file, the field and the
/// line, and suggests the closest known key for a misspelt one.
fn yaml_error(path: &Path, e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigErrors {
    let inner = e.inner();
    let text = inner.to_string();
    // serde_yaml writes "[<field path>: ]<message>[ at line L column C]".
    let body = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let message = match body.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => m.to_string(),
        _ => body.to_string(),
    };
    let field = e.path().to_string();
    let field = (!field.is_empty() && field != ".").then_some(field);
    let line = inner
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()));
    let location = match (field, line) {
        (Some(f), Some(l)) => Some(format!("{f} ({l})")),
        (Some(f), None) => Some(f),
        (None, l) => l,
    };
    let hint = unknown_field_hint(&message).or_else(|| {
        if message.contains("missing field") {
            Some("see docs/configuration.md for the required keys".to_string())
        } else if message.contains("unknown variant") {
            Some("use one of the values listed".to_string())
        } else {
            None
        }
    });
    ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        location,
        message,
        hint,
    }])
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", suggests the
/// closest expected name.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    // Abbreviations people bring from OpenSSL and other proxies.
    let alias = match unknown {
        "cn" | "CN" | "commonName" => Some("common_name"),
        "ou" | "OU" => Some("organizational_unit"),
        "san" | "dns_name" => Some("dns"),
        "fingerprint" | "sha256" | "pin" => Some("certificate_sha256"),
        "spki" | "pubkey_sha256" => Some("spki_sha256"),
        "crls" | "crl_file" => Some("crl"),
        "cafile" | "ca_file" | "ca_cert" => Some("ca"),
        "certfile" => Some("cert"),
        "keyfile" => Some("key"),
        "ciphers" => Some("cipher_suites"),
        "tls_version" => Some("min_version"),
        "port" | "bind" | "address" => Some("listen"),
        "upstream" | "target" | "broker" => Some("backend"),
        _ => None,
    };
    if let Some(a) = alias.filter(|a| expected.contains(a)) {
        return Some(format!("did you mean `{a}`?"));
    }
    let best = expected
        .iter()
        .map(|c| (strsim::damerau_levenshtein(unknown, c), *c))
        .min()?;
    if best.0 <= 3 || best.1.contains(unknown) || unknown.contains(best.1) {
        Some(format!("did you mean `{}`?", best.1))
    } else {
        Some(format!("valid keys here: {}", expected.join(", ")))
    }
}

/// Checks the rules that serde cannot express. Returns every problem found,
/// not just the first.
fn validate(path: &Path, config: &Config) -> Result<Vec<TlsPolicy>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut policies = Vec::new();

    if config.listeners.is_empty() {
        errors.push(
            ConfigError::at(path, "listeners", "no listeners are configured")
                .hint("add at least one entry under `listeners:`; see config/example.yaml"),
        );
    }

    if filters_fields_by_value(&config.log.level) {
        errors.push(
            ConfigError::at(
                path,
                "log.level",
                format!(
                    "{:?} filters span fields by value, which is not accepted here: each value is compiled into an automaton of unbounded size, so a short one can take minutes and gigabytes",
                    config.log.level
                ),
            )
            .hint("filter by target or span name instead, e.g. info,moat::listener=debug"),
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        errors.push(
            ConfigError::at(
                path,
                "log.level",
                format!("invalid level {:?}: {e}", config.log.level),
            )
            .hint("use error, warn, info, debug or trace"),
        );
    }

    for (field, value) in [("user", &config.user), ("group", &config.group)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errors.push(
                ConfigError::at(path, field, "is empty")
                    .hint("name an account such as moat (or a numeric id), or remove the key"),
            );
        }
    }
    if config.group.is_some() && config.user.is_none() {
        errors.push(
            ConfigError::at(path, "group", "is set without user")
                .hint("set user as well; moat switches group and user together"),
        );
    }

    if config.reload.debounce.0 > Duration::from_secs(60) {
        errors.push(
            ConfigError::at(path, "reload.debounce", "must be at most 60s")
                .hint("a long debounce delays every certificate rotation; 500ms is the default"),
        );
    }
    let interval = config.reload.check_interval.0;
    if !interval.is_zero() && interval < Duration::from_secs(1) {
        errors.push(
            ConfigError::at(
                path,
                "reload.check_interval",
                "must be 0s (off) or at least 1s",
            )
            .hint("the check reads every certificate file; 60s is the default"),
        );
    }

    let mut names: HashMap<&str, usize> = HashMap::new();
    // Where each listener is in the file (routes were expanded into
    // listeners of their own, after their parent).
    let mut top = 0usize;
    let prefixes: Vec<String> = config
        .listeners
        .iter()
        .map(|l| match &l.route {
            Some(r) => r.field.clone(),
            None => {
                top += 1;
                format!("listeners[{}]", top - 1)
            }
        })
        .collect();
    for (i, l) in config.listeners.iter().enumerate() {
        let prefix = &prefixes[i];
        let at = |field: &str| format!("{prefix}.{field}");
        if let Some(r) = &l.route {
            check_route(path, prefix, l, r, config, &mut errors);
        } else if !valid_name(&l.name) {
            errors.push(
                ConfigError::at(path, at("name"), format!("invalid name {:?}", l.name))
                    .hint("use 1 to 64 letters, digits, '-' or '_'; it appears in metric labels"),
            );
        }
        if let Some(j) = names.insert(&l.name, i) {
            errors.push(
                ConfigError::at(
                    path,
                    at("name"),
                    format!(
                        "listener name {:?} is already used by listeners[{j}]",
                        l.name
                    ),
                )
                .hint("give each listener its own name"),
            );
        }
        for (j, other) in config.listeners[..i].iter().enumerate() {
            // Routes share their listener's address by design.
            if l.route.is_some() || other.route.is_some() {
                continue;
            }
            if addresses_clash(l.listen, other.listen) {
                errors.push(
                    ConfigError::at(
                        path,
                        at("listen"),
                        format!(
                            "{} clashes with {} ({:?}) on {}",
                            l.listen, prefixes[j], other.name, other.listen
                        ),
                    )
                    .hint("two listeners cannot share an address and port; change one port"),
                );
            }
        }
        if let Some(admin) = &config.admin {
            if addresses_clash(l.listen, admin.listen) {
                errors.push(
                    ConfigError::at(
                        path,
                        at("listen"),
                        format!("{} clashes with admin.listen {}", l.listen, admin.listen),
                    )
                    .hint("the admin endpoint needs a port of its own"),
                );
            }
        }
        if let Err(msg) = check_host_port(&l.backend) {
            errors.push(
                ConfigError::at(path, at("backend"), msg)
                    .hint("write the broker as host:port, e.g. 127.0.0.1:1883"),
            );
        }
        if l.tls.certificates.is_empty() {
            errors.push(
                ConfigError::at(
                    path,
                    at("tls.certificates"),
                    "no certificates are configured",
                )
                .hint("add at least one `- cert: ... key: ...` entry"),
            );
        }
        if l.max_connections == 0 {
            errors.push(
                ConfigError::at(path, at("max_connections"), "must be at least 1")
                    .hint("remove it to use the default of 50000"),
            );
        }
        if l.limits.max_handshakes == 0 {
            errors.push(
                ConfigError::at(path, at("limits.max_handshakes"), "must be at least 1")
                    .hint("remove it to use the default of 8192"),
            );
        }
        if !(l.limits.per_ip_rate >= 0.0 && l.limits.per_ip_rate.is_finite()) {
            errors.push(
                ConfigError::at(
                    path,
                    at("limits.per_ip_rate"),
                    "must be a number of connections per second, 0 or more",
                )
                .hint("0 turns the limit off; the default is 1000"),
            );
        }
        if l.backlog == 0 || l.backlog > 65_535 {
            errors.push(
                ConfigError::at(path, at("backlog"), "must be between 1 and 65535")
                    .hint("remove it to use the default of 4096"),
            );
        }
        for (field, d) in [
            ("timeouts.handshake", l.timeouts.handshake),
            ("timeouts.connect", l.timeouts.connect),
        ] {
            if d.0.is_zero() {
                errors.push(
                    ConfigError::at(path, at(field), "must be longer than zero")
                        .hint("a timeout of zero would refuse every connection"),
                );
            }
        }
        let ca = &l.tls.client_auth;
        match (ca.mode, &ca.ca) {
            (ClientAuthMode::None, Some(_)) => errors.push(
                ConfigError::at(
                    path,
                    at("tls.client_auth.ca"),
                    "a client CA is set but client_auth.mode is none, so it would be ignored",
                )
                .hint("set client_auth.mode to required or optional, or remove ca"),
            ),
            (ClientAuthMode::Optional | ClientAuthMode::Required, None) => errors.push(
                ConfigError::at(
                    path,
                    at("tls.client_auth.ca"),
                    format!("client_auth.mode is {} but no CA bundle is given", ca.mode),
                )
                .hint("set ca to the PEM bundle of the CA that issues your device certificates"),
            ),
            _ => {}
        }
        if ca.mode == ClientAuthMode::None {
            for (field, set) in [
                ("allow", !ca.allow.is_empty()),
                ("crl", !ca.crl.0.is_empty()),
            ] {
                if set {
                    errors.push(
                        ConfigError::at(
                            path,
                            at(&format!("tls.client_auth.{field}")),
                            format!("{field} is set but client_auth.mode is none, so it would be ignored"),
                        )
                        .hint("set client_auth.mode to required (or optional) with a ca bundle"),
                    );
                }
            }
        }
        for (k, rule) in ca.allow.iter().enumerate() {
            for problem in rule.problems() {
                errors.push(
                    ConfigError::at(path, at(&format!("tls.client_auth.allow[{k}]")), problem)
                        .hint("see docs/device-identity.md for allow-list rules"),
                );
            }
        }
        if let Some(m) = &l.mqtt {
            check_mqtt(path, prefix, m, ca.mode, &mut errors);
        }
        check_ocsp(path, prefix, l, &mut errors);
        if l.tls.session_ticket_keys.is_some() && !l.tls.session_tickets {
            errors.push(
                ConfigError::at(
                    path,
                    at("tls.session_ticket_keys"),
                    "session_tickets is false, so the ticket keys would be ignored",
                )
                .hint("remove session_ticket_keys, or set session_tickets: true"),
            );
        }
        for (k, proto) in l.tls.alpn.iter().enumerate() {
            if proto.is_empty() || proto.len() > 255 {
                errors.push(
                    ConfigError::at(
                        path,
                        at(&format!("tls.alpn[{k}]")),
                        "an ALPN protocol name must be 1 to 255 bytes",
                    )
                    .hint("for MQTT, use \"mqtt\""),
                );
            }
        }
        if l.tls.profile == Some(TlsProfile::Modern)
            && l.tls
                .min_version
                .as_deref()
                .is_some_and(|v| v.trim_start_matches(|c: char| !c.is_ascii_digit()) != "1.3")
        {
            errors.push(
                ConfigError::at(
                    path,
                    at("tls.min_version"),
                    "profile modern means TLS 1.3 only, but min_version allows older versions",
                )
                .hint("remove min_version, or use profile: intermediate"),
            );
        }
        match policy::build(
            l.tls.effective_min_version(),
            &l.tls.cipher_suites,
            &l.tls.groups,
        ) {
            Ok(p) => policies.push(p),
            Err(problems) => {
                for p in problems {
                    errors.push(ConfigError {
                        file: path.to_path_buf(),
                        location: Some(at(&format!("tls.{}", p.field))),
                        message: p.message,
                        hint: p.hint,
                    });
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn check_route(
    path: &Path,
    prefix: &str,
    l: &ListenerConfig,
    r: &RouteOf,
    config: &Config,
    errors: &mut Vec<ConfigError>,
) {
    let at = |field: &str| format!("{prefix}.{field}");
    let route_name = l.name.rsplit('/').next().unwrap_or("");
    if !valid_name(route_name) {
        errors.push(
            ConfigError::at(
                path,
                at("name"),
                format!("invalid route name {route_name:?}"),
            )
            .hint("use 1 to 64 letters, digits, '-' or '_'"),
        );
    }
    if r.server_names.is_empty() {
        errors.push(
            ConfigError::at(
                path,
                at("server_names"),
                "a route needs at least one server name",
            )
            .hint("list the names (or *.wildcards) whose clients go to this route's backend"),
        );
    }
    for (k, name) in r.server_names.iter().enumerate() {
        let bare = name.strip_prefix("*.").unwrap_or(name);
        let ok = !bare.is_empty()
            && bare.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            errors.push(
                ConfigError::at(
                    path,
                    at(&format!("server_names[{k}]")),
                    format!("{name:?} is not a host name"),
                )
                .hint(
                    "write a DNS name such as tenant-a.mqtt.example.com, or *.tenant-a.example.com",
                ),
            );
        }
        let taken = config.listeners.iter().find(|o| {
            o.name != l.name
                && o.route
                    .as_ref()
                    .is_some_and(|or| or.parent == r.parent && or.server_names.contains(name))
        });
        if let Some(o) = taken {
            errors.push(
                ConfigError::at(
                    path,
                    at(&format!("server_names[{k}]")),
                    format!("{name:?} is already routed to {:?}", o.name),
                )
                .hint("each server name can select only one route"),
            );
        }
    }
}

fn check_ocsp(path: &Path, prefix: &str, l: &ListenerConfig, errors: &mut Vec<ConfigError>) {
    let at = |field: &str| format!("{prefix}.tls.ocsp.{field}");
    let o = &l.tls.ocsp;
    if !(o.refresh_fraction > 0.0 && o.refresh_fraction < 1.0) {
        errors.push(
            ConfigError::at(
                path,
                at("refresh_fraction"),
                "must be between 0 and 1, exclusive",
            )
            .hint("0.5 (the default) refreshes halfway through each response's validity"),
        );
    }
    if let Some(url) = &o.responder_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(
                ConfigError::at(
                    path,
                    at("responder_url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                )
                .hint("OCSP responders are reached over HTTP, e.g. http://ocsp.example.com"),
            );
        }
    }
    let per_cert = l.tls.certificates.iter().any(|c| c.ocsp_file.is_some());
    if o.static_file.is_some() && (l.tls.certificates.len() > 1 || per_cert) {
        errors.push(
            ConfigError::at(
                path,
                at("static_file"),
                "static_file names one response, but this listener has several certificates",
            )
            .hint("set ocsp_file on each certificate entry instead"),
        );
    }
    if o.responder_url.is_some() && (o.static_file.is_some() || per_cert) {
        errors.push(
            ConfigError::at(
                path,
                at("responder_url"),
                "a responder URL and a static response file exclude each other",
            )
            .hint("use static files for air-gapped sites, a responder URL otherwise"),
        );
    }
    if o.stapling == Stapling::Off
        && (o.static_file.is_some() || per_cert || o.responder_url.is_some())
    {
        errors.push(
            ConfigError::at(
                path,
                at("stapling"),
                "stapling is false, so the other ocsp settings would be ignored",
            )
            .hint("set stapling: auto or true, or remove the other settings"),
        );
    }
}

fn check_mqtt(
    path: &Path,
    prefix: &str,
    m: &MqttConfig,
    auth: ClientAuthMode,
    errors: &mut Vec<ConfigError>,
) {
    let at = |field: &str| format!("{prefix}.mqtt.{field}");
    if m.connect_timeout.0.is_zero() {
        errors.push(ConfigError::at(
            path,
            at("connect_timeout"),
            "must be longer than zero",
        ));
    }
    if !(16..=268_435_455).contains(&m.max_packet_size) {
        errors.push(
            ConfigError::at(
                path,
                at("max_packet_size"),
                "must be between 16 and 268435455 bytes",
            )
            .hint("1048576 (1 MiB) is the default"),
        );
    }
    let needs_identity = m.client_id != ClientIdPolicy::Any
        || m.username == UsernamePolicy::Identity
        || m.acl.iter().flatten().any(|r| r.uses_identity());
    if needs_identity && auth == ClientAuthMode::None {
        errors.push(
            ConfigError::at(
                path,
                at("client_id"),
                "client_id, username: identity or %i in the ACL need the device's certificate, but tls.client_auth.mode is none",
            )
            .hint("set tls.client_auth.mode: required and a ca bundle"),
        );
    }
    for (k, rule) in m.acl.iter().flatten().enumerate() {
        for problem in rule.problems() {
            errors.push(
                ConfigError::at(path, at(&format!("acl[{k}]")), problem)
                    .hint("see docs/mqtt.md for ACL rules"),
            );
        }
    }
}

/// Whether a log filter matches span fields by value (`[span{field=value}]`).
/// tracing-subscriber compiles each such value into a DFA with no size
/// limit, so `(a|b)*a(a|b)(a|b)...` of 300 bytes takes minutes and
/// gigabytes, in validation and again when logging starts.
fn filters_fields_by_value(level: &str) -> bool {
    level
        .split('{')
        .skip(1)
        .any(|fields| fields.split('}').next().unwrap_or("").contains('='))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Two listen addresses clash when the ports are equal and the addresses are
/// equal or either is the wildcard of a family that covers the other.
pub fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (ia, ib) = (a.ip(), b.ip());
    // On Linux, [::] is dual-stack by default and covers IPv4 too.
    let covers = |w: std::net::IpAddr, o: std::net::IpAddr| {
        w.is_unspecified() && (w.is_ipv6() || o.is_ipv4())
    };
    ia == ib || covers(ia, ib) || covers(ib, ia)
}

/// Checks `host:port` syntax (the host is resolved at connect time).
fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port"));
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return Err(format!("{s:?} is not a valid host:port"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} has an invalid port {port:?}")),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
listeners:
  - name: mqtts
    listen: 127.0.0.1:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - cert: tls/server.pem
          key: tls/server.key
";

    fn parse_str(text: &str) -> Result<ValidConfig, ConfigErrors> {
        parse(Path::new("/etc/moat/moat.yaml"), text)
    }

    fn error_text(text: &str) -> String {
        parse_str(text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse_str(MINIMAL).expect("valid");
        let l = &c.config.listeners[0];
        assert_eq!(l.timeouts.handshake.0, Duration::from_secs(10));
        assert_eq!(l.timeouts.connect.0, Duration::from_secs(5));
        assert_eq!(l.max_connections, 50_000);
        assert_eq!(l.tls.client_auth.mode, ClientAuthMode::None);
        assert!(l.tls.session_tickets);
        assert_eq!(
            l.tls.certificates[0].cert,
            PathBuf::from("/etc/moat/tls/server.pem")
        );
        assert_eq!(c.config.shutdown.drain_timeout.0, Duration::from_secs(30));
        assert!(c.config.reload.watch);
        assert_eq!(c.config.reload.debounce.0, Duration::from_millis(500));
        assert_eq!(c.config.reload.check_interval.0, Duration::from_secs(60));
        assert_eq!(c.config.log.format, LogFormat::Text);
        assert!(c.config.admin.is_none());
    }

    #[test]
    fn issue_example_parses() {
        let text = "
admin:
  listen: 127.0.0.1:9090
log:
  level: info
  format: json
listeners:
  - name: mqtts
    listen: 0.0.0.0:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - cert: tls/server-chain.pem
          key: tls/server.key
      min_version: \"1.2\"
      cipher_suites: []
      groups: []
      client_auth:
        mode: required
        ca: tls/clients-ca.pem
    timeouts: { handshake: 10s, connect: 5s }
    max_connections: 50000
";
        let c = parse_str(text).expect("valid");
        assert_eq!(c.config.log.format, LogFormat::Json);
        assert_eq!(
            c.config.listeners[0].tls.client_auth.ca.as_deref(),
            Some(Path::new("/etc/moat/tls/clients-ca.pem"))
        );
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let text = MINIMAL.replace("backend:", "backnd:");
        let e = error_text(&text);
        assert!(e.contains("/etc/moat/moat.yaml"), "{e}");
        assert!(e.contains("listeners[0]"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("unknown field `backnd`"), "{e}");
        assert!(e.contains("did you mean `backend`?"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_lists_valid_keys_when_nothing_is_close() {
        let e = error_text(&format!("{MINIMAL}zzzzzzzzzz: 1\n"));
        assert!(e.contains("valid keys here"), "{e}");
        assert!(e.contains("listeners"), "{e}");
    }

    #[test]
    fn bad_duration_names_field_and_form() {
        let text = format!("{MINIMAL}    timeouts: {{ handshake: ten }}\n");
        let e = error_text(&text);
        assert!(e.contains("listeners[0].timeouts.handshake"), "{e}");
        assert!(e.contains("like 10s"), "{e}");
        let e = error_text(&format!("{MINIMAL}    timeouts: {{ connect: 5 }}\n"));
        assert!(e.contains("listeners[0].timeouts.connect"), "{e}");
        assert!(e.contains("write 5s"), "{e}");
    }

    #[test]
    fn unquoted_version_is_accepted() {
        let text = MINIMAL.replace(
            "      certificates:",
            "      min_version: 1.3\n      certificates:",
        );
        let c = parse_str(&text).expect("valid");
        assert_eq!(c.policies[0].versions.len(), 1);
    }

    #[test]
    fn old_version_is_refused_with_a_reason() {
        let text = MINIMAL.replace(
            "      certificates:",
            "      min_version: \"1.0\"\n      certificates:",
        );
        let e = error_text(&text);
        assert!(e.contains("listeners[0].tls.min_version"), "{e}");
        assert!(e.contains("RFC 8996"), "{e}");
    }

    #[test]
    fn duplicate_names_and_addresses_are_refused() {
        let text = format!(
            "{MINIMAL}  - name: mqtts\n    listen: 0.0.0.0:8883\n    backend: b:1883\n    tls:\n      certificates:\n        - {{ cert: a, key: b }}\n"
        );
        let e = error_text(&text);
        assert!(e.contains("listeners[1].name"), "{e}");
        assert!(e.contains("already used by listeners[0]"), "{e}");
        assert!(e.contains("listeners[1].listen"), "{e}");
        assert!(e.contains("clashes with listeners[0]"), "{e}");
    }

    #[test]
    fn address_clash_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(addresses_clash(a("127.0.0.1:1"), a("127.0.0.1:1")));
        assert!(addresses_clash(a("0.0.0.0:1"), a("127.0.0.1:1")));
        assert!(addresses_clash(a("[::]:1"), a("127.0.0.1:1")));
        assert!(!addresses_clash(a("0.0.0.0:1"), a("[::1]:1")));
        assert!(!addresses_clash(a("127.0.0.1:1"), a("127.0.0.2:1")));
        assert!(!addresses_clash(a("127.0.0.1:1"), a("127.0.0.1:2")));
    }

    #[test]
    fn client_auth_needs_a_ca_and_a_ca_needs_a_mode() {
        let text = format!("{MINIMAL}      client_auth: {{ mode: required }}\n");
        let e = error_text(&text);
        assert!(e.contains("tls.client_auth.ca"), "{e}");
        assert!(e.contains("no CA bundle"), "{e}");

        let text = format!("{MINIMAL}      client_auth: {{ ca: ca.pem }}\n");
        let e = error_text(&text);
        assert!(e.contains("would be ignored"), "{e}");
    }

    #[test]
    fn bad_client_auth_mode_lists_variants() {
        let text = format!("{MINIMAL}      client_auth: {{ mode: always, ca: x }}\n");
        let e = error_text(&text);
        assert!(e.contains("unknown variant `always`"), "{e}");
        assert!(e.contains("required"), "{e}");
    }

    #[test]
    fn allow_lists_crls_and_proxy_protocol() {
        let text = format!(
            "{MINIMAL}      client_auth:\n        mode: required\n        ca: ca.pem\n        crl: devices.crl\n        expired_crl: allow\n        allow:\n          - common_name: \"sensor-*\"\n          - spki_sha256: \"{}\"\n    backend_proxy_protocol: v2\n",
            "ab".repeat(32)
        );
        let c = parse_str(&text).expect("valid");
        let l = &c.config.listeners[0];
        assert_eq!(
            l.tls.client_auth.crl.0,
            vec![PathBuf::from("/etc/moat/devices.crl")]
        );
        assert_eq!(l.tls.client_auth.expired_crl, ExpiredCrlPolicy::Allow);
        assert_eq!(l.tls.client_auth.allow.len(), 2);
        assert_eq!(l.backend_proxy_protocol, ProxyProtocol::V2);

        let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: [a.crl, b.crl] }}\n"
        );
        assert_eq!(
            parse_str(&text).expect("valid").config.listeners[0]
                .tls
                .client_auth
                .crl
                .0
                .len(),
            2
        );

        let text = format!("{MINIMAL}      client_auth: {{ crl: a.crl }}\n");
        assert!(error_text(&text).contains("crl is set but client_auth.mode is none"));
        let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{}}] }}\n"
        );
        assert!(error_text(&text).contains("tls.client_auth.allow[0]"));
        let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{ cn: x }}] }}\n"
        );
        assert!(
            error_text(&text).contains("did you mean `common_name`?"),
            "{}",
            error_text(&text)
        );
        let text = format!("{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{ certificate_sha256: xyz }}] }}\n");
        assert!(error_text(&text).contains("64 hex digits"));
    }

    #[test]
    fn mqtt_section() {
        let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem }}\n    mqtt:\n      client_id: equal_to_identity\n      username: identity\n      identity: uri\n      max_packet_size: 65536\n      acl:\n        - match: {{ identity: \"sensor-*\" }}\n          publish: [\"devices/%i/#\"]\n          subscribe: [\"devices/%i/commands/+\"]\n"
        );
        let c = parse_str(&text).expect("valid");
        let m = c.config.listeners[0].mqtt.as_ref().expect("mqtt");
        assert_eq!(m.client_id, ClientIdPolicy::EqualToIdentity);
        assert_eq!(m.identity, IdentitySource::Uri);
        assert_eq!(m.acl.as_ref().expect("acl").len(), 1);
        assert_eq!(m.connect_timeout.0, Duration::from_secs(10));

        let bare = parse_str(&format!("{MINIMAL}    mqtt:\n")).expect("valid");
        assert_eq!(
            bare.config.listeners[0]
                .mqtt
                .as_ref()
                .expect("on")
                .max_packet_size,
            1 << 20
        );
        assert!(parse_str(MINIMAL).expect("valid").config.listeners[0]
            .mqtt
            .is_none());
        let text = format!("{MINIMAL}    mqtt: {{ client_id: equal_to_identity }}\n");
        assert!(error_text(&text).contains("need the device's certificate"));
        let text = format!("{MINIMAL}    mqtt: {{ acl: [{{ publish: [\"a/#/b\"] }}] }}\n");
        assert!(error_text(&text).contains("listeners[0].mqtt.acl[0]"));
        let text = format!("{MINIMAL}    mqtt: {{ on_deny: drop }}\n");
        assert!(error_text(&text).contains("acknowledge"));
    }

    #[test]
    fn ocsp_section() {
        let c = parse_str(MINIMAL).expect("valid");
        assert_eq!(c.config.listeners[0].tls.ocsp.stapling, Stapling::Auto);
        let text = format!("{MINIMAL}      ocsp: {{ stapling: true, cache_dir: ocsp-cache, refresh_fraction: 0.25 }}\n");
        let c = parse_str(&text).expect("valid");
        let o = &c.config.listeners[0].tls.ocsp;
        assert_eq!(o.stapling, Stapling::On);
        assert_eq!(
            o.cache_dir.as_deref(),
            Some(Path::new("/etc/moat/ocsp-cache"))
        );
        let e = error_text(&format!(
            "{MINIMAL}      ocsp: {{ refresh_fraction: 1.5 }}\n"
        ));
        assert!(e.contains("listeners[0].tls.ocsp.refresh_fraction"), "{e}");
        let e = error_text(&format!("{MINIMAL}      ocsp: {{ stapling: maybe }}\n"));
        assert!(e.contains("use auto, true or false"), "{e}");
        let e = error_text(&format!(
            "{MINIMAL}      ocsp: {{ responder_url: \"http://o\", static_file: r.der }}\n"
        ));
        assert!(e.contains("exclude each other"), "{e}");
        let e = error_text(&format!(
            "{MINIMAL}      ocsp: {{ stapling: false, static_file: r.der }}\n"
        ));
        assert!(e.contains("would be ignored"), "{e}");
    }

    #[test]
    fn routes_become_listeners_of_their_own() {
        let text = format!(
            "{MINIMAL}    routes:\n      - name: tenant-b\n        server_names: [b.example, \"*.b.example\"]\n        backend: broker-b:1883\n        tls:\n          certificates: [{{ cert: b.pem, key: b.key }}]\n          client_auth: {{ mode: required, ca: b-ca.pem }}\n"
        );
        let c = parse_str(&text).expect("valid");
        assert_eq!(c.config.listeners.len(), 2);
        let r = &c.config.listeners[1];
        assert_eq!(r.name, "mqtts/tenant-b");
        assert_eq!(r.listen, c.config.listeners[0].listen);
        assert_eq!(r.backend, "broker-b:1883");
        assert_eq!(r.tls.certificates[0].cert, PathBuf::from("/etc/moat/b.pem"));
        let of = r.route.as_ref().expect("route");
        assert_eq!(of.parent, "mqtts");
        assert_eq!(of.server_names, ["b.example", "*.b.example"]);
        assert_eq!(c.policies.len(), 2);

        let bad = text.replace(
            "server_names: [b.example, \"*.b.example\"]",
            "server_names: []",
        );
        assert!(error_text(&bad).contains("listeners[0].routes[0].server_names"));
        let bad = text.replace("backend: broker-b:1883", "backend: broker-b");
        assert!(
            error_text(&bad).contains("listeners[0].routes[0].backend"),
            "{}",
            error_text(&bad)
        );
        let dup = format!(
            "{text}      - name: again\n        server_names: [b.example]\n        backend: x:1\n        tls: {{ certificates: [{{ cert: c, key: k }}] }}\n"
        );
        assert!(
            error_text(&dup).contains("already routed to \"mqtts/tenant-b\""),
            "{}",
            error_text(&dup)
        );
    }

    #[test]
    fn tls_profiles() {
        let with = |line: &str| {
            MINIMAL.replace(
                "      certificates:",
                &format!("      {line}\n      certificates:"),
            )
        };
        let c = parse_str(&with("profile: modern")).expect("valid");
        assert_eq!(c.policies[0].versions.len(), 1, "TLS 1.3 only");
        let c = parse_str(&with("profile: intermediate")).expect("valid");
        assert_eq!(c.policies[0].versions.len(), 2);
        let e = error_text(&MINIMAL.replace(
            "      certificates:",
            "      profile: modern\n      min_version: \"1.2\"\n      certificates:",
        ));
        assert!(e.contains("profile modern means TLS 1.3 only"), "{e}");
        assert!(error_text(&with("profile: old")).contains("unknown variant `old`"));
    }

    #[test]
    fn backend_must_have_a_port() {
        let e = error_text(&MINIMAL.replace("127.0.0.1:1883", "broker"));
        assert!(e.contains("listeners[0].backend"), "{e}");
        assert!(e.contains("has no port"), "{e}");
        let ok = parse_str(&MINIMAL.replace("127.0.0.1:1883", "mosquitto.local:1883"));
        assert!(ok.is_ok());
        let ok = parse_str(&MINIMAL.replace("127.0.0.1:1883", "\"[::1]:1883\""));
        assert!(ok.is_ok());
    }

    #[test]
    fn several_problems_are_reported_together() {
        let text = MINIMAL
            .replace("name: mqtts", "name: \"bad name\"")
            .replace("127.0.0.1:1883", "nohost");
        let e = parse_str(&text).expect_err("refused");
        assert_eq!(e.0.len(), 2, "{e}");
    }

    #[test]
    fn empty_listeners_and_certificates_are_refused() {
        let e = error_text("listeners: []\n");
        assert!(e.contains("no listeners"), "{e}");
        let text = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    backend: h:1\n    tls: { certificates: [] }\n";
        let e = error_text(text);
        assert!(e.contains("listeners[0].tls.certificates"), "{e}");
    }

    #[test]
    fn log_level_field_value_filters_are_refused_without_compiling_them() {
        // Found by fuzz/fuzz_targets/config_loader.rs: compiling this value
        // takes minutes and gigabytes.
        let bomb = format!("info,[{{x=(a|b)*a{}}}]", "(a|b)".repeat(20));
        let e = error_text(&format!("{MINIMAL}log: {{ level: \"{bomb}\" }}\n"));
        assert!(e.contains("log.level"), "{e}");
        assert!(e.contains("by value"), "{e}");
        let e = error_text(&format!(
            "{MINIMAL}log: {{ level: \"[{{peer=10.0.0.1}}]\" }}\n"
        ));
        assert!(e.contains("by value"), "{e}");
        // Targets, spans and field names without values are still fine.
        let ok =
            format!("{MINIMAL}log: {{ level: \"info,moat=debug,moat[conn{{peer}}]=trace\" }}\n");
        parse_str(&ok).expect("valid");
    }

    /// A list of anchors, the first holding `leaves` short strings and each
    /// next one `width` aliases of the one before.
    fn alias_bomb(leaves: usize, widths: &[usize]) -> String {
        let mut out = format!("[&l0 [{}]", vec!["x"; leaves].join(","));
        for (d, width) in widths.iter().enumerate() {
            let aliases = vec![format!("*l{d}"); *width].join(",");
            out.push_str(&format!(", &l{} [{aliases}]", d + 1));
        }
        out.push(']');
        out
    }

    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        // Found by fuzz/fuzz_targets/config_loader.rs: `crl` takes one file
        // or a list, so serde buffers its whole value, aliases expanded, and
        // these 2.5 KB (54 million strings) grew past 2 GB. serde_yaml's
        // repetition limit counts the 55,000 alias jumps, which it allows.
        let bomb = alias_bomb(1000, &[60, 60, 15]);
        assert!(bomb.len() < 2600);
        let text =
            format!("{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: {bomb} }}\n");
        let e = error_text(&text);
        assert!(e.contains("/etc/moat/moat.yaml: line "), "{e}");
        assert!(e.contains("YAML aliases expand this file"), "{e}");
        assert!(e.contains("anchor (&name)"), "{e}");
        // The classic billion laughs stops at serde_yaml's own limit.
        let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: {} }}\n",
            alias_bomb(9, &[9; 8])
        );
        assert!(parse_str(&text).is_err());
        // Lists the schema nests multiply too: 100 listeners with 100 ACL
        // rules of 100 topics each, in 2 KB.
        let topics = vec!["t"; 100].join(",");
        let rules = vec!["*r"; 99].join(",");
        let listeners = vec!["*l"; 99].join(",");
        let text = format!(
            "listeners: [&l {{ name: a, listen: \"127.0.0.1:1\", backend: \"h:1\", tls: {{ certificates: [{{ cert: c, key: k }}] }}, mqtt: {{ acl: [&r {{ publish: [{topics}] }}, {rules}] }} }}, {listeners}]\n"
        );
        assert!(text.len() < 2048);
        assert!(error_text(&text).contains("YAML aliases expand"));
        // A few aliases for shared settings are fine.
        let text = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    backend: h:1\n    tls: &tls { certificates: [{ cert: c, key: k }] }\n  - name: b\n    listen: 127.0.0.1:2\n    backend: h:1\n    tls: *tls\n";
        let c = parse_str(text).expect("valid");
        assert_eq!(
            c.config.listeners[1].tls.certificates[0].key,
            PathBuf::from("/etc/moat/k")
        );
    }

    #[test]
    fn alias_bombs_after_a_128_bit_integer_are_refused() {
        // Found reviewing the fuzz/fuzz_targets/config_loader.rs fix:
        // serde_yaml hands integers beyond 64 bits to visit_u128/visit_i128,
        // which the expansion walk did not implement; its error ended the
        // walk unspent, so a bomb after such a value (a name is any string)
        // went uncounted to the real parse.
        for big in ["18446744073709551616", "-9223372036854775809"] {
            let text = MINIMAL.replace("name: mqtts", &format!("name: {big}"))
                + &format!(
                    "      client_auth: {{ mode: required, ca: ca.pem, crl: {} }}\n",
                    alias_bomb(1000, &[60, 60, 15])
                );
            let e = error_text(&text);
            assert!(e.contains("YAML aliases expand this file"), "{e}");
        }
    }

    #[test]
    fn syntax_error_names_line() {
        let e = error_text("listeners: [\n");
        assert!(e.contains("line 2"), "{e}");
    }
}
