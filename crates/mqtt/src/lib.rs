//! A sans-I/O, zero-copy scanner of MQTT 3.1, 3.1.1 and 5.0 frames, plus
//! topic validation and matching.
//!
//! # What this crate owns
//!
//! Everything moat needs to make its relay MQTT-aware without becoming a
//! broker:
//!
//! * framing: the fixed header and its remaining-length varint
//!   ([`FixedHeader`]), so the relay knows where each packet ends and can
//!   refuse an oversized one before buffering it ([`FixedHeader::check_max_size`]);
//! * the few client packets the gateway inspects: CONNECT ([`Connect`]),
//!   the variable header of PUBLISH ([`Publish`]), SUBSCRIBE ([`Subscribe`])
//!   and UNSUBSCRIBE ([`Unsubscribe`]), plus MQTT 5 property blocks
//!   ([`properties`]);
//! * one rewrite: [`rewrite_connect`] replaces the username (and can drop the
//!   password) of a CONNECT, keeping every other byte. It is the only place
//!   that builds a packet from a parsed one, once per connection;
//! * the packets the gateway writes itself ([`ack`]): CONNACK, PUBACK & co.,
//!   SUBACK, UNSUBACK, DISCONNECT, with the reason codes it needs;
//! * topic names and filters ([`topic`]): validation, MQTT matching, and the
//!   Mosquitto 2.0 rule for whether an ACL pattern covers a subscription.
//!
//! It does no I/O, keeps no session state (topic-alias tables, in-flight
//! packet ids) and never decides policy: callers do.
//!
//! # Why it is hand-written
//!
//! moat is a pass-through proxy. It must not decode packets into owned
//! structures and re-encode them: that costs an allocation and a copy per
//! packet, and re-encoding risks changing bytes the broker would have seen
//! (property order, non-minimal lengths, fields a codec does not model).
//! Instead the relay scans the bytes already sitting in its buffer, looks at
//! the few fields a decision needs, and forwards the original bytes. General
//! MQTT codec crates (mqttbytes, rumqttc's codec, mqtt-protocol) own or
//! allocate whole packets, payload included, so they do not fit. Every parser
//! here only borrows slices of its input, never copies a payload, never
//! allocates, and never panics on any input: lengths are bounds-checked,
//! arithmetic cannot overflow, and there is no `unsafe`.
//!
//! # Example
//!
//! ```
//! use moat_mqtt::{FixedHeader, PacketType, Connect, ProtocolVersion};
//!
//! // CONNECT sent by `mosquitto_pub -V mqttv311 -i dev1 -u alice -P pw`.
//! let bytes = [
//!     0x10, 0x1b, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xc2, 0x00, 0x3c,
//!     0x00, 0x04, b'd', b'e', b'v', b'1', 0x00, 0x05, b'a', b'l', b'i', b'c', b'e',
//!     0x00, 0x02, b'p', b'w',
//! ];
//! let header = FixedHeader::parse(&bytes).unwrap().unwrap();
//! assert_eq!(header.packet_type, PacketType::Connect);
//! assert_eq!(header.total_len(), bytes.len());
//! let connect = Connect::parse(&bytes).unwrap();
//! assert_eq!(connect.version, ProtocolVersion::V3_1_1);
//! assert_eq!(connect.client_id, "dev1");
//! assert_eq!(connect.username, Some("alice"));
//! ```
#![warn(missing_docs)]

pub mod ack;
pub mod connect;
pub mod error;
pub mod header;
pub mod properties;
pub mod publish;
mod reader;
pub mod subscribe;
#[cfg(test)]
mod test_vectors;
pub mod topic;
pub mod types;

pub use connect::{rewrite_connect, Connect, ConnectLayout, ConnectProperties, Will};
pub use error::Error;
pub use header::{FixedHeader, MAX_REMAINING_LEN};
pub use publish::Publish;
pub use subscribe::{
    Subscribe, SubscribeFilter, SubscribeFilters, Unsubscribe, UnsubscribeFilters,
};
pub use types::{PacketType, ProtocolVersion, QoS};
