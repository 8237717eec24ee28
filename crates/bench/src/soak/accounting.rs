//! The accounting at the end of a soak: every message and every dropped
//! connection, from what the workers reported.

use std::collections::{BTreeMap, HashMap};

use crate::soak::children::Live;
use crate::soak::plan::{Dropped, Messages, RestartRec, RESTART_GRACE_S};
use crate::soak::tasks::{round2, Clock};

/// The dropped connections: those the restart explains, by kind, and the
/// others.
pub(crate) struct Closes {
    /// The window closes were attributed to the restart in.
    pub(crate) restart_window: Option<(f64, f64)>,
    /// Closes in that window, by kind.
    pub(crate) restart_closes: BTreeMap<String, u64>,
    /// Every other close.
    pub(crate) unexplained: Vec<Dropped>,
}

/// Counts every message: published, acknowledged, received, lost, unexpected.
pub(crate) fn count_messages(l: &Live, drain_s: f64) -> Messages {
    let mut messages = Messages {
        drain_s,
        ..Messages::default()
    };
    let mut published: HashMap<usize, (u32, u32)> = HashMap::new();
    let mut unacked: HashMap<usize, Vec<u32>> = HashMap::new();
    for (_, f) in l.finals.iter().filter(|(k, _)| k.starts_with("devices")) {
        for (i, (&p, &a)) in f.published.iter().zip(&f.acked).enumerate() {
            published.insert(f.first + i, (p, a));
            messages.published += u64::from(p);
            messages.sent += u64::from(a);
        }
        for &(d, s) in &f.unacked {
            unacked.entry(d as usize).or_default().push(s);
            messages.unacked += 1;
        }
    }
    messages.retransmits = l.sum("devices", |s| s.retransmits);
    if let Some(sub) = l.stats.get("subscribers") {
        messages.received = sub.received;
        messages.duplicates = sub.dups;
        messages.malformed = sub.malformed;
    }
    if let Some(f) = l.finals.get("subscribers") {
        messages.unique = f.unique.iter().map(|&u| u64::from(u)).sum();
        let mut gaps: HashMap<usize, Vec<u32>> = HashMap::new();
        for &(d, s) in &f.gaps {
            gaps.entry(d as usize).or_default().push(s);
        }
        for (d, &(p, _)) in &published {
            let max = f.max_seq.get(*d).copied().unwrap_or(-1);
            let un = unacked.get(d).cloned().unwrap_or_default();
            let g = gaps.get(d).cloned().unwrap_or_default();
            let received = |s: u32| i64::from(s) <= max && !g.contains(&s);
            for s in 0..p {
                let acked = !un.contains(&s);
                if acked && !received(s) {
                    messages.lost += 1;
                }
                if !acked && received(s) {
                    messages.unexpected += 1;
                }
            }
            if max >= i64::from(p) {
                messages.unexpected += (max - i64::from(p) + 1) as u64;
            }
        }
    } else {
        messages.unique = l.sum("subscribers", |s| s.unique);
    }
    messages.difference = messages.sent as i64 - messages.unique as i64;
    messages
}

/// Sorts the dropped connections into those the restart explains and the rest.
pub(crate) fn sort_closes(l: &Live, clock: &Clock, restart: Option<&RestartRec>) -> Closes {
    let restart_window = restart.map(|r| (r.t_stop - 1.0, r.t_up + RESTART_GRACE_S));
    let mut restart_closes: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for c in &l.closes {
        let t = clock.of_unix_ms(c.t_ms);
        if restart_window.is_some_and(|(a, b)| t >= a && t <= b) {
            *restart_closes.entry(c.kind.clone()).or_insert(0) += 1;
        } else {
            unexplained.push(Dropped {
                t: round2(t),
                who: c.who.clone(),
                kind: c.kind.clone(),
                held_s: round2(c.held_s),
            });
        }
    }
    Closes {
        restart_window,
        restart_closes,
        unexplained,
    }
}
