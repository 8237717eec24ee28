//! The subscriptions moat let through for one connection, so that a
//! reloaded topic ACL can tell whether the session still receives on a
//! filter it may no longer subscribe to.
//!
//! The broker keeps subscriptions, not moat: a session that subscribed to
//! `plant/#` before an ACL edit would otherwise go on receiving `plant/...`
//! until it reconnects. The guard records each filter it forwarded in a
//! SUBSCRIBE and forgets it on UNSUBSCRIBE; a new ACL is then checked
//! against the list ([`Granted::denied_by`]).
//!
//! Bounded: at most [`MAX_GRANTED_BYTES`] of filter text per connection.
//! A session that subscribed to more stops being tracked, and a later ACL
//! edit treats it as one whose subscriptions cannot be proved allowed.
//! Pure: no I/O.

use super::acl::ClientAcl;

/// Most filter bytes remembered per connection.
pub const MAX_GRANTED_BYTES: usize = 16 * 1024;

/// The filters granted to one connection.
#[derive(Debug, Default)]
pub struct Granted {
    filters: Vec<Box<str>>,
    bytes: usize,
    /// More was granted than is remembered.
    overflowed: bool,
}

/// What a new ACL makes of a session's subscriptions.
#[derive(Debug, PartialEq, Eq)]
pub enum Regranted {
    /// Every remembered subscription is still allowed.
    Allowed,
    /// These filters are no longer allowed.
    Denied(Vec<String>),
    /// The session subscribed to more than moat remembers, so its
    /// subscriptions cannot be checked.
    Unknown,
}

impl Granted {
    /// Records a filter the broker is being asked for.
    pub fn grant(&mut self, filter: &str) {
        if self.overflowed || self.filters.iter().any(|f| &**f == filter) {
            return;
        }
        if self.bytes + filter.len() > MAX_GRANTED_BYTES {
            self.overflowed = true;
            self.filters = Vec::new();
            self.bytes = 0;
            return;
        }
        self.bytes += filter.len();
        self.filters.push(filter.into());
    }

    /// Forgets a filter the client unsubscribed from.
    pub fn revoke(&mut self, filter: &str) {
        if let Some(i) = self.filters.iter().position(|f| &**f == filter) {
            let f = self.filters.swap_remove(i);
            self.bytes -= f.len();
        }
    }

    /// Whether nothing is recorded (and nothing was lost).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty() && !self.overflowed
    }

    /// Checks the granted filters against `acl`.
    pub fn denied_by(&self, acl: &ClientAcl) -> Regranted {
        if self.overflowed {
            return Regranted::Unknown;
        }
        let denied: Vec<String> = self
            .filters
            .iter()
            .filter(|f| !acl.may_subscribe(f))
            .map(|f| f.to_string())
            .collect();
        if denied.is_empty() {
            Regranted::Allowed
        } else {
            Regranted::Denied(denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::acl::{AclRule, Subject};

    fn only(filters: &[&str]) -> ClientAcl {
        let rules = vec![AclRule {
            subscribe: filters.iter().map(|f| f.to_string()).collect(),
            ..AclRule::default()
        }];
        ClientAcl::resolve(
            &rules,
            &Subject {
                client_id: "c",
                username: None,
                identity: None,
            },
        )
    }

    #[test]
    fn a_narrower_acl_names_the_filters_it_denies() {
        let mut g = Granted::default();
        g.grant("plant/#");
        g.grant("telemetry/+/t");
        g.grant("plant/#");
        assert_eq!(g.denied_by(&only(&["#"])), Regranted::Allowed);
        assert_eq!(
            g.denied_by(&only(&["telemetry/#"])),
            Regranted::Denied(vec!["plant/#".into()])
        );
    }

    #[test]
    fn an_unsubscribed_filter_is_forgotten() {
        let mut g = Granted::default();
        g.grant("plant/#");
        g.revoke("plant/#");
        g.revoke("never/granted");
        assert_eq!(g.denied_by(&only(&["telemetry/#"])), Regranted::Allowed);
        assert_eq!(g.bytes, 0);
    }

    #[test]
    fn more_than_the_budget_is_unknown_not_allowed() {
        let mut g = Granted::default();
        let long = "x".repeat(1000);
        for i in 0..20 {
            g.grant(&format!("{long}/{i}"));
        }
        assert!(g.overflowed);
        assert_eq!(g.denied_by(&only(&["#"])), Regranted::Unknown);
        assert!(g.filters.is_empty(), "the memory is given back");
    }
}
