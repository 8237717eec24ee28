//! The guard's decisions, packet by packet.

use super::*;
use crate::guard::acl::{AclRule, Subject};

/// `rule` resolved for the device with client id `d1` (no username, no
/// identity).
fn for_d1(rule: AclRule) -> ClientAcl {
    ClientAcl::resolve(
        &[rule],
        &Subject {
            client_id: "d1",
            username: None,
            identity: None,
        },
    )
}

fn acl() -> ClientAcl {
    let rule = AclRule {
        publish: vec!["devices/%c/#".into()],
        subscribe: vec!["commands/%c/+".into()],
        ..AclRule::default()
    };
    for_d1(rule)
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
    packet(0x30 | (qos << 1), body)
}

fn subscribe(id: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    packet(0x82, filters_body(id, filters, v5, Some(1)))
}

/// The body of a SUBSCRIBE (each filter followed by `options`) or an
/// UNSUBSCRIBE (`options` none).
fn filters_body(id: u16, filters: &[&str], v5: bool, options: Option<u8>) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f.as_bytes());
        body.extend(options);
    }
    body
}

/// A packet of first byte `first` and `body`.
fn packet(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut p = vec![first];
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
        let mut body = vec![0x00, 0x05];
        if v5 {
            body.push(0);
        }
        body.extend([1, 1]);
        let broker = packet(0x90, body);
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
        packet(0x30, body)
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

fn unsubscribe(id: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    packet(0xa2, filters_body(id, filters, v5, None))
}

fn only_subscribe(filter: &str) -> ClientAcl {
    let rule = AclRule {
        subscribe: vec![filter.into()],
        ..AclRule::default()
    };
    for_d1(rule)
}

#[test]
fn a_reloaded_acl_names_the_granted_subscriptions_it_denies() {
    let mut s = session(ProtocolVersion::V5, OnDeny::Acknowledge);
    s.acl = only_subscribe("#");
    let p = subscribe(1, &["plant/#", "telemetry/t"], true);
    assert_eq!(s.upstream(&p), Step::Forward(p.len()));
    // The same ACL again: nothing to check.
    assert_eq!(
        s.reload_policy(only_subscribe("#"), OnDeny::Acknowledge, 1 << 20),
        Regranted::Allowed
    );
    assert_eq!(
        s.reload_policy(only_subscribe("telemetry/#"), OnDeny::Disconnect, 100),
        Regranted::Denied(vec!["plant/#".into()])
    );
    // The new ACL, on_deny and size limit apply to the next packets.
    let p = subscribe(2, &["plant/x"], true);
    assert_eq!(s.upstream(&p), Step::Close(SessionClose::SubscribeDenied));
    let mut s = session(ProtocolVersion::V5, OnDeny::Acknowledge);
    s.reload_policy(only_subscribe("#"), OnDeny::Acknowledge, 10);
    let p = publish("devices/d1/t", 0, 0, &[0u8; 20], true);
    assert_eq!(s.upstream(&p), Step::Close(SessionClose::PacketTooLarge));
}

#[test]
fn only_the_filters_let_through_are_granted_and_unsubscribe_forgets_them() {
    // commands/d1/+ is allowed, other/# is denied and never reaches the
    // broker, so it is not granted.
    let mut s = session(ProtocolVersion::V3_1_1, OnDeny::Acknowledge);
    let p = subscribe(3, &["commands/d1/+", "other/#"], false);
    assert!(matches!(s.upstream(&p), Step::Replace { .. }));
    assert_eq!(
        s.reload_policy(only_subscribe("nothing/else"), OnDeny::Acknowledge, 1 << 20),
        Regranted::Denied(vec!["commands/d1/+".into()])
    );
    let u = unsubscribe(4, &["commands/d1/+"], false);
    // Split across reads: the guard waits for the whole UNSUBSCRIBE.
    assert_eq!(s.upstream(&u[..3]), Step::NeedMore);
    assert_eq!(s.upstream(&u), Step::Forward(u.len()));
    assert_eq!(
        s.reload_policy(only_subscribe("other/#"), OnDeny::Acknowledge, 1 << 20),
        Regranted::Allowed
    );
}
