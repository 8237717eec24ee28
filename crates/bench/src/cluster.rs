//! Scenario `storm_cluster`: the reconnect storm against three Mosquitto
//! nodes behind one proxy that balances over them (issue 18). moat runs it
//! twice, with `balance: source` (what HAProxy's `balance source` does)
//! and with `balance: client_id` (moat reads the CONNECT before it dials a
//! node, on an MQTT-aware listener); HAProxy with `balance source`, nginx
//! with `hash $remote_addr consistent`. stunnel and the naive proxy are
//! skipped, with [`SKIPPED`] in the report.
//!
//! How the devices spread is counted on the brokers' side: the established
//! TCP connections whose local address is each node's listening address,
//! from `/proc/net/tcp`, while every device is still connected. That is the
//! same for every proxy and needs nothing from the proxy's own metrics.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};

use crate::proxies::{self, Balance, Env, Kind, Proc, Proxy};
use crate::scenarios::{storm_run, Outcome};

/// Brokers in the cluster.
pub const NODES: usize = 3;

/// Why some proxies are not measured in `storm_cluster`.
pub const SKIPPED: &str = "not measured for stunnel and the naive proxy: each has a single `connect`, nothing to balance over";

/// The balancing rules `kind` is measured with, and each one's metric
/// prefix: empty for a proxy that is skipped.
pub fn variants(kind: Kind) -> Vec<(Balance, &'static str)> {
    [
        (Balance::Source, "storm_cluster"),
        (Balance::ClientId, "storm_cluster_cid"),
    ]
    .into_iter()
    .filter(|(b, _)| kind.balances(*b))
    .collect()
}

/// Starts the [`NODES`] Mosquitto nodes, each as the storm's broker (no
/// connection limit), independent of each other (no bridges: the
/// scenario measures where devices land, not message routing).
pub async fn start_brokers(env: &Env) -> Result<(Vec<Proc>, Vec<SocketAddr>)> {
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..NODES {
        let (p, a) = proxies::start_mosquitto(env).await?;
        procs.push(p);
        addrs.push(a);
    }
    Ok((procs, addrs))
}

/// Established TCP connections on each of `nodes` (by local address) in
/// `table`, the text of `/proc/net/tcp`. A connection listed twice counts
/// once: the kernel writes the table in chunks, and a socket that moves
/// while it is read (other programs on the machine open and close theirs)
/// can appear in two of them.
pub fn established_on(table: &str, nodes: &[SocketAddr]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    let mut counts = vec![0; nodes.len()];
    for line in table.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(_sl), Some(local), Some(remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        // 01 is TCP_ESTABLISHED.
        if state != "01" {
            continue;
        }
        let Some(local) = parse_v4(local) else {
            continue;
        };
        if let Some(i) = nodes.iter().position(|n| *n == local) {
            if seen.insert((local, remote.to_string())) {
                counts[i] += 1;
            }
        }
    }
    counts
}

/// [`established_on`] from `/proc/net/tcp`, read again (up to three times)
/// while the total is not between `expected` and `expected + slack`.
fn count_on_brokers(nodes: &[SocketAddr], expected: usize, slack: usize) -> Result<Vec<usize>> {
    let mut counts = Vec::new();
    for _ in 0..3 {
        let table = std::fs::read_to_string("/proc/net/tcp").context("read /proc/net/tcp")?;
        counts = established_on(&table, nodes);
        let total: usize = counts.iter().sum();
        if (expected..=expected + slack).contains(&total) {
            break;
        }
    }
    Ok(counts)
}

/// `0100007F:075B` (the address as the kernel's native-order u32, the port
/// in hex) as 127.0.0.1:1883.
fn parse_v4(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    if ip.len() != 8 {
        return None;
    }
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
}

/// The share of all counted devices on the busiest node, in percent, and
/// how many nodes have any.
pub fn spread(counts: &[usize]) -> (f64, usize) {
    let total: usize = counts.iter().sum();
    let max = counts.iter().copied().max().unwrap_or(0);
    let pct = if total == 0 {
        0.0
    } else {
        100.0 * max as f64 / total as f64
    };
    (pct, counts.iter().filter(|c| **c > 0).count())
}

/// One storm of `devices` through `proxy` to `nodes`; metrics keyed by
/// `key` (from [`variants`]).
pub async fn storm_cluster(
    env: &Env,
    proxy: &Proxy,
    nodes: &[SocketAddr],
    devices: usize,
    key: &str,
) -> Result<Outcome> {
    let st = storm_run(env, proxy, devices, "cdev").await?;
    // The warm-up sessions are closed by then; a few may linger.
    let slack = 8;
    let counts = count_on_brokers(nodes, st.ok, slack);
    let mut o = Outcome::default();
    o.cpu_must_be_positive(key, st.cpu_s);
    o.problems.extend(st.problem(key, devices));
    o.value(format!("{key}_s"), st.elapsed_ms / 1e3);
    o.value(format!("{key}_cpu_s"), st.cpu_s);
    o.value(
        format!("{key}_cpu_us_per_device"),
        st.cpu_s * 1e6 / st.ok.max(1) as f64,
    );
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            st.finish();
            return Err(e);
        }
    };
    for (i, c) in counts.iter().enumerate() {
        o.value(format!("{key}_node{}", i + 1), *c as f64);
    }
    let (busiest, used) = spread(&counts);
    o.value(format!("{key}_busiest_pct"), busiest);
    o.value(format!("{key}_nodes_used"), used as f64);
    let counted: usize = counts.iter().sum();
    if counted < st.ok || counted > st.ok + slack {
        o.problems.push(format!(
            "{key}: {counted} connections counted on the brokers for {} devices with a CONNACK",
            st.ok
        ));
    }
    o.info = format!(
        "{}/{devices} CONNACKs in {:.2} s, proxy CPU {:.2} s, {} retried attempts; devices per broker {}",
        st.ok,
        st.elapsed_ms / 1e3,
        st.cpu_s,
        st.retries,
        counts
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" / ")
    );
    st.finish();
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxies::tests::nodes;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:075B 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:075B 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:075C 0100007F:C352 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:075C 0100007F:C353 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
   5: 0100007F:C350 0100007F:075B 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
   6: 0200007F:075D 0100007F:C354 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
   7: 0100007F:075B 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn counts_only_established_connections_on_each_node() {
        // Not the listener (0A), not TIME_WAIT (06), not the proxy's side
        // (remote 1883), not another address on the node's port, and a
        // connection listed twice once.
        assert_eq!(established_on(TABLE, &nodes()), vec![2, 1, 0]);
    }

    #[test]
    fn parses_addresses_as_the_kernel_prints_them() {
        assert_eq!(
            parse_v4("0100007F:075B"),
            Some("127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!(parse_v4("0100007F"), None);
        assert_eq!(parse_v4("00000000000000000000000001000000:075B"), None);
    }

    #[test]
    fn spread_of_devices() {
        assert_eq!(spread(&[9900, 0, 0]), (100.0, 1));
        assert_eq!(spread(&[50, 25, 25]), (50.0, 3));
        assert_eq!(spread(&[0, 0, 0]), (0.0, 0));
    }

    #[test]
    fn only_balancing_proxies_are_measured() {
        assert_eq!(
            variants(Kind::Moat),
            vec![
                (Balance::Source, "storm_cluster"),
                (Balance::ClientId, "storm_cluster_cid")
            ]
        );
        for k in [Kind::Haproxy, Kind::Nginx] {
            assert_eq!(variants(k), vec![(Balance::Source, "storm_cluster")]);
        }
        for k in [Kind::Stunnel, Kind::Naive] {
            assert!(variants(k).is_empty(), "{k:?}");
        }
    }
}
