//! The parsed CONNECT: its fields, borrowed from the packet, where they
//! sit in it (for the rewrite), and the connect-flag constants.

use core::fmt;
use core::ops::Range;

use crate::types::{ProtocolVersion, QoS};

/// Connect flag: a username is present.
pub const FLAG_USERNAME: u8 = 0x80;
/// Connect flag: a password is present.
pub const FLAG_PASSWORD: u8 = 0x40;
/// Connect flag: the will message is retained.
pub const FLAG_WILL_RETAIN: u8 = 0x20;
/// Connect flags: the will QoS (two bits).
pub const FLAG_WILL_QOS_MASK: u8 = 0x18;
/// Connect flag: a will is present.
pub const FLAG_WILL: u8 = 0x04;
/// Connect flag: clean session (3.x) / clean start (5).
pub const FLAG_CLEAN_START: u8 = 0x02;
/// Connect flag: reserved, must be 0 (checked from MQTT 3.1.1 on).
pub const FLAG_RESERVED: u8 = 0x01;

/// Bit 7 of the protocol level, set by Mosquitto bridges
/// (`try_private true`) to announce themselves.
pub const BRIDGE_LEVEL_BIT: u8 = 0x80;

/// A parsed CONNECT packet, borrowing from the packet bytes.
///
/// `Debug` output redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The protocol version the connection speaks from now on.
    pub version: ProtocolVersion,
    /// The protocol level byte as sent, bridge bit included.
    pub protocol_level: u8,
    /// Whether the protocol level has [`BRIDGE_LEVEL_BIT`] set (a Mosquitto
    /// bridge). The version is decoded with the bit masked off.
    pub bridge: bool,
    /// Clean session (MQTT 3.x) / clean start (MQTT 5).
    pub clean_start: bool,
    /// Keep-alive interval in seconds (0 disables it).
    pub keep_alive: u16,
    /// MQTT 5 CONNECT properties; all `None` and an empty block otherwise.
    pub properties: ConnectProperties<'a>,
    /// The client identifier (may be empty: the broker then assigns one).
    pub client_id: &'a str,
    /// The will, if the will flag is set. Its topic needs the same publish
    /// ACL check as a PUBLISH.
    pub will: Option<Will<'a>>,
    /// The username, if the username flag is set.
    pub username: Option<&'a str>,
    /// The password, if the password flag is set.
    pub password: Option<&'a [u8]>,
    /// Where the fields sit in the packet, for [`rewrite_connect`](crate::rewrite_connect).
    pub layout: ConnectLayout,
}

/// The MQTT 5 CONNECT properties the gateway may act on, plus the raw block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties<'a> {
    /// Offsets of the property block in the packet, without its length
    /// prefix (empty, at the end of the variable header, before MQTT 5).
    pub range: Range<usize>,
    /// The property block itself (iterate it with
    /// [`Properties`](crate::properties::Properties)).
    pub raw: &'a [u8],
    /// Session Expiry Interval (0x11), seconds.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (0x21): how many QoS 1/2 publishes the client accepts
    /// in flight.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27) the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum (0x22) the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Authentication Method (0x15): present when the client wants MQTT 5
    /// enhanced authentication (an AUTH exchange).
    pub authentication_method: Option<&'a str>,
    /// Authentication Data (0x16).
    pub authentication_data: Option<&'a [u8]>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// The MQTT 5 will property block (empty before MQTT 5).
    pub properties: &'a [u8],
    /// The will topic, a validated topic name.
    pub topic: &'a str,
    /// The will payload.
    pub payload: &'a [u8],
}

/// Byte offsets of a CONNECT's fields, from the start of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLayout {
    /// Size of the fixed header.
    pub header_len: usize,
    /// Offset of the connect-flags byte.
    pub flags_offset: usize,
    /// Offset where the credentials start: the end of the will (or of the
    /// client identifier), where a username is or would be inserted.
    pub credentials_offset: usize,
    /// The username field, two-byte length prefix included.
    pub username: Option<Range<usize>>,
    /// The password field, two-byte length prefix included.
    pub password: Option<Range<usize>>,
    /// Size of the whole packet.
    pub total_len: usize,
}

impl Connect<'_> {
    /// Size of the whole packet, fixed header included.
    pub fn total_len(&self) -> usize {
        self.layout.total_len
    }
}

impl fmt::Debug for Connect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("version", &self.version)
            .field("protocol_level", &self.protocol_level)
            .field("bridge", &self.bridge)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("layout", &self.layout)
            .finish()
    }
}
