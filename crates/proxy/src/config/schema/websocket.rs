//! A listener's `websocket:` section: MQTT over WebSockets (WSS) on the
//! same TLS port as raw MQTT, unwrapped to plain MQTT for the broker.

use serde::Deserialize;

/// The HTTP path WebSocket clients connect to unless configured.
pub const DEFAULT_PATH: &str = "/mqtt";

/// Largest WebSocket frame accepted by default (bytes of payload).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// Largest WebSocket message (a frame and its continuations) by default.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 16 * 1024 * 1024;

/// MQTT over WebSockets on a listener. Raw MQTT over TLS keeps working on
/// the same port: the transport is chosen per connection (ALPN
/// `http/1.1`, or an HTTP request where no ALPN was negotiated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// The request path upgrades are accepted on; any other gets 404.
    #[serde(default = "default_path")]
    pub path: String,
    /// `Origin`s accepted (e.g. `https://dash.example.com`); empty accepts
    /// any Origin and requests without one (non-browser clients).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Largest frame payload, in bytes; a larger frame ends the connection
    /// with close code 1009.
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: u32,
    /// Largest message (a frame and its continuations), in bytes.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            origins: Vec::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

fn default_path() -> String {
    DEFAULT_PATH.to_string()
}

fn default_max_frame_size() -> u32 {
    DEFAULT_MAX_FRAME_SIZE
}

fn default_max_message_size() -> u32 {
    DEFAULT_MAX_MESSAGE_SIZE
}

/// Reads `websocket:`; a bare `websocket:` (null) turns it on with the
/// defaults, as `mqtt:` does.
pub(super) fn websocket_section<'de, D>(d: D) -> Result<Option<WebSocketConfig>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Some(
        Option::<WebSocketConfig>::deserialize(d)?.unwrap_or_default(),
    ))
}
