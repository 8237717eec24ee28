//! The `mqtt:` section of a listener: CONNECT checks, identity binding and
//! topic ACLs.

use std::time::Duration;

use serde::Deserialize;

use super::values::HumanDuration;
use crate::guard::acl::AclRule;

/// Deserializes `mqtt:`: a bare `mqtt:` (null) turns it on with the
/// defaults.
pub(super) fn mqtt_section<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<MqttConfig>, D::Error> {
    Ok(Some(
        Option::<MqttConfig>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// MQTT awareness of a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Per-device rate limits; absent, none.
    #[serde(default)]
    pub limits: MqttLimits,
}

/// Per-device rate limits, keyed by the verified identity (else the client
/// id): every connection of one device shares them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttLimits {
    /// PUBLISH packets a second a device may send; more are delayed.
    pub publish_rate: Option<u32>,
    /// PUBLISH packets it may send at once after a quiet spell (default:
    /// `publish_rate`).
    pub publish_burst: Option<u32>,
    /// Bytes a second a device may send to the broker; more are delayed.
    pub bytes_rate: Option<u32>,
    /// Bytes it may send at once (default: `bytes_rate`, at least 64 KiB).
    pub bytes_burst: Option<u32>,
    /// Close a session that stays over its rate this long (MQTT 5:
    /// DISCONNECT 0x96 "message rate too high"); absent, it is only slowed.
    pub disconnect_after: Option<HumanDuration>,
    /// New connections a minute a device may make (reconnect loops); more
    /// are refused at CONNECT.
    pub connections_per_minute: Option<u32>,
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
            limits: MqttLimits::default(),
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
