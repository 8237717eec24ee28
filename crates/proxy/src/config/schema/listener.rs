//! A listener's schema: where it listens, where it relays to, its limits
//! and timeouts, and its SNI routes.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::backend::{BackendDnsConfig, BackendHealthConfig, Backends, Balance};
use super::mqtt::MqttConfig;
use super::tls::TlsConfig;
use super::values::HumanDuration;
use super::websocket::WebSocketConfig;

/// Default listener connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

/// One TLS listener in front of one backend broker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A short unique name, used in logs and metric labels.
    pub name: String,
    /// Address to accept TLS connections on.
    pub listen: SocketAddr,
    /// The plaintext broker, as `host:port`, or the nodes of a cluster.
    pub backend: Backends,
    /// Which node of a cluster a connection goes to (default: `identity`
    /// with client certificates, else `client_id` when MQTT-aware, else
    /// `source`).
    #[serde(default)]
    pub balance: Option<Balance>,
    /// How failed nodes are kept out of rotation.
    #[serde(default)]
    pub backend_health: BackendHealthConfig,
    /// How backend entries with `discover:` are looked up (routes share
    /// their listener's).
    #[serde(default)]
    pub backend_dns: BackendDnsConfig,
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
    #[serde(default, deserialize_with = "super::mqtt::mqtt_section")]
    pub mqtt: Option<MqttConfig>,
    /// MQTT over WebSockets on this port as well as raw MQTT; absent, an
    /// HTTP request is not answered. A bare `websocket:` turns it on with
    /// the defaults. SNI routes share their listener's.
    #[serde(default, deserialize_with = "super::websocket::websocket_section")]
    pub websocket: Option<WebSocketConfig>,
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A short name, unique in the listener (letters, digits, `-`, `_`).
    pub name: String,
    /// The names (exact, or `*.example.com`) that select this route.
    pub server_names: Vec<String>,
    /// The broker for this route, or the nodes of a cluster.
    pub backend: Backends,
    /// Which node of the route's cluster a connection goes to (default: the
    /// listener's).
    #[serde(default)]
    pub balance: Option<Balance>,
    /// TLS settings for this route.
    pub tls: TlsConfig,
    /// PROXY protocol to this route's backend.
    #[serde(default)]
    pub backend_proxy_protocol: ProxyProtocol,
    /// MQTT awareness for this route.
    #[serde(default, deserialize_with = "super::mqtt::mqtt_section")]
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

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_backlog() -> u32 {
    4096
}

/// Per-listener limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Close an established session after this long (`0s`: never),
    /// jittered down to between 90% and 100% of it per session, so that
    /// devices reconnect and make a fresh full handshake against the
    /// current CAs, CRLs and certificates. MQTT 5 clients get a DISCONNECT
    /// with "maximum connect time" first.
    #[serde(default = "zero_duration")]
    pub max_connection_lifetime: HumanDuration,
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
            max_connection_lifetime: zero_duration(),
        }
    }
}

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
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
