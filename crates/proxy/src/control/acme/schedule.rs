//! When to renew an ACME certificate and when to retry a failed order.
//!
//! Pure arithmetic on timestamps, free of I/O and of any clock or random
//! source: the caller passes `now` and a jitter sample in `[0, 1)`, so
//! every rule is unit-tested deterministically.

use std::time::Duration;

/// First retry delay after a failed order.
pub const BASE_BACKOFF: Duration = Duration::from_secs(30);
/// Retries never wait longer than this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// Seconds since the Unix epoch at which a certificate valid from
/// `not_before` to `not_after` should be renewed: 2/3 of its lifetime.
pub fn renewal_at(not_before: u64, not_after: u64) -> u64 {
    let lifetime = not_after.saturating_sub(not_before);
    not_before + lifetime / 3 * 2 + (lifetime % 3) * 2 / 3
}

/// Delay before retry number `failures` (1 = first failure): exponential
/// from `BASE_BACKOFF`, capped at `MAX_BACKOFF`, then spread by up to
/// -25 %..+25 % with `jitter` in `[0, 1)` so replicas do not retry in step.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = BASE_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    raw.mul_f64(factor)
}

/// Next retry time, never later than the certificate's expiry minus one
/// base back-off while it is still valid, so a long back-off cannot
/// skip past the last chance to renew.
pub fn next_retry(now: u64, failures: u32, jitter: f64, not_after: Option<u64>) -> u64 {
    let at = now + backoff(failures, jitter).as_secs();
    match not_after {
        Some(end) if end > now + BASE_BACKOFF.as_secs() => at.min(end - BASE_BACKOFF.as_secs()),
        _ => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_of_lifetime() {
        assert_eq!(renewal_at(0, 90), 60);
        assert_eq!(renewal_at(1000, 1060), 1040);
        assert_eq!(renewal_at(5, 5), 5);
        assert_eq!(renewal_at(10, 5), 10);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(30));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(120));
        assert_eq!(backoff(40, 0.5), MAX_BACKOFF);
    }

    #[test]
    fn backoff_jitter_stays_within_a_quarter() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(22_500));
        assert!(backoff(1, 0.999) < Duration::from_millis(37_500));
        assert_eq!(backoff(1, 7.0), Duration::from_millis(37_500));
    }

    #[test]
    fn retry_never_passes_expiry() {
        assert_eq!(next_retry(0, 1, 0.5, None), 30);
        assert_eq!(next_retry(0, 20, 0.5, Some(1000)), 970);
        assert_eq!(next_retry(0, 20, 0.5, Some(10)), MAX_BACKOFF.as_secs());
    }
}
