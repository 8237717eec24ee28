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

/// When to renew inside an ACME Renewal Information window (RFC 9773
/// section 4.2): at once if it has started, else at a point `jitter` of
/// the way through it (so a fleet of replicas spreads over the window),
/// and never later than the certificate's expiry minus one base back-off.
pub fn ari_renewal_at(start: u64, end: u64, now: u64, jitter: f64, not_after: u64) -> u64 {
    if start <= now || end <= start {
        return now;
    }
    let span = (end - start) as f64;
    let at = start + (span * jitter.clamp(0.0, 1.0)) as u64;
    let last = not_after.saturating_sub(BASE_BACKOFF.as_secs()).max(now);
    at.min(end).min(last)
}

/// How long until the ARI window is asked for again: the CA's
/// Retry-After, bounded to between a minute and a day.
pub fn ari_recheck(retry_after: Duration) -> Duration {
    retry_after.clamp(Duration::from_secs(60), Duration::from_secs(24 * 3600))
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
    fn ari_windows_are_followed() {
        // A window in the future: a point inside it, by the jitter.
        assert_eq!(ari_renewal_at(1000, 2000, 0, 0.0, 10_000), 1000);
        assert_eq!(ari_renewal_at(1000, 2000, 0, 0.5, 10_000), 1500);
        assert_eq!(ari_renewal_at(1000, 2000, 0, 7.0, 10_000), 2000);
        // Started, or over (a revocation moves it into the past): now.
        assert_eq!(ari_renewal_at(1000, 2000, 1500, 0.9, 10_000), 1500);
        assert_eq!(ari_renewal_at(100, 200, 1500, 0.9, 10_000), 1500);
        // A nonsense window (end before start): now.
        assert_eq!(ari_renewal_at(2000, 1000, 0, 0.5, 10_000), 0);
        // Never past expiry minus a back-off.
        assert_eq!(ari_renewal_at(1000, 9000, 0, 1.0, 2000), 2000 - 30);
        assert_eq!(ari_recheck(Duration::from_secs(1)), Duration::from_secs(60));
        assert_eq!(
            ari_recheck(Duration::from_secs(6 * 3600)),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            ari_recheck(Duration::from_secs(9 * 86400)),
            Duration::from_secs(86400)
        );
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
