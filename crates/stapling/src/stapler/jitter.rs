//! The jitter that spreads refresh times: values in `[-1, 1]` for
//! [`Policy`](crate::schedule::Policy), so that many gateways do not query
//! a responder in step.

use std::time::SystemTime;

use crate::clock;

/// Jitter values in `[-1, 1]` from xorshift64*, seeded from the system's
/// random source. Not for secrets: it only spreads refresh times.
pub(super) struct Jitter(u64);

impl Jitter {
    pub(super) fn new() -> Self {
        use aws_lc_rs::rand::SecureRandom as _;
        let mut seed = [0u8; 8];
        let seed = match aws_lc_rs::rand::SystemRandom::new().fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => clock::to_unix(SystemTime::now()).unsigned_abs() ^ 0x9e37_79b9_7f4a_7c15,
        };
        Self(seed | 1)
    }

    pub(super) fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (r as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new();
        let values: Vec<f64> = (0..10_000).map(|_| j.next()).collect();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(values.iter().any(|v| *v < -0.9));
        assert!(values.iter().any(|v| *v > 0.9));
    }
}
