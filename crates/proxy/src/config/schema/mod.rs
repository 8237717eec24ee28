//! The configuration file's schema: serde types for every key, with their
//! defaults, exactly as `docs/configuration.md` documents them.
//!
//! This file holds the top level and the process-wide sections; a
//! listener's sections are in `listener`, `tls` and `mqtt`.

mod acme;
mod backend;
mod listener;
mod mqtt;
mod tls;
mod values;
mod websocket;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub use acme::{AcmeChallenge, AcmeConfig, AcmeKeyType, EabConfig};
pub use backend::{
    BackendDnsConfig, BackendHealthConfig, BackendNode, Backends, Balance, Discover, HealthCheck,
};
pub use listener::{
    LimitsConfig, ListenerConfig, ProxyProtocol, RouteConfig, RouteOf, TimeoutsConfig,
    DEFAULT_MAX_CONNECTIONS,
};
pub use mqtt::{ClientIdPolicy, IdentitySource, MqttConfig, MqttLimits, OnDeny, UsernamePolicy};
pub use tls::{
    CertificateConfig, ClientAuthConfig, ClientAuthMode, ClientOcspMode, ExpiredCrlPolicy,
    OcspConfig, Stapling, TlsConfig, TlsProfile,
};
pub use values::{HumanDuration, OneOrMany};
pub use websocket::WebSocketConfig;

/// The whole configuration file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// A file holding the bearer token that every request but `/healthz`
    /// and `/readyz` must carry (`Authorization: Bearer <token>`); read at
    /// start-up. Absent, the endpoint has no authentication.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// Whether `/healthz` and `/readyz` answer without credentials.
    #[serde(default)]
    pub health: AdminHealth,
    /// HTTPS, and optionally client certificates, on the admin listener.
    #[serde(default)]
    pub tls: Option<AdminTlsConfig>,
}

/// Whether the health checks need the admin credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminHealth {
    /// `/healthz` and `/readyz` answer anyone (probes, load balancers).
    #[default]
    Open,
    /// They need the same token or client certificate as the rest.
    Authenticated,
}

/// TLS on the admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// The admin endpoint's certificate chain (leaf first).
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// CA bundle that client certificates must chain to; absent, no client
    /// certificate is asked for.
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
    /// The client certificate moat's own CLI (`moat healthcheck`,
    /// `moat connections`) presents; `moat run` never reads it.
    #[serde(default)]
    pub cli_cert: Option<std::path::PathBuf>,
    /// The key of `cli_cert`.
    #[serde(default)]
    pub cli_key: Option<std::path::PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevelopmentConfig {
    /// Generate a development CA and server certificates for every
    /// configured certificate whose files do not exist yet.
    #[serde(default)]
    pub generate_certificates: bool,
}

fn default_true() -> bool {
    true
}
