//! Backend entries with `discover:`: one entry becomes one node per
//! address it resolves to, looked up again every `backend_dns.interval`,
//! the way HAProxy's `server-template … resolvers` and nginx's
//! `server … resolve` follow a Kubernetes headless Service.
//!
//! - `discover: addresses` on `host:port`: a node per A and AAAA record of
//!   `host`, on the entry's port;
//! - `discover: srv` on an SRV name (`_mqtt._tcp.mosquitto.mqtt.svc…`): a
//!   node per SRV record, at each address of its target, on its port.
//!
//! Every discovered node is named `ip:port` (its metric label and its
//! rendezvous-hash key) and takes the entry's weight and `backup`. An
//! answer that fails or is empty keeps the entry's last good nodes: a DNS
//! outage never empties a cluster that is serving. `EntryState` says when
//! an entry starts or stops failing, so that it is logged once per change.
//!
//! The pure part (an answer against the last good one, the wanted node
//! list, the diff against the nodes the link has) does no I/O and is unit
//! tested here; `Resolver` does the look-ups, with hickory-resolver (the
//! system's `getaddrinfo`, behind `tokio::net::lookup_host`, has no SRV and
//! no way to ask given servers). `conn::backend` runs the timer and swaps
//! the node set; `cli::backend_names` uses `Resolver` for `moat check`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::config::{BackendDnsConfig, BackendNode, Discover};

/// What one look-up of one entry gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The nodes found (empty: the name has no such records).
    Found(Vec<SocketAddr>),
    /// The look-up failed (timeout, SERVFAIL, no server).
    Failed(String),
}

/// What an answer changed in an entry's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Nothing to log.
    None,
    /// The entry's look-ups started failing (or finding nothing): why.
    Failing(String),
    /// Its look-ups give nodes again after failing.
    Recovered,
}

/// One discovered entry between look-ups: its last good nodes, and
/// whether its last look-up failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryState {
    /// The nodes of the last answer that had any, sorted, without
    /// duplicates.
    pub nodes: Vec<SocketAddr>,
    failing: bool,
}

impl EntryState {
    /// Takes `answer`: a non-empty one replaces the nodes; an empty or
    /// failed one keeps them. The event says whether the entry's health
    /// changed.
    pub fn settle(&mut self, answer: Answer) -> Event {
        let why = match answer {
            Answer::Found(mut found) if !found.is_empty() => {
                found.sort();
                found.dedup();
                self.nodes = found;
                return if std::mem::replace(&mut self.failing, false) {
                    Event::Recovered
                } else {
                    Event::None
                };
            }
            Answer::Found(_) => "the name has no records".to_string(),
            Answer::Failed(e) => e,
        };
        if std::mem::replace(&mut self.failing, true) {
            Event::None
        } else {
            Event::Failing(why)
        }
    }

    /// Whether the last look-up failed or found nothing.
    pub fn failing(&self) -> bool {
        self.failing
    }
}

/// A node the link should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `host:port` as configured, or `ip:port` as discovered.
    pub address: String,
    /// Its `name`, the rendezvous hash's node part; absent, the address.
    pub name: Option<String>,
    /// Its entry's weight.
    pub weight: u32,
    /// Its entry's `backup`.
    pub backup: bool,
}

/// The nodes of `entries`, in the order of the list: a plain entry as
/// itself, a discovered one as the nodes in `found` (by entry index;
/// none yet: no node). An address already there (from an earlier entry)
/// is not listed again.
pub fn wanted(entries: &[BackendNode], found: &[Option<&[SocketAddr]>]) -> Vec<Wanted> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let addresses: Vec<String> = match e.discover {
            None => vec![e.address.clone()],
            Some(_) => found
                .get(i)
                .copied()
                .flatten()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        for address in addresses {
            if seen.insert(address.clone()) {
                out.push(Wanted {
                    address,
                    name: e.name.clone(),
                    weight: e.weight,
                    backup: e.backup,
                });
            }
        }
    }
    out
}

/// How the link's nodes change from `old` to `new`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Addresses in `new` only.
    pub added: Vec<String>,
    /// Addresses in `old` only.
    pub removed: Vec<String>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The nodes that join and leave when the link goes from `old` to `new`.
pub fn diff<'a>(old: impl IntoIterator<Item = &'a str>, new: &[Wanted]) -> Diff {
    let old: Vec<&str> = old.into_iter().collect();
    let new_set: HashSet<&str> = new.iter().map(|w| w.address.as_str()).collect();
    let old_set: HashSet<&str> = old.iter().copied().collect();
    Diff {
        added: new
            .iter()
            .filter(|w| !old_set.contains(w.address.as_str()))
            .map(|w| w.address.clone())
            .collect(),
        removed: old
            .iter()
            .filter(|a| !new_set.contains(*a))
            .map(ToString::to_string)
            .collect(),
    }
}

/// The DNS client of one listener's discovered entries.
pub struct Resolver(TokioResolver);

impl Resolver {
    /// A resolver asking `config.servers` (UDP, then TCP), or the
    /// system's servers from /etc/resolv.conf. Its cache is cleared before
    /// each round, so that every round asks again whatever the records'
    /// TTL. Needs a tokio runtime.
    pub fn new(config: &BackendDnsConfig) -> Result<Self, String> {
        let servers: Vec<SocketAddr> = config
            .servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("reading /etc/resolv.conf: {e}"))?
        } else {
            let mut group = Vec::new();
            for s in servers {
                group.push(NameServerConfig::new(s, Protocol::Udp));
                group.push(NameServerConfig::new(s, Protocol::Tcp));
            }
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            );
            // Given servers are the only source: not /etc/hosts.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = config.interval.0.min(Duration::from_secs(3));
        opts.attempts = 2;
        Ok(Self(builder.build()))
    }

    /// Looks `entry` up once (it has `discover:`).
    pub async fn lookup(&self, entry: &BackendNode) -> Answer {
        self.0.clear_cache();
        let r = match entry.discover {
            Some(Discover::Srv) => self.srv(&entry.address).await,
            _ => self.addresses(&entry.address).await,
        };
        match r {
            Ok(found) => Answer::Found(found),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Answer::Found(Vec::new()),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// `host:port`: every A and AAAA record of `host`, on `port`.
    async fn addresses(
        &self,
        address: &str,
    ) -> Result<Vec<SocketAddr>, hickory_resolver::ResolveError> {
        let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
        let port: u16 = port.parse().unwrap_or(0);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ips = self.0.lookup_ip(host).await?;
        Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    /// An SRV name: every record's target, at each of its addresses, on
    /// the record's port.
    async fn srv(&self, name: &str) -> Result<Vec<SocketAddr>, hickory_resolver::ResolveError> {
        let records = self.0.srv_lookup(name).await?;
        let mut out = Vec::new();
        let mut last = None;
        for srv in records.iter() {
            match self.0.lookup_ip(srv.target().clone()).await {
                Ok(ips) => out.extend(ips.iter().map(|ip| SocketAddr::new(ip, srv.port()))),
                Err(e) => last = Some(e),
            }
        }
        match last {
            // Targets that do not resolve while others do: those others.
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn entry(address: &str, discover: Option<Discover>, weight: u32, backup: bool) -> BackendNode {
        BackendNode {
            address: address.into(),
            weight,
            backup,
            name: None,
            discover,
        }
    }

    #[test]
    fn a_good_answer_replaces_the_nodes_and_an_empty_or_failed_one_keeps_them() {
        let mut s = EntryState::default();
        assert_eq!(
            s.settle(Answer::Found(vec![
                a("10.0.0.2:1883"),
                a("10.0.0.1:1883"),
                a("10.0.0.2:1883")
            ])),
            Event::None
        );
        assert_eq!(
            s.nodes,
            [a("10.0.0.1:1883"), a("10.0.0.2:1883")],
            "sorted, once each"
        );
        assert_eq!(
            s.settle(Answer::Found(Vec::new())),
            Event::Failing("the name has no records".into())
        );
        assert!(s.failing());
        assert_eq!(
            s.settle(Answer::Failed("timed out".into())),
            Event::None,
            "logged once"
        );
        assert_eq!(s.nodes.len(), 2, "the last good nodes stay");
        assert_eq!(
            s.settle(Answer::Found(vec![a("10.0.0.3:1883")])),
            Event::Recovered
        );
        assert_eq!(s.nodes, [a("10.0.0.3:1883")]);
        assert_eq!(
            s.settle(Answer::Found(vec![a("10.0.0.3:1883")])),
            Event::None
        );
    }

    #[test]
    fn a_first_answer_that_fails_leaves_no_node_and_says_so() {
        let mut s = EntryState::default();
        assert_eq!(
            s.settle(Answer::Failed("no connections available".into())),
            Event::Failing("no connections available".into())
        );
        assert!(s.nodes.is_empty());
    }

    #[test]
    fn wanted_expands_discovered_entries_in_list_order_with_their_weight_and_backup() {
        let entries = [
            entry("10.0.0.9:1883", None, 1, false),
            entry("_mqtt._tcp.brokers.test", Some(Discover::Srv), 3, false),
            entry("spare.test:1883", Some(Discover::Addresses), 1, true),
        ];
        let srv = [a("10.0.0.1:1883"), a("10.0.0.2:1884")];
        let spare = [a("10.0.0.1:1883"), a("[fd00::1]:1883")];
        let w = wanted(&entries, &[None, Some(&srv), Some(&spare)]);
        let got: Vec<(&str, u32, bool)> = w
            .iter()
            .map(|w| (w.address.as_str(), w.weight, w.backup))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.9:1883", 1, false),
                ("10.0.0.1:1883", 3, false),
                ("10.0.0.2:1884", 3, false),
                // 10.0.0.1:1883 is already a node of the SRV entry.
                ("[fd00::1]:1883", 1, true),
            ]
        );
        // Not looked up yet: the entry has no node.
        assert_eq!(wanted(&entries, &[None, None, None]).len(), 1);
    }

    #[test]
    fn the_diff_names_only_the_nodes_that_join_and_leave() {
        let w = |s: &[&str]| -> Vec<Wanted> {
            s.iter()
                .map(|a| Wanted {
                    address: a.to_string(),
                    name: None,
                    weight: 1,
                    backup: false,
                })
                .collect()
        };
        let old = ["10.0.0.1:1883", "10.0.0.2:1883", "10.0.0.3:1883"];
        let d = diff(old, &w(&["10.0.0.3:1883", "10.0.0.1:1883"]));
        assert_eq!(d.removed, ["10.0.0.2:1883"]);
        assert!(d.added.is_empty());
        let d = diff(
            old,
            &w(&[
                "10.0.0.1:1883",
                "10.0.0.2:1883",
                "10.0.0.3:1883",
                "10.0.0.4:1883",
            ]),
        );
        assert_eq!(d.added, ["10.0.0.4:1883"]);
        assert!(d.removed.is_empty());
        assert!(
            diff(old, &w(&old)).is_empty(),
            "reordered or equal: no change"
        );
        let d = diff([], &w(&["10.0.0.1:1883"]));
        assert_eq!(d.added, ["10.0.0.1:1883"]);
    }
}
