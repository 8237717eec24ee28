//! The ban list: identities, MQTT client ids and source networks that may
//! not connect, each until an optional expiry. Set through the admin API
//! (`POST /bans`), kept in memory (a restart forgets it: permanent refusals
//! belong in the CRL or the allow-list), and read wait-free on the
//! connection path.
//!
//! Each ban is checked as early as its subject is known: a source network
//! in the accept loop, before any TLS work; an identity right after the
//! handshake; a client id at CONNECT.

use std::net::IpAddr;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::tls::client_auth::PeerIdentity;

/// What a ban refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A client certificate: its common name, subject DN or SHA-256.
    Identity(String),
    /// An MQTT client id.
    ClientId(String),
    /// Source addresses.
    Source(IpNet),
}

impl Target {
    /// The name of the kind, as the API spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Identity(_) => "identity",
            Self::ClientId(_) => "client_id",
            Self::Source(_) => "source",
        }
    }

    /// The value, as the API spells it.
    pub fn value(&self) -> String {
        match self {
            Self::Identity(v) | Self::ClientId(v) => v.clone(),
            Self::Source(n) => n.to_string(),
        }
    }

    /// Whether a verified identity is this target.
    pub fn matches_identity(&self, id: &PeerIdentity) -> bool {
        matches!(self, Self::Identity(name) if id.is_named(name))
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Unique for the life of the process; `DELETE /bans/{id}`.
    pub id: u64,
    /// What it refuses.
    pub target: Target,
    /// When it was set.
    pub since: SystemTime,
    /// When it lapses; never when absent.
    pub until: Option<SystemTime>,
}

impl Ban {
    fn in_force(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// The ban list of the process.
#[derive(Debug, Default)]
pub struct Bans {
    list: ArcSwap<Vec<Ban>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Bans {
    /// Adds a ban; returns it.
    pub fn add(&self, target: Target, until: Option<SystemTime>, now: SystemTime) -> Ban {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let ban = Ban {
            id,
            target,
            since: now,
            until,
        };
        self.list.rcu(|list| {
            let mut next: Vec<Ban> = list.iter().filter(|b| b.in_force(now)).cloned().collect();
            next.push(ban.clone());
            next
        });
        ban
    }

    /// Lifts ban `id`; false when there is none.
    pub fn remove(&self, id: u64) -> bool {
        let mut found = false;
        self.list.rcu(|list| {
            found = list.iter().any(|b| b.id == id);
            list.iter()
                .filter(|b| b.id != id)
                .cloned()
                .collect::<Vec<_>>()
        });
        found
    }

    /// The bans in force at `now`.
    pub fn list(&self, now: SystemTime) -> Vec<Ban> {
        self.list
            .load()
            .iter()
            .filter(|b| b.in_force(now))
            .cloned()
            .collect()
    }

    /// The ban in force on `ip`, if any. Wait-free, and free when the list
    /// is empty.
    pub fn source(&self, ip: IpAddr, now: SystemTime) -> Option<u64> {
        self.find(now, |t| matches!(t, Target::Source(n) if n.contains(&ip)))
    }

    /// The ban in force on `id`, if any.
    pub fn identity(&self, id: &PeerIdentity, now: SystemTime) -> Option<u64> {
        self.find(now, |t| t.matches_identity(id))
    }

    /// The ban in force on `client_id`, if any.
    pub fn client_id(&self, client_id: &str, now: SystemTime) -> Option<u64> {
        self.find(now, |t| matches!(t, Target::ClientId(c) if c == client_id))
    }

    fn find(&self, now: SystemTime, hit: impl Fn(&Target) -> bool) -> Option<u64> {
        let list = self.list.load();
        list.iter()
            .find(|b| b.in_force(now) && hit(&b.target))
            .map(|b| b.id)
    }

    /// Drops lapsed bans (they already refuse nothing).
    pub fn sweep(&self, now: SystemTime) {
        if self.list.load().iter().any(|b| !b.in_force(now)) {
            self.list.rcu(|list| {
                list.iter()
                    .filter(|b| b.in_force(now))
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn device(cn: &str) -> PeerIdentity {
        PeerIdentity {
            subject: format!("CN={cn}"),
            common_name: Some(cn.into()),
            sha256: "ab".repeat(32),
            not_after: 0,
        }
    }

    #[test]
    fn each_kind_refuses_only_its_target() {
        let bans = Bans::default();
        let now = SystemTime::now();
        let net = bans.add(Target::Source("10.1.0.0/16".parse().unwrap()), None, now);
        let who = bans.add(Target::Identity("stolen".into()), None, now);
        let cid = bans.add(Target::ClientId("pump-9".into()), None, now);
        assert_eq!(
            bans.source("10.1.200.3".parse().unwrap(), now),
            Some(net.id)
        );
        assert_eq!(bans.source("10.2.0.1".parse().unwrap(), now), None);
        assert_eq!(bans.identity(&device("stolen"), now), Some(who.id));
        assert_eq!(bans.identity(&device("stolen-2"), now), None);
        let by_fingerprint = bans.add(Target::Identity("AB:".repeat(31) + "AB"), None, now);
        assert_eq!(bans.identity(&device("x"), now), Some(by_fingerprint.id));
        assert_eq!(bans.client_id("pump-9", now), Some(cid.id));
        assert_eq!(bans.client_id("pump-90", now), None);
    }

    #[test]
    fn bans_lapse_at_their_expiry_and_can_be_lifted() {
        let bans = Bans::default();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let b = bans.add(Target::ClientId("c".into()), Some(now + hour), now);
        assert_eq!(bans.client_id("c", now + hour / 2), Some(b.id));
        assert_eq!(bans.client_id("c", now + hour), None);
        bans.sweep(now + hour);
        assert!(bans.list(now).is_empty());
        let b = bans.add(Target::ClientId("c".into()), None, now);
        assert!(bans.remove(b.id));
        assert!(!bans.remove(b.id));
        assert_eq!(bans.client_id("c", now), None);
    }
}
