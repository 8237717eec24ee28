//! Which node of a backend cluster a connection tries first, and which
//! next: the order, from the balancing rule, the connection's key (its
//! verified identity, client id or address), the nodes' weights, backups
//! and hold-downs, and their open connections.
//!
//! The hashing rules use weighted rendezvous hashing (highest random
//! weight): every node gets a score from a hash of the key and the node's
//! `name` (its address as written when unnamed), and the order is by
//! score. A device therefore always ranks the nodes the same way; when its
//! first node is down it goes to its second, and only the devices whose
//! first node is down move. Hashing the name (not the position in the
//! list) means reordering the list moves no one, and a named node that
//! moves to a new address keeps its devices.
//!
//! The hash is FNV-1a with a splitmix64 finish, written here rather than
//! taken from std: `DefaultHasher` is not promised to stay the same across
//! Rust releases, and a change would move every device at an upgrade.
//!
//! Pure: no I/O, no clock.

use crate::config::Balance;

/// What the order needs to know about one node.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Its `name`, or its address as configured: the rendezvous hash's
    /// node part.
    pub key: &'a str,
    /// Its weight (at least 1).
    pub weight: u32,
    /// Only for when every other node is down.
    pub backup: bool,
    /// In hold-down after a failure.
    pub down: bool,
    /// Its open connections.
    pub active: usize,
}

/// The indices of `nodes` in the order to try them: nodes that are up
/// before nodes in hold-down (tried last, in case they are back), and
/// primaries before backups. `key` is what the hashing rules hash; `turn`
/// is a counter for `round_robin`.
pub fn order(balance: Balance, key: &[u8], nodes: &[NodeView<'_>], turn: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..nodes.len()).collect();
    match balance {
        Balance::Identity | Balance::ClientId | Balance::Source => {
            let scores: Vec<f64> = nodes.iter().map(|n| score(key, n)).collect();
            idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        }
        Balance::LeastConnections => {
            // active / weight, compared without division.
            idx.sort_by(|&a, &b| {
                let (x, y) = (&nodes[a], &nodes[b]);
                (x.active as u128 * u128::from(y.weight))
                    .cmp(&(y.active as u128 * u128::from(x.weight)))
                    .then(a.cmp(&b))
            });
        }
        Balance::RoundRobin => {
            let up: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| !nodes[i].down && !nodes[i].backup)
                .collect();
            let total: u64 = up.iter().map(|&i| u64::from(nodes[i].weight)).sum();
            if total > 0 {
                let mut slot = turn % total;
                let first = up
                    .iter()
                    .position(|&i| {
                        let w = u64::from(nodes[i].weight);
                        if slot < w {
                            true
                        } else {
                            slot -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                idx.sort_by_key(|&i| match up.iter().position(|&u| u == i) {
                    Some(p) => (p + up.len() - first) % up.len(),
                    None => usize::MAX,
                });
            }
        }
    }
    // Stable: the rule's order stays within each group.
    idx.sort_by_key(|&i| (nodes[i].down, nodes[i].backup));
    idx
}

/// The weighted rendezvous score of `node` for `key`: `weight / -ln(u)`
/// with `u` uniform in (0, 1) from the hash, so that a node of weight 2
/// wins twice as often as one of weight 1.
fn score(key: &[u8], node: &NodeView<'_>) -> f64 {
    let h = hash(key, node.key.as_bytes());
    // 53 random bits, never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(node.weight) / -u.ln()
}

/// FNV-1a over `key`, a separator and `node`, finished with splitmix64.
fn hash(key: &[u8], node: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain(&[0xff]).chain(node) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: u64 = 6_057_040_737_220_942_602;

    const ADDRS: [&str; 3] = ["10.0.0.1:1883", "10.0.0.2:1883", "10.0.0.3:1883"];

    fn nodes(down: &[usize]) -> Vec<NodeView<'static>> {
        ADDRS
            .iter()
            .enumerate()
            .map(|(i, a)| NodeView {
                key: a,
                weight: 1,
                backup: false,
                down: down.contains(&i),
                active: 0,
            })
            .collect()
    }

    fn first(key: &str, n: &[NodeView<'_>]) -> usize {
        order(Balance::Identity, key.as_bytes(), n, 0)[0]
    }

    #[test]
    fn rendezvous_spreads_evenly_and_a_failure_moves_only_its_devices() {
        let all = nodes(&[]);
        let mut count = [0usize; 3];
        let keys: Vec<String> = (0..3000).map(|i| format!("device-{i}")).collect();
        for k in &keys {
            count[first(k, &all)] += 1;
        }
        for c in count {
            assert!((850..=1150).contains(&c), "{count:?}");
        }
        let without_1 = nodes(&[1]);
        for k in &keys {
            let (before, after) = (first(k, &all), first(k, &without_1));
            if before == 1 {
                assert_ne!(after, 1, "a device stayed on the down node");
            } else {
                assert_eq!(before, after, "{k} moved though its node is up");
            }
        }
        // The down node is still listed, last.
        assert_eq!(
            *order(Balance::Identity, b"x", &without_1, 0)
                .last()
                .unwrap(),
            1
        );
    }

    #[test]
    fn weights_and_backups_shape_the_order() {
        let mut n = nodes(&[]);
        n[0].weight = 2;
        let mut wins = [0usize; 3];
        for i in 0..4000 {
            wins[first(&format!("d{i}"), &n)] += 1;
        }
        // Weight 2 of a total of 4: half of the devices.
        assert!((1800..=2200).contains(&wins[0]), "{wins:?}");
        let mut n = nodes(&[]);
        n[2].backup = true;
        for i in 0..100 {
            assert_ne!(first(&format!("d{i}"), &n), 2, "a backup took a device");
        }
        n[0].down = true;
        n[1].down = true;
        assert_eq!(
            first("d", &n),
            2,
            "the backup serves while the others are down"
        );
    }

    #[test]
    fn least_connections_and_round_robin() {
        let mut n = nodes(&[]);
        n[0].active = 5;
        n[1].active = 1;
        n[2].active = 3;
        assert_eq!(order(Balance::LeastConnections, b"", &n, 0), [1, 2, 0]);
        let n = nodes(&[1]);
        let firsts: Vec<usize> = (0..4)
            .map(|t| order(Balance::RoundRobin, b"", &n, t)[0])
            .collect();
        assert_eq!(firsts, [0, 2, 0, 2]);
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Fixed values: a change here moves every device at an upgrade.
        assert_eq!(
            hash(b"device-1", b"10.0.0.1:1883"),
            hash(b"device-1", b"10.0.0.1:1883")
        );
        assert_ne!(
            hash(b"device-1", b"10.0.0.1:1883"),
            hash(b"device-1", b"10.0.0.2:1883")
        );
        assert_eq!(hash(b"device-1", b"10.0.0.1:1883"), PINNED);
    }
}
