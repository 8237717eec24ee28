//! Feeds arbitrary bytes to every moat-mqtt parser, checks the invariants
//! that must hold for any input, and round-trips every CONNECT that parses
//! through `rewrite_connect`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_mqtt::header::decode_varint;
use moat_mqtt::properties::Properties;
use moat_mqtt::topic::{
    acl_covers_subscription, topic_matches, valid_topic_filter, valid_topic_name,
};
use moat_mqtt::{
    rewrite_connect, Connect, FixedHeader, PacketType, ProtocolVersion, Publish, Subscribe,
    Unsubscribe,
};

fuzz_target!(|data: &[u8]| {
    // Every parser on the raw input.
    scan_one(data);

    // The input as a stream of packets, the way the relay walks its buffer.
    let mut rest = data;
    let mut version = ProtocolVersion::V3_1_1;
    while let Ok(Some(header)) = FixedHeader::parse(rest) {
        let Some(packet) = rest.get(..header.total_len()) else {
            break;
        };
        match header.packet_type {
            PacketType::Connect => {
                if let Ok(connect) = Connect::parse(packet) {
                    version = connect.version;
                }
            }
            PacketType::Publish => {
                let _ = Publish::parse_prefix(packet, version);
            }
            PacketType::Subscribe => {
                let _ = Subscribe::parse(packet, version);
            }
            PacketType::Unsubscribe => {
                let _ = Unsubscribe::parse(packet, version);
            }
            _ => {}
        }
        rest = &rest[header.total_len()..];
    }

    // Topic functions on the input split in two at the first NUL.
    if let Ok(text) = std::str::from_utf8(data) {
        let (a, b) = text.split_once('\0').unwrap_or((text, ""));
        for (x, y) in [(a, b), (b, a)] {
            let _ = valid_topic_name(x);
            let _ = valid_topic_filter(x);
            let _ = acl_covers_subscription(x, y);
            if topic_matches(x, y) {
                assert!(valid_topic_filter(x) && valid_topic_name(y));
            }
        }
    }
});

fn scan_one(data: &[u8]) {
    let _ = decode_varint(data);
    let _ = Properties::new(data).count();

    if let Ok(Some(header)) = FixedHeader::parse(data) {
        assert!((2..=5).contains(&header.header_len));
    }

    for version in ProtocolVersion::ALL {
        if let Ok(Some(publish)) = Publish::parse_prefix(data, version) {
            assert!(publish.header_len <= publish.total_len);
            assert!(publish.header_len <= data.len());
            // The header parses the same from its shortest complete prefix.
            assert_eq!(
                Publish::parse_prefix(&data[..publish.header_len], version),
                Ok(Some(publish))
            );
            assert!(publish.topic.is_empty() || valid_topic_name(publish.topic));
        }
        if let Ok(subscribe) = Subscribe::parse(data, version) {
            assert!(subscribe.count >= 1);
            assert_eq!(subscribe.filters().count(), subscribe.count);
            for entry in subscribe.filters() {
                assert!(valid_topic_filter(entry.filter));
            }
        }
        if let Ok(unsubscribe) = Unsubscribe::parse(data, version) {
            assert!(unsubscribe.count >= 1);
            assert_eq!(unsubscribe.filters().count(), unsubscribe.count);
        }
    }

    if let Ok(connect) = Connect::parse(data) {
        let drop_password = data.last().is_some_and(|b| b & 1 == 1);
        for new_username in ["moat-gateway", ""] {
            let mut out = Vec::new();
            rewrite_connect(data, &connect, Some(new_username), drop_password, &mut out)
                .expect("rewriting a parsed CONNECT succeeds");
            let again = Connect::parse(&out).expect("a rewritten CONNECT parses");
            assert_eq!(again.total_len(), out.len());
            assert_eq!(again.username, Some(new_username));
            assert_eq!(again.version, connect.version);
            assert_eq!(again.protocol_level, connect.protocol_level);
            assert_eq!(again.clean_start, connect.clean_start);
            assert_eq!(again.keep_alive, connect.keep_alive);
            assert_eq!(again.properties.raw, connect.properties.raw);
            assert_eq!(again.client_id, connect.client_id);
            assert_eq!(again.will, connect.will);
            if drop_password {
                assert_eq!(again.password, None);
            } else {
                assert_eq!(again.password, connect.password);
            }
        }
        // Keeping the credentials reproduces the packet byte for byte when
        // its remaining length was minimally encoded.
        let mut same = Vec::new();
        rewrite_connect(data, &connect, None, false, &mut same).expect("identity rewrite");
        let header = FixedHeader::parse(data)
            .ok()
            .flatten()
            .expect("parsed above");
        if header.header_len == 1 + moat_mqtt::header::varint_len(header.remaining_len) {
            assert_eq!(&same[..], &data[..connect.total_len()]);
        }
    }
}
