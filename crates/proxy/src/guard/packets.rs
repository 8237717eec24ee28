//! The MQTT guard: what to do with each packet of one connection.
//!
//! The relay hands the guard the bytes it has read, and the guard answers
//! with one step at a time: forward the next `n` bytes, skip them, send
//! these bytes instead, or wait for more. It never copies a payload: a
//! PUBLISH is decided on its variable header, and its payload then streams
//! through (or is skipped) as it arrives. Replies the proxy itself owes the
//! client (PUBACK/PUBREC for a denied publish, SUBACK for denied filters,
//! DISCONNECT) are queued in [`PacketGuard::to_client`] and written by the relay
//! between two packets of the broker's stream, never inside one.
//!
//! Pure logic: no I/O. Counters are atomics handed in by the caller.

use std::collections::HashMap;
use std::sync::Arc;

use moat_mqtt::{
    ack, header::encode_varint, FixedHeader, PacketType, ProtocolVersion, Publish, QoS, Subscribe,
    Unsubscribe,
};
use prometheus_client::metrics::counter::Counter;

use super::acl::ClientAcl;
use super::granted::{Granted, Regranted};
use crate::config::OnDeny;
use crate::metrics::reason::reasons;

reasons! {
    /// Why the guard closed a session after its CONNECT
    /// (`moat_mqtt_sessions_closed_total`).
    pub enum SessionClose {
        /// A packet that does not parse.
        MalformedPacket => "malformed_packet",
        /// A packet over `max_packet_size`, or too large to decide on.
        PacketTooLarge => "packet_too_large",
        /// A second CONNECT.
        SecondConnect => "second_connect",
        /// A PUBLISH denied by the ACL, with `on_deny: disconnect`.
        PublishDenied => "publish_denied",
        /// A SUBSCRIBE denied by the ACL, with `on_deny: disconnect`.
        SubscribeDenied => "subscribe_denied",
        /// A topic alias that was never set.
        TopicAliasInvalid => "topic_alias_invalid",
        /// Topic aliases over the memory the guard keeps for them.
        TopicAliasQuota => "topic_alias_quota",
        /// Too many denied QoS 2 publishes or partial SUBSCRIBEs pending.
        TooManyPending => "too_many_pending",
        /// Over `mqtt.limits` for longer than `disconnect_after`.
        RateExceeded => "rate_exceeded",
    }
}

/// Largest control packet (CONNECT, SUBSCRIBE, ...) or PUBLISH variable
/// header the guard will buffer to decide on it.
pub const MAX_BUFFERED_PACKET: usize = 128 * 1024;

/// Largest total size of topic-alias names remembered per connection.
const MAX_ALIAS_BYTES: usize = 64 * 1024;

/// Most denied QoS 2 publishes (MQTT 3) awaiting their PUBREL, and most
/// partially denied SUBSCRIBEs awaiting their SUBACK.
const MAX_PENDING: usize = 64;

/// What the relay should do with the bytes at the front of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the next `n` input bytes on unchanged.
    Forward(usize),
    /// Drop the next `n` input bytes.
    Skip(usize),
    /// Drop the next `consumed` input bytes and send `bytes` instead.
    Replace {
        /// Input bytes consumed.
        consumed: usize,
        /// What to send in their place.
        bytes: Vec<u8>,
    },
    /// Not enough bytes to decide; read more, keeping these.
    NeedMore,
    /// End the connection after writing [`PacketGuard::to_client`], for this
    /// reason.
    Close(SessionClose),
}

/// Counters the guard updates.
#[derive(Clone, Default)]
pub struct GuardCounters {
    /// Denied PUBLISH packets.
    pub publish_denied: Counter,
    /// Denied SUBSCRIBE filters.
    pub subscribe_denied: Counter,
}

/// A partially denied SUBSCRIBE waiting for the broker's SUBACK.
#[derive(Debug, Clone)]
struct PendingSuback {
    packet_id: u16,
    /// Our code for a denied filter, `None` for one the broker answers.
    codes: Vec<Option<u8>>,
}

/// The state of one MQTT connection after its CONNECT was accepted.
pub struct PacketGuard {
    version: ProtocolVersion,
    acl: ClientAcl,
    on_deny: OnDeny,
    max_packet_size: u32,
    counters: Arc<GuardCounters>,
    /// Bytes of the current client packet still to forward (true) or skip.
    up_rest: Option<(bool, usize)>,
    /// Bytes of the current broker packet still to forward.
    down_rest: usize,
    aliases: HashMap<u16, String>,
    alias_bytes: usize,
    qos2_denied: Vec<u16>,
    subacks: Vec<PendingSuback>,
    /// The filters forwarded to the broker, for a reloaded ACL.
    granted: Granted,
    /// PUBLISH packets let through, for the rate limits.
    publishes: u64,
    /// Packets the proxy owes the client, written between broker packets.
    pub to_client: Vec<u8>,
}

impl PacketGuard {
    /// A session for a client whose CONNECT was accepted.
    pub fn new(
        version: ProtocolVersion,
        acl: ClientAcl,
        on_deny: OnDeny,
        max_packet_size: u32,
        counters: Arc<GuardCounters>,
    ) -> Self {
        Self {
            version,
            acl,
            on_deny,
            max_packet_size,
            counters,
            up_rest: None,
            down_rest: 0,
            aliases: HashMap::new(),
            alias_bytes: 0,
            qos2_denied: Vec::new(),
            subacks: Vec::new(),
            granted: Granted::default(),
            publishes: 0,
            to_client: Vec::new(),
        }
    }

    /// The protocol version of the connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Puts a reloaded ACL, `on_deny` and `max_packet_size` in place for
    /// the packets that follow, and says what the new ACL makes of the
    /// subscriptions already granted: the broker goes on delivering on
    /// them, so the caller ends a session that may no longer receive on
    /// one.
    pub fn reload_policy(
        &mut self,
        acl: ClientAcl,
        on_deny: OnDeny,
        max_packet_size: u32,
    ) -> Regranted {
        let verdict = if acl == self.acl {
            Regranted::Allowed
        } else {
            self.granted.denied_by(&acl)
        };
        self.acl = acl;
        self.on_deny = on_deny;
        self.max_packet_size = max_packet_size;
        verdict
    }

    /// Queues the DISCONNECT "message rate too high" (MQTT 5) of a session
    /// the rate limits end.
    pub fn rate_exceeded(&mut self) {
        ack::disconnect(
            self.version,
            ack::reason::MESSAGE_RATE_TOO_HIGH,
            &mut self.to_client,
        );
    }

    /// How many PUBLISH packets the client has sent on so far.
    pub fn publishes(&self) -> u64 {
        self.publishes
    }

    /// Whether the broker's stream is between two packets, so that the
    /// proxy's own packets may be written to the client.
    pub fn at_client_boundary(&self) -> bool {
        self.down_rest == 0
    }

    /// Closes with a v5 DISCONNECT carrying `code` (v3 has none).
    fn disconnect(&mut self, code: u8, reason: SessionClose) -> Step {
        ack::disconnect(self.version, code, &mut self.to_client);
        Step::Close(reason)
    }

    fn start_packet(&mut self, forward: bool, total: usize, available: usize) -> Step {
        let n = total.min(available);
        if n < total {
            self.up_rest = Some((forward, total - n));
        }
        if forward {
            Step::Forward(n)
        } else {
            Step::Skip(n)
        }
    }

    /// Decides on the client's bytes at the front of `input` (non-empty).
    pub fn upstream(&mut self, input: &[u8]) -> Step {
        if let Some((forward, rest)) = self.up_rest {
            let n = rest.min(input.len());
            self.up_rest = (rest > n).then_some((forward, rest - n));
            return if forward {
                Step::Forward(n)
            } else {
                Step::Skip(n)
            };
        }
        let header = match FixedHeader::parse(input) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::NeedMore,
            Err(_) => {
                return self
                    .disconnect(ack::reason::MALFORMED_PACKET, SessionClose::MalformedPacket)
            }
        };
        let total = header.total_len();
        if header.exceeds(self.max_packet_size) {
            return self.disconnect(ack::reason::PACKET_TOO_LARGE, SessionClose::PacketTooLarge);
        }
        match header.packet_type {
            PacketType::Publish => self.publish(input, total),
            PacketType::Subscribe => self.subscribe(input, total),
            PacketType::Unsubscribe if !self.granted.is_empty() => self.unsubscribe(input, total),
            PacketType::Pubrel if !self.qos2_denied.is_empty() => {
                if input.len() < total {
                    return Step::NeedMore;
                }
                let id = input
                    .get(header.header_len..header.header_len + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]));
                match id.and_then(|id| {
                    self.qos2_denied
                        .iter()
                        .position(|d| *d == id)
                        .map(|i| (i, id))
                }) {
                    Some((i, id)) => {
                        // The broker never saw this publish: complete the
                        // exchange ourselves.
                        self.qos2_denied.swap_remove(i);
                        ack::pubcomp(self.version, id, ack::reason::SUCCESS, &mut self.to_client);
                        Step::Skip(total)
                    }
                    None => self.start_packet(true, total, input.len()),
                }
            }
            PacketType::Connect => {
                self.disconnect(ack::reason::PROTOCOL_ERROR, SessionClose::SecondConnect)
            }
            _ => self.start_packet(true, total, input.len()),
        }
    }

    fn publish(&mut self, input: &[u8], total: usize) -> Step {
        let p = match Publish::parse_prefix(input, self.version) {
            Ok(Some(p)) => p,
            Ok(None) if input.len() >= MAX_BUFFERED_PACKET => {
                return self.disconnect(ack::reason::PACKET_TOO_LARGE, SessionClose::PacketTooLarge)
            }
            Ok(None) => return Step::NeedMore,
            Err(_) => {
                return self
                    .disconnect(ack::reason::MALFORMED_PACKET, SessionClose::MalformedPacket)
            }
        };
        // MQTT 5 topic aliases: remember name-and-alias, resolve alias-only.
        let topic: &str = match (p.topic.is_empty(), p.topic_alias) {
            (false, Some(alias)) => {
                let old = self.aliases.get(&alias).map_or(0, String::len);
                if self.alias_bytes - old + p.topic.len() > MAX_ALIAS_BYTES {
                    return self
                        .disconnect(ack::reason::QUOTA_EXCEEDED, SessionClose::TopicAliasQuota);
                }
                self.alias_bytes = self.alias_bytes - old + p.topic.len();
                self.aliases.insert(alias, p.topic.to_string());
                p.topic
            }
            (false, None) => p.topic,
            (true, Some(alias)) => match self.aliases.get(&alias) {
                Some(t) => t.as_str(),
                None => {
                    return self.disconnect(
                        ack::reason::TOPIC_ALIAS_INVALID,
                        SessionClose::TopicAliasInvalid,
                    )
                }
            },
            (true, None) => {
                return self.disconnect(ack::reason::PROTOCOL_ERROR, SessionClose::MalformedPacket)
            }
        };
        if self.acl.may_publish(topic) {
            self.publishes += 1;
            return self.start_packet(true, total, input.len());
        }
        self.counters.publish_denied.inc();
        tracing::info!(topic, qos = ?p.qos, "publish denied by the topic ACL");
        if self.on_deny == OnDeny::Disconnect {
            return self.disconnect(ack::reason::NOT_AUTHORIZED, SessionClose::PublishDenied);
        }
        // Mosquitto's semantics: the publish is dropped, but acknowledged so
        // the client does not retry it forever.
        let denied = if self.version.is_v5() {
            ack::reason::NOT_AUTHORIZED
        } else {
            ack::reason::SUCCESS
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                ack::puback(self.version, id, denied, &mut self.to_client)
            }
            (QoS::ExactlyOnce, Some(id)) => {
                ack::pubrec(self.version, id, denied, &mut self.to_client);
                // In MQTT 5 a failure code ends the exchange; before it the
                // client goes on with PUBREL, which we answer.
                if !self.version.is_v5() {
                    if self.qos2_denied.len() >= MAX_PENDING {
                        return self.disconnect(
                            ack::reason::RECEIVE_MAXIMUM_EXCEEDED,
                            SessionClose::TooManyPending,
                        );
                    }
                    self.qos2_denied.push(id);
                }
            }
            _ => {}
        }
        self.start_packet(false, total, input.len())
    }

    fn subscribe(&mut self, input: &[u8], total: usize) -> Step {
        if total > MAX_BUFFERED_PACKET {
            return self.disconnect(ack::reason::PACKET_TOO_LARGE, SessionClose::PacketTooLarge);
        }
        if input.len() < total {
            return Step::NeedMore;
        }
        let packet = &input[..total];
        let sub = match Subscribe::parse(packet, self.version) {
            Ok(s) => s,
            Err(_) => {
                return self
                    .disconnect(ack::reason::MALFORMED_PACKET, SessionClose::MalformedPacket)
            }
        };
        let mut codes: Vec<Option<u8>> = Vec::with_capacity(sub.count);
        let denied_code = if self.version.is_v5() {
            ack::reason::NOT_AUTHORIZED
        } else {
            ack::SUBACK_FAILURE_V3
        };
        for f in sub.filters() {
            if self.acl.may_subscribe(f.filter) {
                codes.push(None);
            } else {
                self.counters.subscribe_denied.inc();
                tracing::info!(filter = f.filter, "subscription denied by the topic ACL");
                codes.push(Some(denied_code));
            }
        }
        let denied = codes.iter().filter(|c| c.is_some()).count();
        if denied == 0 {
            sub.filters().for_each(|f| self.granted.grant(f.filter));
            return Step::Forward(total);
        }
        if self.on_deny == OnDeny::Disconnect {
            return self.disconnect(ack::reason::NOT_AUTHORIZED, SessionClose::SubscribeDenied);
        }
        if denied == codes.len() {
            let all: Vec<u8> = codes.iter().map(|c| c.unwrap_or(denied_code)).collect();
            // Cannot fail: `all` is not empty.
            let _ = ack::suback(self.version, sub.packet_id, &all, &mut self.to_client);
            return Step::Skip(total);
        }
        if self.subacks.len() >= MAX_PENDING {
            return self.disconnect(
                ack::reason::RECEIVE_MAXIMUM_EXCEEDED,
                SessionClose::TooManyPending,
            );
        }
        // Forward only the allowed filters; merge the broker's SUBACK later.
        let mut body = Vec::with_capacity(total);
        body.extend_from_slice(&sub.packet_id.to_be_bytes());
        if self.version.is_v5() {
            let _ = encode_varint(sub.properties.len() as u32, &mut body);
            body.extend_from_slice(sub.properties);
        }
        for (f, code) in sub.filters().zip(&codes) {
            if code.is_none() {
                self.granted.grant(f.filter);
                body.extend_from_slice(&(f.filter.len() as u16).to_be_bytes());
                body.extend_from_slice(f.filter.as_bytes());
                body.push(f.options);
            }
        }
        let mut bytes = Vec::with_capacity(body.len() + 5);
        bytes.push(0x82);
        let _ = encode_varint(body.len() as u32, &mut bytes);
        bytes.extend_from_slice(&body);
        self.subacks.push(PendingSuback {
            packet_id: sub.packet_id,
            codes,
        });
        Step::Replace {
            consumed: total,
            bytes,
        }
    }

    /// Forgets the filters of an UNSUBSCRIBE, then forwards it. One the
    /// guard cannot read goes on to the broker, which judges it; its
    /// filters stay granted.
    fn unsubscribe(&mut self, input: &[u8], total: usize) -> Step {
        if total > MAX_BUFFERED_PACKET {
            return self.start_packet(true, total, input.len());
        }
        if input.len() < total {
            return Step::NeedMore;
        }
        if let Ok(unsub) = Unsubscribe::parse(&input[..total], self.version) {
            unsub.filters().for_each(|f| self.granted.revoke(f));
        }
        Step::Forward(total)
    }

    /// Decides on the broker's bytes at the front of `input` (non-empty).
    pub fn downstream(&mut self, input: &[u8]) -> Step {
        if self.down_rest > 0 {
            let n = self.down_rest.min(input.len());
            self.down_rest -= n;
            return Step::Forward(n);
        }
        let header = match FixedHeader::parse(input) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::NeedMore,
            // The broker is trusted to speak MQTT; pass what it says.
            Err(_) => return Step::Forward(input.len()),
        };
        let total = header.total_len();
        if header.packet_type == PacketType::Suback && !self.subacks.is_empty() {
            if input.len() < total {
                return if total > MAX_BUFFERED_PACKET {
                    Step::Close(SessionClose::PacketTooLarge)
                } else {
                    Step::NeedMore
                };
            }
            if let Some(bytes) = self.merge_suback(&input[header.header_len..total]) {
                return Step::Replace {
                    consumed: total,
                    bytes,
                };
            }
        }
        let n = total.min(input.len());
        self.down_rest = total - n;
        Step::Forward(n)
    }

    /// Rebuilds a SUBACK with our denial codes in their places, if it
    /// answers a partially denied SUBSCRIBE.
    fn merge_suback(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let id = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
        let index = self.subacks.iter().position(|s| s.packet_id == id)?;
        let mut rest = &body[2..];
        if self.version.is_v5() {
            let (len, used) = moat_mqtt::header::decode_varint(rest).ok()??;
            rest = rest.get(used + len as usize..)?;
        }
        let pending = self.subacks.swap_remove(index);
        let mut broker = rest.iter();
        let merged: Vec<u8> = pending
            .codes
            .iter()
            .map(|c| {
                c.or_else(|| broker.next().copied())
                    .unwrap_or(ack::SUBACK_FAILURE_V3)
            })
            .collect();
        let mut out = Vec::with_capacity(merged.len() + 6);
        ack::suback(self.version, id, &merged, &mut out).ok()?;
        Some(out)
    }
}

#[cfg(test)]
mod tests;
