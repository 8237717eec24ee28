//! Answers kept per key (OCSP answers per device certificate, CRLs per
//! distribution point URL), and their single-flight bookkeeping. Pure: no
//! I/O, no clock of its own (every call is given `now`), no channel (a
//! query in flight is represented by whatever `P` the caller stores: a
//! receiver for the answer in moat, a number in the tests).
//!
//! An entry is either an answer held until it expires (a verified answer
//! until its nextUpdate, a failure for a few seconds) or a query in
//! flight, which every other device with the same certificate waits for
//! instead of sending its own. The number of entries is capped; past the
//! cap the oldest entry goes (a query in flight too: its waiters still get
//! its answer through their `P`, it is just not kept).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::SystemTime;

/// The default cap on entries per listener.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V, P> {
    /// An answer that has not expired.
    Answer(V),
    /// A query is in flight: wait for it.
    InFlight(P),
    /// Nothing usable: query, after [`AnswerCache::start`].
    Miss,
}

#[derive(Debug)]
enum Slot<V, P> {
    Answer { value: V, expires: SystemTime },
    InFlight(P),
}

#[derive(Debug)]
struct Entry<V, P> {
    /// Insertion order, for eviction.
    seq: u64,
    slot: Slot<V, P>,
}

/// Answers by key (a certificate's fingerprint), bounded, oldest evicted
/// first.
#[derive(Debug)]
pub struct AnswerCache<K, V, P> {
    entries: HashMap<K, Entry<V, P>>,
    order: BTreeMap<u64, K>,
    next_seq: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone, P: Clone> AnswerCache<K, V, P> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity: capacity.max(1),
        }
    }

    /// How many entries it holds (answers and queries in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// What is known about `key` at `now`. An expired answer is dropped
    /// and reported as a miss.
    pub fn lookup(&mut self, key: &K, now: SystemTime) -> Lookup<V, P> {
        let expired = match self.entries.get(key).map(|e| &e.slot) {
            None => return Lookup::Miss,
            Some(Slot::InFlight(p)) => return Lookup::InFlight(p.clone()),
            Some(Slot::Answer { value, expires }) if *expires > now => {
                return Lookup::Answer(value.clone())
            }
            Some(Slot::Answer { .. }) => true,
        };
        if expired {
            self.remove(key);
        }
        Lookup::Miss
    }

    /// Records that a query about `key` is in flight; later lookups wait
    /// on `pending` until [`AnswerCache::finish`].
    pub fn start(&mut self, key: K, pending: P) {
        self.insert(key, Slot::InFlight(pending));
    }

    /// Stores the answer about `key`, kept until `expires` (nothing is
    /// kept when that is not after `now`), and ends its query in flight.
    pub fn finish(&mut self, key: K, value: V, expires: SystemTime, now: SystemTime) {
        if expires > now {
            self.insert(key, Slot::Answer { value, expires });
        } else {
            self.remove(&key);
        }
    }

    fn insert(&mut self, key: K, slot: Slot<V, P>) {
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, Entry { seq, slot });
    }

    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    type Cache = AnswerCache<&'static str, &'static str, u32>;

    #[test]
    fn one_query_in_flight_then_the_answer_until_it_expires() {
        let mut c = Cache::new(10);
        assert_eq!(c.lookup(&"dev", at(0)), Lookup::Miss);
        c.start("dev", 7);
        // Everyone else with the same certificate waits for query 7.
        assert_eq!(c.lookup(&"dev", at(0)), Lookup::InFlight(7));
        assert_eq!(c.lookup(&"dev", at(1)), Lookup::InFlight(7));
        c.finish("dev", "good", at(100), at(1));
        assert_eq!(c.lookup(&"dev", at(2)), Lookup::Answer("good"));
        assert_eq!(c.lookup(&"dev", at(99)), Lookup::Answer("good"));
        // At nextUpdate the answer is gone.
        assert_eq!(c.lookup(&"dev", at(100)), Lookup::Miss);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_failure_is_kept_briefly_and_a_dead_answer_not_at_all() {
        let mut c = Cache::new(10);
        c.start("dev", 1);
        c.finish("dev", "down", at(5), at(0));
        assert_eq!(c.lookup(&"dev", at(4)), Lookup::Answer("down"));
        assert_eq!(c.lookup(&"dev", at(5)), Lookup::Miss);
        c.start("dev", 2);
        c.finish("dev", "stale", at(3), at(3));
        assert_eq!(c.lookup(&"dev", at(3)), Lookup::Miss);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn certificates_are_kept_apart() {
        let mut c = Cache::new(10);
        c.start("a", 1);
        assert_eq!(c.lookup(&"b", at(0)), Lookup::Miss);
        c.finish("a", "revoked", at(50), at(0));
        c.start("b", 2);
        c.finish("b", "good", at(50), at(0));
        assert_eq!(c.lookup(&"a", at(1)), Lookup::Answer("revoked"));
        assert_eq!(c.lookup(&"b", at(1)), Lookup::Answer("good"));
    }

    #[test]
    fn the_cap_evicts_the_oldest_entry() {
        let mut c = Cache::new(3);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            c.start(key, i as u32);
            c.finish(key, "good", at(100), at(0));
        }
        assert_eq!(c.len(), 3);
        // Refreshing "a" makes it the newest; "b" is now the oldest.
        c.start("a", 9);
        c.finish("a", "good", at(200), at(0));
        c.start("d", 4);
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup(&"b", at(1)), Lookup::Miss);
        assert_eq!(c.lookup(&"a", at(1)), Lookup::Answer("good"));
        assert_eq!(c.lookup(&"c", at(1)), Lookup::Answer("good"));
        assert_eq!(c.lookup(&"d", at(1)), Lookup::InFlight(4));
        // An evicted query in flight may still finish.
        let mut c = Cache::new(1);
        c.start("x", 1);
        c.start("y", 2);
        assert_eq!(c.lookup(&"x", at(0)), Lookup::Miss);
        c.finish("x", "good", at(10), at(0));
        assert_eq!(c.len(), 1);
        assert_eq!(c.lookup(&"x", at(1)), Lookup::Answer("good"));
    }

    #[test]
    fn a_capacity_of_zero_still_holds_one() {
        let mut c = Cache::new(0);
        c.start("a", 1);
        assert_eq!(c.lookup(&"a", at(0)), Lookup::InFlight(1));
    }
}
