//! The checks of a listener's (or route's) backend: the node list, the
//! balancing rule, the hold-down, and the active health check's interval,
//! timeout and rise/fall counts; entries with `discover:` and
//! `backend_dns:` (interval, servers).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::{BackendNode, Balance, ClientAuthMode, Discover, ListenerConfig};

/// The backend list: not empty, no duplicates, valid addresses and
/// weights, not only backups; and a balancing rule the listener can key.
pub(super) fn check_backends(
    path: &Path,
    prefix: &str,
    l: &ListenerConfig,
    errors: &mut Vec<ConfigError>,
) {
    let nodes = l.backend.nodes();
    let field = format!("{prefix}.backend");
    let mut push = |at: String, msg: String, hint: &str| {
        errors.push(ConfigError::at(path, at, msg).hint(hint));
    };
    if nodes.is_empty() {
        push(
            field.clone(),
            "the backend list is empty".into(),
            "list at least one broker as host:port",
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let at = node_field(prefix, l, i);
        if let Some(d) = n.discover {
            if let Err((msg, hint)) = check_discovered(n, d) {
                push(format!("{at}.discover"), msg, hint);
            }
        }
        if n.discover == Some(Discover::Srv) {
            // An SRV name, checked above.
        } else if let Err(msg) = check_host_port(&n.address) {
            push(
                at.clone(),
                msg,
                "write the broker as host:port, e.g. 127.0.0.1:1883",
            );
        }
        if nodes[..i].iter().any(|m| m.address == n.address) {
            push(
                at.clone(),
                format!("{} is listed twice", n.address),
                "list each broker once; give it a weight to send it more connections",
            );
        }
        if let Some(name) = &n.name {
            if n.discover.is_some() {
                push(
                    format!("{at}.name"),
                    "cannot be set with discover".into(),
                    "a discovered entry becomes many nodes; name written nodes only",
                );
            } else if name.trim().is_empty() {
                push(
                    format!("{at}.name"),
                    "is empty".into(),
                    "give the node a name, or leave name out to key it by its address",
                );
            } else if nodes[..i]
                .iter()
                .any(|m| m.name.as_deref().unwrap_or(&m.address) == name)
                || nodes[i + 1..]
                    .iter()
                    .any(|m| m.name.is_none() && m.address == *name)
            {
                push(
                    format!("{at}.name"),
                    format!("{name:?} names two nodes"),
                    "give each node its own name",
                );
            }
        }
        if n.weight == 0 {
            push(
                format!("{at}.weight"),
                "must be at least 1".into(),
                "remove the node, or mark it `backup: true`",
            );
        }
    }
    if !nodes.is_empty() && nodes.iter().all(|n| n.backup) {
        push(
            field,
            "every backend is a backup".into(),
            "leave `backup: true` off the nodes that should take connections normally",
        );
    }
    let client_certs = l.tls.client_auth.mode != ClientAuthMode::None;
    match l.balance {
        Some(Balance::Identity) if !client_certs => push(
            format!("{prefix}.balance"),
            "balance: identity needs client certificates".into(),
            "set tls.client_auth.mode to required (or optional), or balance on client_id or source",
        ),
        Some(Balance::ClientId) if l.mqtt.is_none() => push(
            format!("{prefix}.balance"),
            "balance: client_id needs an MQTT-aware listener".into(),
            "add `mqtt: {}` to the listener, or balance on identity or source",
        ),
        _ => {}
    }
    if l.backend_health.hold_down.0 > Duration::from_secs(3600) {
        push(
            format!("{prefix}.backend_health.hold_down"),
            "must be at most 1h".into(),
            "a node that failed is tried again after this long; 10s is the default",
        );
    }
    check_health(l, prefix, &mut push);
    // Routes share their listener's `backend_dns`: checked there once.
    if l.route.is_none() {
        check_dns(l, prefix, &mut push);
    }
}

/// An entry with `discover:` names something to look up: a host name with
/// a port (`addresses`), or an SRV name without one (`srv`); never an IP
/// address, which has nothing to discover.
fn check_discovered(n: &BackendNode, d: Discover) -> Result<(), (String, &'static str)> {
    let a = n.address.as_str();
    let host = match d {
        Discover::Addresses => a.rsplit_once(':').map_or(a, |(h, _)| h),
        Discover::Srv => a,
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if a.parse::<SocketAddr>().is_ok() || bare.parse::<std::net::IpAddr>().is_ok() {
        return Err((
            format!(
                "discover: {} needs a name to look up; {a} is an IP address",
                d.as_str()
            ),
            "remove `discover:` to use this address as one node, or write the DNS name",
        ));
    }
    if d == Discover::Srv {
        if a.contains(':') {
            return Err((
                format!("discover: srv takes an SRV name without a port; {a:?} has one"),
                "the port comes from each SRV record, e.g. _mqtt._tcp.mosquitto.mqtt.svc.cluster.local",
            ));
        }
        let ok = !a.is_empty()
            && a.len() <= 253
            && a.trim_end_matches('.').split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return Err((
                format!("{a:?} is not a valid SRV name"),
                "write it as _service._proto.name, e.g. _mqtt._tcp.mosquitto.mqtt.svc.cluster.local",
            ));
        }
    }
    Ok(())
}

/// `backend_dns`: an interval between 1s and 1h, and servers as `ip:port`.
fn check_dns(l: &ListenerConfig, prefix: &str, push: &mut impl FnMut(String, String, &str)) {
    let d = &l.backend_dns;
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d.interval.0) {
        push(
            format!("{prefix}.backend_dns.interval"),
            "must be between 1s and 1h".into(),
            "discovered entries are looked up again this often; 10s is the default",
        );
    }
    for (i, server) in d.servers.iter().enumerate() {
        match server.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => {}
            _ => push(
                format!("{prefix}.backend_dns.servers[{i}]"),
                format!("{server:?} is not an ip:port"),
                "write a DNS server as an IP address and port, e.g. 10.96.0.10:53 or [fd00::a]:53",
            ),
        }
    }
}

/// The active health check's numbers: an interval the probes can keep, a
/// timeout shorter than it, and rise/fall counts that make sense.
fn check_health(l: &ListenerConfig, prefix: &str, push: &mut impl FnMut(String, String, &str)) {
    let h = &l.backend_health;
    let at = |f: &str| format!("{prefix}.backend_health.{f}");
    let interval = h.interval.0;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        push(
            at("interval"),
            "must be between 100ms and 1h".into(),
            "each node is checked this often; 5s is the default",
        );
    }
    if h.timeout.0.is_zero() || h.timeout.0 > interval {
        push(
            at("timeout"),
            format!(
                "must be above 0 and at most the interval ({})",
                humantime::format_duration(interval)
            ),
            "one check may take this long; 2s is the default",
        );
    }
    for (name, n) in [("rise", h.rise), ("fall", h.fall)] {
        if !(1..=100).contains(&n) {
            push(
                at(name),
                "must be between 1 and 100".into(),
                "checks in a row that change a node's state (rise 2, fall 3 by default)",
            );
        }
    }
}

/// Checks `host:port` syntax (the host is resolved at connect time).
fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port"));
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return Err(format!("{s:?} is not a valid host:port"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} has an invalid port {port:?}")),
        Ok(_) => Ok(()),
    }
}

/// Where node `i` of a listener's backend is in the file:
/// `listeners[0].backend` for a single broker, `listeners[0].backend[1]`
/// in a list (and for an entry with `discover:`, written in a list).
fn node_field(prefix: &str, l: &ListenerConfig, i: usize) -> String {
    if l.backend.is_cluster() {
        format!("{prefix}.backend[{i}]")
    } else {
        format!("{prefix}.backend")
    }
}

/// A backend node written as `host:port` with a host name, or an entry
/// with `discover:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBackend {
    /// Its field, e.g. `listeners[0].routes[1].backend[2]`.
    pub field: String,
    /// `host:port` (or the SRV name), as written.
    pub address: String,
    /// How the entry becomes nodes; absent, it is one node.
    pub discover: Option<Discover>,
    /// The listener's DNS servers for discovered entries (empty: the
    /// system's).
    pub servers: Vec<String>,
}

/// The nodes of a listener's backend written with a host name rather than
/// an IP address, each with its field: what `moat check` resolves.
pub(super) fn named_nodes(prefix: &str, l: &ListenerConfig) -> Vec<NamedBackend> {
    l.backend
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.address.parse::<SocketAddr>().is_err())
        .map(|(i, n)| NamedBackend {
            field: node_field(prefix, l, i),
            address: n.address.clone(),
            discover: n.discover,
            servers: l.backend_dns.servers.clone(),
        })
        .collect()
}
