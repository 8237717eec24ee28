//! Topic ACLs per device, with Mosquitto's semantics.
//!
//! A rule applies to a client when its `match` globs (identity, username,
//! client id) all match; a client gets the union of the publish and
//! subscribe patterns of every rule that applies. Patterns are topic
//! filters in which `%c` (client id), `%u` (username) and `%i` (certificate
//! identity) are replaced once per connection. As in Mosquitto:
//!
//! - a PUBLISH is allowed when a publish pattern matches its topic;
//! - a SUBSCRIBE filter is allowed when a subscribe pattern covers it
//!   (`+` in the filter only under `+` or `#`, `#` only under `#`);
//! - a pattern that needs a value the client does not have (no username, no
//!   certificate), or whose value contains `+`, `#` or `/`, is skipped, so
//!   that nobody widens their own access with a crafted client id;
//! - shared subscriptions (`$share/group/filter`) are checked on `filter`.
//!
//! With no `acl` configured, everything is allowed. Pure: no I/O, and no
//! allocation per message (substitution happens at CONNECT).

use moat_mqtt::topic::{
    acl_covers_subscription, shared_subscription, topic_matches, valid_topic_filter,
};
use serde::Deserialize;

use crate::tls::allow::glob;

/// Which clients a rule applies to; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclMatch {
    /// Glob on the certificate identity.
    pub identity: Option<String>,
    /// Glob on the username (after any identity rewrite).
    pub username: Option<String>,
    /// Glob on the client id.
    pub client_id: Option<String>,
}

/// One ACL rule, as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Which clients the rule applies to (default: all).
    #[serde(default, rename = "match")]
    pub applies_to: AclMatch,
    /// Topic patterns the client may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic patterns the client may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

impl AclRule {
    /// Problems with the rule itself (invalid patterns, empty rule).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.publish.is_empty() && self.subscribe.is_empty() {
            out.push("the rule grants nothing: give publish and/or subscribe patterns".into());
        }
        for (kind, list) in [("publish", &self.publish), ("subscribe", &self.subscribe)] {
            for p in list {
                let probe = p.replace("%c", "x").replace("%u", "x").replace("%i", "x");
                if !valid_topic_filter(&probe) {
                    out.push(format!(
                        "{kind} pattern {p:?} is not a valid topic filter (`+` and `#` must be whole levels, `#` last)"
                    ));
                } else if probe.contains('%') {
                    out.push(format!(
                        "{kind} pattern {p:?} has an unknown substitution; only %c, %u and %i exist"
                    ));
                }
            }
        }
        out
    }

    /// Whether any pattern uses `%i`.
    pub fn uses_identity(&self) -> bool {
        self.publish
            .iter()
            .chain(&self.subscribe)
            .any(|p| p.contains("%i"))
            || self.applies_to.identity.is_some()
    }
}

/// Who is asking, as far as ACLs are concerned.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client id from CONNECT.
    pub client_id: &'a str,
    /// The username as the broker will see it.
    pub username: Option<&'a str>,
    /// The certificate identity.
    pub identity: Option<&'a str>,
}

/// The patterns that apply to one connected client, substituted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAcl {
    allow_all: bool,
    publish: Vec<String>,
    subscribe: Vec<String>,
}

/// Replaces `%c`, `%u`, `%i`; `None` when a needed value is missing or
/// could widen the pattern.
fn substitute(pattern: &str, s: &Subject<'_>) -> Option<String> {
    let mut out = pattern.to_string();
    for (token, value) in [
        ("%c", Some(s.client_id)),
        ("%u", s.username),
        ("%i", s.identity),
    ] {
        if out.contains(token) {
            let v = value?;
            if v.is_empty() || v.contains(['+', '#', '/']) {
                return None;
            }
            out = out.replace(token, v);
        }
    }
    Some(out)
}

fn matches_glob(pattern: &Option<String>, value: Option<&str>) -> bool {
    match (pattern, value) {
        (None, _) => true,
        (Some(p), Some(v)) => glob(p, v, false),
        (Some(_), None) => false,
    }
}

impl ClientAcl {
    /// Everything allowed (no `acl` configured).
    pub fn allow_all() -> Self {
        Self {
            allow_all: true,
            ..Self::default()
        }
    }

    /// Resolves the rules for one client.
    pub fn resolve(rules: &[AclRule], s: &Subject<'_>) -> Self {
        let mut acl = Self::default();
        for rule in rules {
            let m = &rule.applies_to;
            if !(matches_glob(&m.identity, s.identity)
                && matches_glob(&m.username, s.username)
                && matches_glob(&m.client_id, Some(s.client_id)))
            {
                continue;
            }
            acl.publish
                .extend(rule.publish.iter().filter_map(|p| substitute(p, s)));
            acl.subscribe
                .extend(rule.subscribe.iter().filter_map(|p| substitute(p, s)));
        }
        acl
    }

    /// Whether the client may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.allow_all || self.publish.iter().any(|p| topic_matches(p, topic))
    }

    /// Whether the client may subscribe to `filter`.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        if self.allow_all {
            return true;
        }
        let filter = shared_subscription(filter)
            .map(|(_, f)| f)
            .unwrap_or(filter);
        self.subscribe
            .iter()
            .any(|p| acl_covers_subscription(p, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(publish: &[&str], subscribe: &[&str]) -> AclRule {
        AclRule {
            applies_to: AclMatch::default(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn subject<'a>(
        client_id: &'a str,
        username: Option<&'a str>,
        identity: Option<&'a str>,
    ) -> Subject<'a> {
        Subject {
            client_id,
            username,
            identity,
        }
    }

    #[test]
    fn substitution_and_matching() {
        let rules = vec![rule(
            &["devices/%i/telemetry/#", "clients/%c/status"],
            &["devices/%i/commands/+", "broadcast/#"],
        )];
        let acl = ClientAcl::resolve(&rules, &subject("dev-1", None, Some("sensor-7")));
        assert!(acl.may_publish("devices/sensor-7/telemetry/temp"));
        assert!(acl.may_publish("devices/sensor-7/telemetry"));
        assert!(!acl.may_publish("devices/sensor-8/telemetry/temp"));
        assert!(acl.may_publish("clients/dev-1/status"));
        assert!(acl.may_subscribe("devices/sensor-7/commands/reboot"));
        assert!(acl.may_subscribe("devices/sensor-7/commands/+"));
        assert!(
            !acl.may_subscribe("devices/sensor-7/commands/#"),
            "# is wider than +"
        );
        assert!(
            !acl.may_subscribe("devices/+/commands/reboot"),
            "+ is only covered by + or #"
        );
        assert!(acl.may_subscribe("broadcast/fw/#"));
        assert!(acl.may_subscribe("$share/g1/broadcast/x"));
        assert!(!acl.may_subscribe("#"));
    }

    #[test]
    fn crafted_values_cannot_widen_patterns() {
        let rules = vec![rule(&["clients/%c/#"], &["users/%u/#"])];
        for id in ["+", "#", "a/b", ""] {
            let acl = ClientAcl::resolve(&rules, &subject(id, Some(id), None));
            assert!(!acl.may_publish("clients/x/y"), "{id:?}");
            assert!(!acl.may_subscribe("users/x/y"), "{id:?}");
        }
        // No username or identity: patterns needing them are skipped.
        let rules = vec![rule(&["u/%u", "i/%i", "open"], &[])];
        let acl = ClientAcl::resolve(&rules, &subject("c", None, None));
        assert!(!acl.may_publish("u/"));
        assert!(acl.may_publish("open"));
    }

    #[test]
    fn match_selects_rules_and_unions_them() {
        let mut admin = rule(&["#"], &["#"]);
        admin.applies_to.identity = Some("admin-*".into());
        let rules = vec![admin, rule(&["public/%c"], &["public/#"])];
        let a = ClientAcl::resolve(&rules, &subject("a", None, Some("admin-1")));
        assert!(a.may_publish("anything/at/all"));
        assert!(a.may_subscribe("#"));
        let d = ClientAcl::resolve(&rules, &subject("d", None, Some("sensor-1")));
        assert!(!d.may_publish("anything"));
        assert!(d.may_publish("public/d"));
        // $SYS is not matched by a leading wildcard.
        assert!(!a.may_publish("$SYS/broker/load"));
        assert!(ClientAcl::allow_all().may_subscribe("#"));
    }

    #[test]
    fn rule_problems() {
        assert!(!rule(&[], &[]).problems().is_empty());
        assert!(rule(&["a/#/b"], &[]).problems()[0].contains("not a valid topic filter"));
        assert!(rule(&["a/%x"], &[]).problems()[0].contains("unknown substitution"));
        assert!(rule(&["devices/%i/#"], &["a/+/b"]).problems().is_empty());
    }
}
