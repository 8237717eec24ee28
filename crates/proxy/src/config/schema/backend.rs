//! Where a listener's connections go: `backend:` as one broker
//! (`host:port`) or as a list of nodes of a cluster, each with an optional
//! weight and `backup`; `balance:`, which node a connection goes to; and
//! `backend_health:`, how long a node that failed stays out of rotation
//! and how it is checked actively; `backend_dns:`, how entries with
//! `discover:` are looked up and how often.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::values::HumanDuration;

/// One broker of a backend list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendNode {
    /// `host:port`.
    pub address: String,
    /// Its share of the connections, relative to the others (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Used only while every node that is not a backup is down.
    #[serde(default)]
    pub backup: bool,
    /// The node's name in the rendezvous hash, and so which devices are
    /// its own; absent, its address as written. Naming a node keeps its
    /// devices on it when its address changes (a broker moved to a new
    /// host or port). Not with `discover`.
    #[serde(default)]
    pub name: Option<String>,
    /// Absent, the entry is one node. `addresses`: one node per A/AAAA
    /// record of the host, on the entry's port; `srv`: the address is an
    /// SRV name, one node per record's target address and port. Both are
    /// looked up again every `backend_dns.interval`.
    #[serde(default)]
    pub discover: Option<Discover>,
}

/// How one backend entry becomes nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discover {
    /// `host:port`: a node per address of `host` (A and AAAA).
    Addresses,
    /// `_service._proto.name`: a node per SRV record (target and port).
    Srv,
}

impl Discover {
    /// The name, as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Addresses => "addresses",
            Self::Srv => "srv",
        }
    }
}

/// The `backend_dns:` setting: how discovered entries are looked up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendDnsConfig {
    /// How often every discovered entry is looked up again.
    #[serde(default = "default_dns_interval")]
    pub interval: HumanDuration,
    /// DNS servers as `ip:port` (UDP, then TCP for long answers); empty,
    /// the system's (/etc/resolv.conf).
    #[serde(default)]
    pub servers: Vec<String>,
}

fn default_dns_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

impl Default for BackendDnsConfig {
    fn default() -> Self {
        Self {
            interval: default_dns_interval(),
            servers: Vec::new(),
        }
    }
}

fn one() -> u32 {
    1
}

impl BackendNode {
    fn plain(address: &str) -> Self {
        Self {
            address: address.to_string(),
            weight: 1,
            backup: false,
            name: None,
            discover: None,
        }
    }
}

/// The `backend:` setting: one or more nodes, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends(pub Vec<BackendNode>);

impl Backends {
    /// The nodes.
    pub fn nodes(&self) -> &[BackendNode] {
        &self.0
    }

    /// Whether this is a cluster (more than one node, or nodes found in
    /// the DNS).
    pub fn is_cluster(&self) -> bool {
        self.0.len() > 1 || self.discovers()
    }

    /// Whether an entry is expanded from the DNS (`discover:`).
    pub fn discovers(&self) -> bool {
        self.0.iter().any(|n| n.discover.is_some())
    }
}

/// As written for one broker; the addresses joined by `, ` for a list.
impl fmt::Display for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses: Vec<&str> = self.0.iter().map(|n| n.address.as_str()).collect();
        f.write_str(&addresses.join(", "))
    }
}

/// A single plain broker equals its `host:port`.
impl PartialEq<&str> for Backends {
    fn eq(&self, other: &&str) -> bool {
        matches!(self.0.as_slice(), [n] if n == &BackendNode::plain(other))
    }
}

impl<'de> Deserialize<'de> for Backends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Backends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("host:port, or a list of host:port or { address, weight, backup }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Backends, E> {
                Ok(Backends(vec![BackendNode::plain(s)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Backends, A::Error> {
                let mut nodes = Vec::new();
                while let Some(Node(n)) = seq.next_element()? {
                    nodes.push(n);
                }
                Ok(Backends(nodes))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of a list: `host:port`, or the long form.
struct Node(BackendNode);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("host:port or { address, weight, backup }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
                Ok(Node(BackendNode::plain(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
                BackendNode::deserialize(de::value::MapAccessDeserializer::new(map)).map(Node)
            }
        }
        d.deserialize_any(V)
    }
}

/// Which node of a backend list a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Rendezvous hashing on the verified certificate identity: a device
    /// always lands on the same node, whatever client id it claims.
    Identity,
    /// Rendezvous hashing on the MQTT client id (MQTT-aware listeners).
    ClientId,
    /// Rendezvous hashing on the client's IP address.
    Source,
    /// The node with the fewest open connections for its weight.
    LeastConnections,
    /// Each node in turn, as often as its weight says.
    RoundRobin,
}

impl Balance {
    /// The name, as written in the configuration and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::ClientId => "client_id",
            Self::Source => "source",
            Self::LeastConnections => "least_connections",
            Self::RoundRobin => "round_robin",
        }
    }
}

/// How failed nodes are kept out of rotation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendHealthConfig {
    /// How long a node whose connect failed is left out before it is tried
    /// again, so that a flapping node does not make devices thrash.
    #[serde(default = "default_hold_down")]
    pub hold_down: HumanDuration,
    /// The active check: none (`off`), a TCP connect, or an MQTT
    /// CONNECT that must be accepted.
    #[serde(default)]
    pub check: HealthCheck,
    /// Time between two checks of a node.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How long one check may take.
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
    /// Good checks in a row that bring a node that failed its checks back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Bad checks in a row that take a node out of rotation.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

/// The kind of active health check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// No active check: only failed connects (passive) count.
    #[default]
    Off,
    /// A TCP connect, closed at once.
    Tcp,
    /// An MQTT 3.1.1 CONNECT with its own client id; good only when the
    /// broker answers CONNACK with return code 0.
    Mqtt,
}

impl HealthCheck {
    /// The name, as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Tcp => "tcp",
            Self::Mqtt => "mqtt",
        }
    }
}

fn default_hold_down() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

impl Default for BackendHealthConfig {
    fn default() -> Self {
        Self {
            hold_down: default_hold_down(),
            check: HealthCheck::Off,
            interval: default_interval(),
            timeout: default_check_timeout(),
            rise: default_rise(),
            fall: default_fall(),
        }
    }
}
