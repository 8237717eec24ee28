//! Topic names and topic filters: validation, MQTT matching of a filter
//! against a topic, and the Mosquitto 2.0 rule for whether an ACL pattern
//! covers a subscription filter. Everything here splits on `/` with
//! iterators and never allocates.

/// The longest topic name or filter MQTT can carry (two-byte length prefix).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix of an MQTT 5 shared subscription filter.
pub const SHARE_PREFIX: &str = "$share/";

/// Whether `topic` is a valid topic name, as used in PUBLISH and in a will:
/// non-empty, at most 65,535 bytes, no U+0000 and no wildcard (`+`, `#`).
///
/// Empty levels (`a//b`, `/a`) are valid, as the specification says.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// Whether `filter` is a valid topic filter, as used in SUBSCRIBE and
/// UNSUBSCRIBE: non-empty, at most 65,535 bytes, no U+0000, `+` only as a
/// whole level, and `#` only as the whole last level.
///
/// A shared subscription (`$share/group/filter`) is a valid filter here like
/// any other; see [`shared_subscription`] to split it.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.as_bytes().contains(&0) {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" || levels.peek().is_some() {
                return false;
            }
        } else if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Whether the topic filter `filter` matches the topic name `topic`, per
/// MQTT (3.1.1 section 4.7, 5.0 section 4.7):
///
/// * a literal level matches only an identical level (case-sensitive);
/// * `+` matches exactly one level, which may be empty;
/// * `#` matches its parent level and any number of levels below it, so
///   `a/#` matches `a`, `a/` and `a/b/c`;
/// * a topic starting with `$` (such as `$SYS/...`) is not matched by a
///   filter whose first level is a wildcard.
///
/// Returns `false` if `filter` is not a valid filter or `topic` not a valid
/// topic name. Shared subscriptions are not unwrapped: strip the
/// `$share/group/` prefix with [`shared_subscription`] first.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if !valid_topic_filter(filter) || !valid_topic_name(topic) {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    walk_levels(filter, topic, |f, t| f == "+" || f == t)
}

/// Whether a client holding the ACL pattern `acl` may subscribe to the
/// filter `sub`: every topic `sub` can match must be matched by `acl`, with
/// wildcards compared as wildcards rather than as text.
///
/// This follows Mosquitto 2.0's `mosquitto_sub_matches_acl` (eclipse
/// mosquitto, `lib/util_topic.c`, function `sub_matches_acl`, without the
/// `%c`/`%u` pattern substitution), which its default ACL check uses for
/// SUBSCRIBE. Compared level by level:
///
/// * a literal level in `sub` is covered by the same literal, `+` or `#`;
/// * `+` in `sub` is covered only by `+` or `#` in `acl`;
/// * `#` in `sub` is covered only by `#` in `acl`;
/// * `#` in `acl` also covers its parent level (`a/#` covers `a`);
/// * if exactly one of `acl` and `sub` starts with `$`, there is no match,
///   so `#` does not cover `$SYS/#`.
///
/// Returns `false` if either argument is not a valid topic filter (Mosquitto
/// returns an error there, which its callers treat as a denial).
pub fn acl_covers_subscription(acl: &str, sub: &str) -> bool {
    if !valid_topic_filter(acl) || !valid_topic_filter(sub) {
        return false;
    }
    if acl.starts_with('$') != sub.starts_with('$') {
        return false;
    }
    walk_levels(acl, sub, |a, s| (a == "+" && s != "#") || a == s)
}

/// Compares `pattern` with `other` level by level, the walk that matching
/// and ACL coverage share: `#` in `pattern` covers the rest of `other`
/// (its parent level included), every other level of `pattern` must
/// `cover` the level of `other` at the same place, and both must end
/// together.
fn walk_levels(pattern: &str, other: &str, cover: impl Fn(&str, &str) -> bool) -> bool {
    let mut pattern_levels = pattern.split('/');
    let mut other_levels = other.split('/');
    loop {
        match (pattern_levels.next(), other_levels.next()) {
            (Some("#"), _) => return true,
            (Some(p), Some(o)) if cover(p, o) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits an MQTT 5 shared subscription `$share/{group}/{filter}` into the
/// share group and the filter it subscribes to.
///
/// Returns `None` if `filter` does not start with `$share/`, or if the group
/// is empty or holds a wildcard, or the filter part is empty. (In MQTT 3.1.1
/// `$share/...` has no special meaning; callers decide per version.)
pub fn shared_subscription(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return None;
    }
    Some((group, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "a/b",
            "/",
            "a//b",
            "/a",
            "a/",
            "$SYS/uptime",
            " ",
            "caf\u{e9}",
        ] {
            assert!(valid_topic_name(ok), "{ok:?}");
        }
        for bad in ["", "a/+", "#", "a/#", "a+", "a\0b"] {
            assert!(!valid_topic_name(bad), "{bad:?}");
        }
        assert!(valid_topic_name(&"a".repeat(MAX_TOPIC_LEN)));
        assert!(!valid_topic_name(&"a".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn filters() {
        // Valid and invalid cases from Mosquitto's TEST_sub_topic_valid /
        // TEST_sub_topic_invalid (test/unit/util_topic_test.c).
        for ok in [
            "sub/topic",
            "sub//topic",
            "sub/ /topic",
            "sub/+/topic",
            "+/+/+",
            "+",
            "sub/topic/#",
            "sub//topic/#",
            "sub/ /topic/#",
            "sub/+/topic/#",
            "+/+/+/#",
            "#",
            "/#",
            "/",
            "$share/g/a/#",
        ] {
            assert!(valid_topic_filter(ok), "{ok:?}");
        }
        for bad in [
            "+sub/topic",
            "sub+/topic",
            "sub/+topic",
            "sub/topic+",
            "#sub/topic",
            "sub#/topic",
            "sub/#topic",
            "sub/topic#",
            "#/sub/topic",
            "##",
            "++",
            "",
            "a\0",
            "#/",
        ] {
            assert!(!valid_topic_filter(bad), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        // From Mosquitto's TEST_valid_matching.
        for (filter, topic) in [
            ("foo/#", "foo/"),
            ("foo/#", "foo"),
            ("foo//bar", "foo//bar"),
            ("foo//+", "foo//bar"),
            ("foo/+/+/baz", "foo///baz"),
            ("foo/bar/+", "foo/bar/"),
            ("foo/bar", "foo/bar"),
            ("foo/+", "foo/bar"),
            ("foo/+/baz", "foo/bar/baz"),
            ("A/B/+/#", "A/B/B/C"),
            ("foo/+/#", "foo/bar/baz"),
            ("foo/+/#", "foo/bar"),
            ("#", "foo/bar/baz"),
            ("#", "/foo/bar"),
            ("/#", "/foo/bar"),
            ("$SYS/#", "$SYS/broker"),
            ("$SYS/#", "$SYS"),
            ("+/+", "/"),
        ] {
            assert!(topic_matches(filter, topic), "{filter:?} {topic:?}");
        }
        // From Mosquitto's TEST_valid_no_matching and TEST_invalid.
        for (filter, topic) in [
            ("test/6/#", "test/3"),
            ("foo/bar", "foo"),
            ("foo/+", "foo/bar/baz"),
            ("foo/+/baz", "foo/bar/bar"),
            ("foo/+/#", "fo2/bar/baz"),
            ("/#", "foo/bar"),
            ("#", "$SYS/bar"),
            ("+/bar", "$SYS/bar"),
            ("$BOB/bar", "$SYS/bar"),
            ("foo#", "foo"),
            ("fo#o/", "foo"),
            ("foo+", "foo"),
            ("foo/#a", "foo"),
            ("#a", "foo"),
            ("/#a", "foo/bar"),
            ("foo/+", "foo/+"),
            ("foo/#", "foo/#"),
            ("foo", "Foo"),
            ("foo", "foo/"),
            ("+", "/"),
            ("", "a"),
            ("a", ""),
        ] {
            assert!(!topic_matches(filter, topic), "{filter:?} {topic:?}");
        }
    }

    /// Every `sub_match_test` and `mosquitto_sub_matches_acl` case of
    /// Mosquitto's test/unit/util_topic_test.c (TEST_sub_match_acl and
    /// TEST_acl_pattern_wildcard_wildcard).
    #[test]
    fn acl_cases_from_mosquitto() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo/+/bar", "foo/#", false),
            ("foo/+/ba\u{211e}/#", "foo/baz/ba\u{211e}", true),
            ("foo/+/ba\u{211e}/#", "foo/baz/ba\u{211e}/+", true),
            ("foo/+/ba\u{211e}/#", "foo/baz/ba\u{211e}/#", true),
            ("foo/+/ba\u{211e}/#", "foo/baz/+/#", false),
            ("/+//#", "/foo///#", true),
            ("#", "$SYS/uptime", false),
            ("$SYS/#", "$SYS/uptime", true),
            ("$SYS/+/#", "$SYS/uptime", true),
            ("$SYS/+/#", "$SYS/broker/uptime", true),
            ("#", "#", true),
            ("#", "+", true),
            ("/#", "+", false),
            ("/#", "/+", true),
            ("/+", "#", false),
            ("/+", "+", false),
            ("+/+", "topic/topic", true),
            ("+/+", "topic/topic/", false),
            ("+", "#", false),
            ("+", "+", true),
            ("a/b/c/d/e", "a/b/c/d/e", true),
            ("a/b/ /d/e", "a/b/c/d/e", false),
            ("a/b/c/d/e", "a/b/c/d/+", false),
            ("a/b/c/d/+", "a/b/c/d/e", true),
            ("a/b/c/d/", "a/b/c/d/+", false),
            ("a/b/c/d/+", "a/b/c/d/", true),
            ("$SYS/#", "$SYS/broker/#", true),
            ("$SYS/#", "$SYS/+/#", true),
            ("$SYS/#", "$SYS", true),
            ("$SYS/+", "$SYS/#", false),
            ("$SYS/+/a", "$SYS/a/+", false),
            ("$SYS/+", "$SYS/+/a", false),
            ("$SYS/broker/uptime", "$SYS/broker/#", false),
            ("#", "$SYS/broker/#", false),
            // Empty input is an error in Mosquitto, so no match.
            ("sub", "", false),
            ("", "topic", false),
            ("", "", false),
        ];
        for &(acl, sub, expected) in cases {
            assert_eq!(
                acl_covers_subscription(acl, sub),
                expected,
                "acl {acl:?} sub {sub:?}"
            );
        }
    }

    #[test]
    fn acl_more() {
        assert!(acl_covers_subscription("foo/#", "foo"));
        assert!(acl_covers_subscription("foo/#", "foo/+/bar"));
        assert!(acl_covers_subscription("+/#", "foo"));
        assert!(!acl_covers_subscription("foo", "foo/#"));
        assert!(!acl_covers_subscription("foo/+", "foo/#"));
        assert!(!acl_covers_subscription("$SYS/#", "#"));
        assert!(!acl_covers_subscription("a+", "a+"), "invalid ACL");
        assert!(!acl_covers_subscription("a", "a/#/b"), "invalid sub");
    }

    #[test]
    fn shared() {
        assert_eq!(shared_subscription("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(shared_subscription("$share/g/#"), Some(("g", "#")));
        assert_eq!(shared_subscription("$share/g/"), None);
        assert_eq!(shared_subscription("$share/g"), None);
        assert_eq!(shared_subscription("$share//a"), None);
        assert_eq!(shared_subscription("$share/+/a"), None);
        assert_eq!(shared_subscription("$SHARE/g/a"), None);
        assert_eq!(shared_subscription("a/b"), None);
    }
}
