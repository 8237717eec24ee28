//! CONNECT, the first packet of every connection: parsing it (protocol
//! version, flags, keep-alive, MQTT 5 properties, client identifier, will,
//! credentials) and rewriting its username and password before it goes to
//! the broker.
//!
//! The parsed packet and its constants are in `packet`, the parser in
//! `parse`, the one rewrite in `rewrite`; this module only gathers them.

mod packet;
mod parse;
mod rewrite;

pub use packet::{
    Connect, ConnectLayout, ConnectProperties, Will, BRIDGE_LEVEL_BIT, FLAG_CLEAN_START,
    FLAG_PASSWORD, FLAG_RESERVED, FLAG_USERNAME, FLAG_WILL, FLAG_WILL_QOS_MASK, FLAG_WILL_RETAIN,
};
pub use rewrite::rewrite_connect;
