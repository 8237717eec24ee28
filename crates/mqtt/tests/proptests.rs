//! Property tests: topic matching laws, and "no input makes a parser panic"
//! for every parser, on random bytes and on mutated real packets.

use moat_mqtt::ack;
use moat_mqtt::header::decode_varint;
use moat_mqtt::properties::Properties;
use moat_mqtt::topic::{
    acl_covers_subscription, topic_matches, valid_topic_filter, valid_topic_name,
};
use moat_mqtt::{
    rewrite_connect, Connect, FixedHeader, ProtocolVersion, Publish, Subscribe, Unsubscribe,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------

/// A literal level from a small alphabet, so that generated filters and
/// topics share levels often. Includes the empty level and a `$` level.
fn literal_level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("$SYS".to_string()),
        "[a-c]{1,3}",
        "\\PC{1,4}".prop_filter("no wildcards, separators or NUL", |s| {
            !s.contains(['+', '#', '/', '\0'])
        }),
    ]
}

fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(literal_level(), 1..6)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid topic name", |t| valid_topic_name(t))
}

fn filter_level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => literal_level(),
        1 => Just("+".to_string()),
    ]
}

fn topic_filter() -> impl Strategy<Value = String> {
    (prop::collection::vec(filter_level(), 1..6), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_string());
            }
            levels.join("/")
        })
        .prop_filter("valid topic filter", |f| valid_topic_filter(f))
}

/// A straightforward recursive matcher over level slices, the executable
/// reading of the specification that `topic_matches` is checked against.
fn reference_matches(filter: &[&str], topic: &[&str]) -> bool {
    match (filter.split_first(), topic.split_first()) {
        (Some((&"#", _)), _) => true,
        (Some((&"+", f_rest)), Some((_, t_rest))) => reference_matches(f_rest, t_rest),
        (Some((f, f_rest)), Some((t, t_rest))) => f == t && reference_matches(f_rest, t_rest),
        (None, None) => true,
        _ => false,
    }
}

/// Turns a filter into a topic it matches: `+` becomes a literal, `#`
/// becomes zero or more literal levels.
fn instantiate(filter: &str, fill: &[String]) -> String {
    let mut fill = fill.iter().cycle();
    let mut levels = Vec::new();
    for level in filter.split('/') {
        match level {
            "+" => levels.push(fill.next().cloned().unwrap_or_default()),
            "#" => {
                let n = fill.next().map_or(0, |s| s.len() % 3);
                for _ in 0..n {
                    levels.push(fill.next().cloned().unwrap_or_default());
                }
            }
            literal => levels.push(literal.to_string()),
        }
    }
    levels.join("/")
}

proptest! {
    #[test]
    fn a_topic_matches_itself(topic in topic_name()) {
        prop_assert!(valid_topic_filter(&topic));
        prop_assert!(topic_matches(&topic, &topic));
    }

    #[test]
    fn hash_matches_every_non_dollar_topic(topic in topic_name()) {
        prop_assert_eq!(topic_matches("#", &topic), !topic.starts_with('$'));
    }

    #[test]
    fn plus_for_one_level_still_matches(topic in topic_name(), index in any::<prop::sample::Index>()) {
        let mut levels: Vec<&str> = topic.split('/').collect();
        let i = index.index(levels.len());
        levels[i] = "+";
        let filter = levels.join("/");
        let dollar_blocked = i == 0 && topic.starts_with('$');
        prop_assert_eq!(topic_matches(&filter, &topic), !dollar_blocked, "{}", filter);
    }

    #[test]
    fn hash_for_a_suffix_still_matches(topic in topic_name(), index in any::<prop::sample::Index>()) {
        let levels: Vec<&str> = topic.split('/').collect();
        // Replace levels i.. with `#`; i == len means "topic/#", which
        // matches the topic as its parent.
        let i = index.index(levels.len() + 1);
        let mut filter_levels = levels[..i].to_vec();
        filter_levels.push("#");
        let filter = filter_levels.join("/");
        let dollar_blocked = i == 0 && topic.starts_with('$');
        prop_assert_eq!(topic_matches(&filter, &topic), !dollar_blocked, "{}", filter);
    }

    #[test]
    fn dollar_topics_never_match_leading_wildcards(
        rest in topic_name(),
        filter in topic_filter(),
    ) {
        let topic = format!("$x/{rest}");
        if filter.starts_with('+') || filter.starts_with('#') {
            prop_assert!(!topic_matches(&filter, &topic));
        }
    }

    #[test]
    fn matching_agrees_with_reference(filter in topic_filter(), topic in topic_name()) {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        let dollar_blocked = topic.starts_with('$') && matches!(f[0], "+" | "#");
        prop_assert_eq!(
            topic_matches(&filter, &topic),
            !dollar_blocked && reference_matches(&f, &t)
        );
    }

    #[test]
    fn instantiated_filters_match(filter in topic_filter(), fill in prop::collection::vec("[a-c]{0,2}", 1..4)) {
        let topic = instantiate(&filter, &fill);
        prop_assume!(valid_topic_name(&topic));
        let dollar_blocked = topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#'));
        prop_assert_eq!(topic_matches(&filter, &topic), !dollar_blocked);
    }

    #[test]
    fn acl_covers_itself(filter in topic_filter()) {
        prop_assert!(acl_covers_subscription(&filter, &filter));
    }

    /// If an ACL covers a subscription, every topic the subscription
    /// receives is one the ACL matches: checked on topics built from the
    /// subscription and on unrelated random topics.
    #[test]
    fn acl_coverage_implies_matching(
        acl in topic_filter(),
        sub in topic_filter(),
        fill in prop::collection::vec("[ab]{0,1}", 1..4),
        other in topic_name(),
    ) {
        if acl_covers_subscription(&acl, &sub) {
            let derived = instantiate(&sub, &fill);
            for topic in [derived.as_str(), other.as_str()] {
                if topic_matches(&sub, topic) {
                    prop_assert!(topic_matches(&acl, topic), "acl {} sub {} topic {}", acl, sub, topic);
                }
            }
        }
    }

    /// An ACL made from a subscription by turning levels into `+` and
    /// cutting a tail off into `#` covers it (unless that puts a wildcard
    /// over a leading `$` level), and then matches every topic the
    /// subscription does.
    #[test]
    fn generalised_acl_covers(
        sub in topic_filter(),
        plus in prop::collection::vec(any::<bool>(), 8),
        cut in any::<prop::sample::Index>(),
        use_cut in any::<bool>(),
        fill in prop::collection::vec("[ab]{0,1}", 1..4),
    ) {
        let levels: Vec<&str> = sub.split('/').collect();
        let mut acl: Vec<&str> = levels
            .iter()
            .zip(plus.iter().cycle())
            .map(|(&level, &p)| if p && level != "#" { "+" } else { level })
            .collect();
        if use_cut {
            acl.truncate(cut.index(levels.len() + 1));
            if acl.last() != Some(&"#") {
                acl.push("#");
            }
        }
        let acl = acl.join("/");
        prop_assume!(valid_topic_filter(&acl));
        let dollar_blocked = sub.starts_with('$') && (acl.starts_with('+') || acl.starts_with('#'));
        prop_assert_eq!(acl_covers_subscription(&acl, &sub), !dollar_blocked, "acl {}", acl);
        let topic = instantiate(&sub, &fill);
        if !dollar_blocked && topic_matches(&sub, &topic) {
            prop_assert!(topic_matches(&acl, &topic), "acl {} topic {}", acl, topic);
        }
    }

    /// Without wildcards in the subscription, coverage is plain matching.
    #[test]
    fn acl_on_a_plain_topic_is_matching(acl in topic_filter(), topic in topic_name()) {
        let by_mosquitto_dollar_rule = acl.starts_with('$') != topic.starts_with('$');
        let expected = !by_mosquitto_dollar_rule && topic_matches(&acl, &topic);
        prop_assert_eq!(acl_covers_subscription(&acl, &topic), expected);
    }

    #[test]
    fn topic_functions_never_panic(a in "\\PC{0,20}", b in "[a+#/$\\x00]{0,12}") {
        for (x, y) in [(&a, &b), (&b, &a), (&a, &a), (&b, &b)] {
            let _ = valid_topic_name(x);
            let _ = valid_topic_filter(x);
            let _ = topic_matches(x, y);
            let _ = acl_covers_subscription(x, y);
        }
    }
}

// ---------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------

/// A few packets captured from mosquitto_pub / mosquitto_sub 2.0.11 (see
/// src/test_vectors.rs for the command lines).
const SEEDS: &[&str] = &[
    "101b00044d51545404c2003c0004646576310005616c69636500027077",
    "101d00064d514973647003c2003c0004646576310005616c69636500027077",
    "101f00044d51545405c2003c032100140004646576310005616c69636500027077",
    "102600044d515454042e001e000464657632000b7374617475732f6465763200076f66666c696e65",
    "105300044d5154540596003c171100000e10210014270001000022000a2600016b00017600046465763312\
     180000000a03000a746578742f706c61696e000b7374617475732f646576330004676f6e650003626f62",
    "3017001173656e736f72732f646576312f74656d7032312e35",
    "341a001173656e736f72732f646576312f74656d7000010032312e35",
    "321b000b616c6961732f746f70696300010a2300032600016100016278",
    "82330001000e73656e736f72732f2b2f74656d70010008616c657274732f230100122453\
     59532f62726f6b65722f757074696d6501",
    "82200001090b0726000178000179000973656e736f72732f23010005636d642f2b01",
    "a20c00020000076f6c642f2b2f78",
    "a209000300056f6c642f23",
];

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Runs every parser over `bytes` and checks the invariants that must hold
/// whatever the input.
fn scan_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = decode_varint(bytes);
    let _ = Properties::new(bytes).count();
    if let Ok(Some(h)) = FixedHeader::parse(bytes) {
        prop_assert!((2..=5).contains(&h.header_len));
        prop_assert_eq!(h.total_len(), h.header_len + h.remaining_len as usize);
    }
    for version in ProtocolVersion::ALL {
        if let Ok(Some(p)) = Publish::parse_prefix(bytes, version) {
            prop_assert!(p.header_len <= p.total_len);
            prop_assert!(p.header_len <= bytes.len());
            // Every longer prefix parses to the same header.
            for cut in p.header_len..bytes.len().min(p.total_len) {
                prop_assert_eq!(Publish::parse_prefix(&bytes[..cut], version), Ok(Some(p)));
            }
        }
        if let Ok(s) = Subscribe::parse(bytes, version) {
            prop_assert_eq!(s.filters().count(), s.count);
            prop_assert!(s.filters().all(|f| valid_topic_filter(f.filter)));
        }
        if let Ok(u) = Unsubscribe::parse(bytes, version) {
            prop_assert_eq!(u.filters().count(), u.count);
        }
    }
    if let Ok(c) = Connect::parse(bytes) {
        for (user, drop) in [(Some("gw"), true), (None, false), (Some(""), false)] {
            let mut out = Vec::new();
            rewrite_connect(bytes, &c, user, drop, &mut out).unwrap();
            let again = Connect::parse(&out).unwrap();
            prop_assert_eq!(again.username, user.or(c.username));
            prop_assert_eq!(again.password, if drop { None } else { c.password });
            prop_assert_eq!(again.client_id, c.client_id);
            prop_assert_eq!(&again.will, &c.will);
            prop_assert_eq!(again.properties.raw, c.properties.raw);
        }
    }
    Ok(())
}

fn mutated_seed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(seed, edits, cut, truncate)| {
            let mut bytes = hex(seed);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        scan_everything(&bytes)?;
    }

    #[test]
    fn mutated_packets_never_panic(bytes in mutated_seed()) {
        scan_everything(&bytes)?;
    }

    #[test]
    fn rewrite_any_username(
        seed in prop::sample::select(&SEEDS[..5]),
        user in "[^\\x00]{0,300}",
        drop in any::<bool>(),
    ) {
        let bytes = hex(seed);
        let c = Connect::parse(&bytes).unwrap();
        let mut out = Vec::new();
        rewrite_connect(&bytes, &c, Some(&user), drop, &mut out).unwrap();
        let again = Connect::parse(&out).unwrap();
        prop_assert_eq!(again.username, Some(user.as_str()));
        prop_assert_eq!(again.keep_alive, c.keep_alive);
        prop_assert_eq!(again.client_id, c.client_id);
        prop_assert_eq!(&again.will, &c.will);
        prop_assert_eq!(again.password, if drop { None } else { c.password });
    }

    #[test]
    fn encoders_frame_correctly(
        id in any::<u16>(),
        code in any::<u8>(),
        codes in prop::collection::vec(any::<u8>(), 1..300),
        session in any::<bool>(),
    ) {
        for version in ProtocolVersion::ALL {
            let mut out = Vec::new();
            ack::connack(version, session, code, &mut out);
            ack::puback(version, id, code, &mut out);
            ack::pubrec(version, id, code, &mut out);
            ack::pubrel(version, id, code, &mut out);
            ack::pubcomp(version, id, code, &mut out);
            ack::suback(version, id, &codes, &mut out).unwrap();
            ack::unsuback(version, id, &codes, &mut out).unwrap();
            ack::disconnect(version, code, &mut out);
            ack::pingresp(&mut out);
            // The concatenation splits back into whole packets.
            let mut rest = &out[..];
            let mut n = 0;
            while !rest.is_empty() {
                let h = FixedHeader::parse(rest).unwrap().unwrap();
                prop_assert!(h.total_len() <= rest.len());
                rest = &rest[h.total_len()..];
                n += 1;
            }
            prop_assert_eq!(n, if version.is_v5() { 9 } else { 8 });
        }
    }
}
