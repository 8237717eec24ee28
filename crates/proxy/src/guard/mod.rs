//! MQTT policy for one connection, pure: no I/O, so every rule is
//! unit-tested and fuzzed.
//!
//! - `connect`: the CONNECT phase: identity binding, username rewrite,
//!   the will topic, and the session's ACL, decided before the broker is
//!   connected;
//! - `acl`: topic ACL rules with Mosquitto's semantics;
//! - `granted`: the subscriptions let through, for a reloaded ACL to
//!   check again;
//! - `packets`: the decisions on every packet after CONNECT (forward, skip,
//!   replace, wait) and the replies owed to the client.
//!
//! The relay (`relay::mqtt`) applies these decisions to the bytes; the
//! scanning itself is `moat-mqtt`'s, zero-copy.

pub mod acl;
pub mod connect;
pub mod granted;
pub mod packets;
