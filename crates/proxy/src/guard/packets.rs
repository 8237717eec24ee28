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
};
use prometheus_client::metrics::counter::Counter;

use super::acl::ClientAcl;
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
            to_client: Vec::new(),
        }
    }

    /// The protocol version of the connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
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
mod tests {
    use super::*;
    use crate::guard::acl::{AclRule, Subject};

    fn acl() -> ClientAcl {
        let rule = AclRule {
            publish: vec!["devices/%c/#".into()],
            subscribe: vec!["commands/%c/+".into()],
            ..AclRule::default()
        };
        ClientAcl::resolve(
            &[rule],
            &Subject {
                client_id: "d1",
                username: None,
                identity: None,
            },
        )
    }

    fn session(v: ProtocolVersion, on_deny: OnDeny) -> PacketGuard {
        PacketGuard::new(
            v,
            acl(),
            on_deny,
            1 << 20,
            Arc::new(GuardCounters::default()),
        )
    }

    fn publish(topic: &str, qos: u8, id: u16, payload: &[u8], v5: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&id.to_be_bytes());
        }
        if v5 {
            body.push(0);
        }
        body.extend_from_slice(payload);
        let mut p = vec![0x30 | (qos << 1)];
        encode_varint(body.len() as u32, &mut p).unwrap();
        p.extend(body);
        p
    }

    fn subscribe(id: u16, filters: &[&str], v5: bool) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        if v5 {
            body.push(0);
        }
        for f in filters {
            body.extend_from_slice(&(f.len() as u16).to_be_bytes());
            body.extend_from_slice(f.as_bytes());
            body.push(1);
        }
        let mut p = vec![0x82];
        encode_varint(body.len() as u32, &mut p).unwrap();
        p.extend(body);
        p
    }

    #[test]
    fn allowed_publish_streams_through_in_pieces() {
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        let p = publish("devices/d1/t", 1, 7, &[9u8; 1000], false);
        // Only the first 100 bytes have arrived: decide on them, forward
        // them, then stream the rest as it comes.
        assert_eq!(s.upstream(&p[..100]), Step::Forward(100));
        assert_eq!(s.upstream(&p[100..600]), Step::Forward(500));
        assert_eq!(s.upstream(&p[600..]), Step::Forward(p.len() - 600));
        assert!(s.to_client.is_empty());
    }

    #[test]
    fn denied_qos1_publish_is_dropped_and_acknowledged() {
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        let p = publish("other/x", 1, 7, b"hello", false);
        assert_eq!(s.upstream(&p), Step::Skip(p.len()));
        assert_eq!(s.to_client, [0x40, 0x02, 0x00, 0x07]);
        assert_eq!(s.counters.publish_denied.get(), 1);

        let mut s = session(ProtocolVersion::V5, OnDeny::Acknowledge);
        let p = publish("other/x", 1, 7, b"hello", true);
        assert_eq!(s.upstream(&p), Step::Skip(p.len()));
        assert_eq!(s.to_client, [0x40, 0x03, 0x00, 0x07, 0x87]);
    }

    #[test]
    fn denied_qos2_in_v3_answers_the_pubrel_too() {
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        let p = publish("other/x", 2, 9, b"x", false);
        assert_eq!(s.upstream(&p), Step::Skip(p.len()));
        assert_eq!(s.to_client, [0x50, 0x02, 0x00, 0x09]);
        s.to_client.clear();
        let pubrel = [0x62, 0x02, 0x00, 0x09];
        assert_eq!(s.upstream(&pubrel), Step::Skip(4));
        assert_eq!(s.to_client, [0x70, 0x02, 0x00, 0x09]);
        // Another PUBREL is the broker's business.
        let other = [0x62, 0x02, 0x00, 0x0a];
        assert_eq!(s.upstream(&other), Step::Forward(4));
    }

    #[test]
    fn denial_can_disconnect_instead() {
        let mut s = session(ProtocolVersion::V5, OnDeny::Disconnect);
        let p = publish("other/x", 0, 0, b"x", true);
        assert_eq!(s.upstream(&p), Step::Close(SessionClose::PublishDenied));
        assert_eq!(s.to_client, [0xe0, 0x01, 0x87]);
    }

    #[test]
    fn partial_subscribe_is_split_and_the_suback_merged() {
        for v5 in [false, true] {
            let v = if v5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let mut s = session(v, OnDeny::Acknowledge);
            let p = subscribe(5, &["commands/d1/reboot", "secrets/#", "commands/d1/+"], v5);
            let Step::Replace { consumed, bytes } = s.upstream(&p) else {
                panic!("expected a rewritten SUBSCRIBE")
            };
            assert_eq!(consumed, p.len());
            assert_eq!(
                bytes,
                subscribe(5, &["commands/d1/reboot", "commands/d1/+"], v5)
            );
            // The broker grants both forwarded filters at QoS 1.
            let mut broker = vec![0x90];
            let mut body = vec![0x00, 0x05];
            if v5 {
                body.push(0);
            }
            body.extend([1, 1]);
            encode_varint(body.len() as u32, &mut broker).unwrap();
            broker.extend(body);
            let Step::Replace { bytes, .. } = s.downstream(&broker) else {
                panic!("expected a merged SUBACK")
            };
            let denied = if v5 { 0x87 } else { 0x80 };
            let mut want = Vec::new();
            ack::suback(v, 5, &[1, denied, 1], &mut want).unwrap();
            assert_eq!(bytes, want);
        }
    }

    #[test]
    fn fully_denied_subscribe_never_reaches_the_broker() {
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        let p = subscribe(3, &["#"], false);
        assert_eq!(s.upstream(&p), Step::Skip(p.len()));
        assert_eq!(s.to_client, [0x90, 0x03, 0x00, 0x03, 0x80]);
        assert_eq!(s.counters.subscribe_denied.get(), 1);
    }

    #[test]
    fn oversize_packets_are_refused_before_buffering() {
        let mut s = PacketGuard::new(
            ProtocolVersion::V5,
            acl(),
            OnDeny::Acknowledge,
            1000,
            Arc::new(GuardCounters::default()),
        );
        let p = publish("devices/d1/t", 0, 0, &[0u8; 2000], true);
        assert_eq!(
            s.upstream(&p[..10]),
            Step::Close(SessionClose::PacketTooLarge)
        );
        assert_eq!(s.to_client, [0xe0, 0x01, 0x95]);
        let mut s = PacketGuard::new(
            ProtocolVersion::V3_1_1,
            acl(),
            OnDeny::Acknowledge,
            1000,
            Arc::new(GuardCounters::default()),
        );
        assert_eq!(
            s.upstream(&publish("devices/d1/t", 0, 0, &[0u8; 2000], false)),
            Step::Close(SessionClose::PacketTooLarge)
        );
        assert!(
            s.to_client.is_empty(),
            "MQTT 3 has no DISCONNECT from the server"
        );
    }

    #[test]
    fn topic_aliases_resolve_and_are_checked() {
        let mut s = session(ProtocolVersion::V5, OnDeny::Acknowledge);
        let with_alias = |topic: &str, alias: u16| {
            let mut body = Vec::new();
            body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            body.extend_from_slice(topic.as_bytes());
            body.extend([3, 0x23]);
            body.extend_from_slice(&alias.to_be_bytes());
            body.extend_from_slice(b"payload");
            let mut p = vec![0x30];
            encode_varint(body.len() as u32, &mut p).unwrap();
            p.extend(body);
            p
        };
        let p = with_alias("devices/d1/t", 1);
        assert_eq!(s.upstream(&p), Step::Forward(p.len()));
        let p = with_alias("", 1);
        assert_eq!(s.upstream(&p), Step::Forward(p.len()));
        let p = with_alias("other", 2);
        assert_eq!(s.upstream(&p), Step::Skip(p.len()));
        let p = with_alias("", 2);
        assert_eq!(
            s.upstream(&p),
            Step::Skip(p.len()),
            "alias of a denied topic stays denied"
        );
        let p = with_alias("", 9);
        assert_eq!(s.upstream(&p), Step::Close(SessionClose::TopicAliasInvalid));
    }

    #[test]
    fn other_packets_pass_and_incomplete_headers_wait() {
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        assert_eq!(s.upstream(&[0xc0, 0x00]), Step::Forward(2));
        assert_eq!(s.upstream(&[0x30]), Step::NeedMore);
        assert_eq!(
            s.upstream(&[0x10, 0x00]),
            Step::Close(SessionClose::SecondConnect)
        );
        let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
        assert_eq!(
            s.upstream(&[0xff, 0xff, 0xff, 0xff, 0xff]),
            Step::Close(SessionClose::MalformedPacket)
        );
    }
}
