//! The timing rules of stapling: when to refresh a response, how long a
//! response may be stapled, and how to back off after failures. Pure: the
//! current time and a jitter value in `[-1, 1]` are inputs, so every rule
//! is testable with a controlled clock.

use std::time::{Duration, SystemTime};

use crate::clock;
use crate::config::StaplingConfig;

/// Refreshes never start later than this fraction of a response's validity,
/// whatever `refresh_fraction` and the jitter say, leaving the rest of the
/// validity for retries.
pub const LATEST_REFRESH_FRACTION: f64 = 0.9;

/// The part of a response's validity kept as an expiry margin at most (1%).
pub const MAX_MARGIN_FRACTION: f64 = 0.01;

/// The shortest retry delay near the end of a staple's life.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// The timing part of a [`StaplingConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// See [`StaplingConfig::refresh_fraction`].
    pub refresh_fraction: f64,
    /// See [`StaplingConfig::jitter_fraction`].
    pub jitter_fraction: f64,
    /// See [`StaplingConfig::backoff_initial`].
    pub backoff_initial: Duration,
    /// See [`StaplingConfig::backoff_max`].
    pub backoff_max: Duration,
    /// See [`StaplingConfig::min_refresh_interval`].
    pub min_refresh_interval: Duration,
    /// See [`StaplingConfig::expiry_margin`].
    pub expiry_margin: Duration,
}

impl From<&StaplingConfig> for Policy {
    fn from(c: &StaplingConfig) -> Self {
        Self {
            refresh_fraction: c.refresh_fraction,
            jitter_fraction: c.jitter_fraction,
            backoff_initial: c.backoff_initial,
            backoff_max: c.backoff_max,
            min_refresh_interval: c.min_refresh_interval,
            expiry_margin: c.expiry_margin,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::from(&StaplingConfig::default())
    }
}

/// `d * factor`, never panicking: negative or non-finite factors give zero,
/// overflow gives `Duration::MAX`.
fn scale(d: Duration, factor: f64) -> Duration {
    if !factor.is_finite() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

impl Policy {
    /// `1 + jitter_fraction * jitter`, with `jitter` clamped to `[-1, 1]`.
    fn spread(&self, jitter: f64) -> f64 {
        let jitter = if jitter.is_finite() {
            jitter.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        1.0 + self.jitter_fraction * jitter
    }

    /// How long before nextUpdate stapling stops: `expiry_margin`, but at
    /// most 1% of the validity.
    pub fn margin(&self, this_update: SystemTime, next_update: SystemTime) -> Duration {
        let validity = clock::since(next_update, this_update);
        self.expiry_margin.min(scale(validity, MAX_MARGIN_FRACTION))
    }

    /// The moment stapling of a response stops: nextUpdate minus the margin.
    /// A response is stapled only while `now < serve_until`.
    pub fn serve_until(&self, this_update: SystemTime, next_update: SystemTime) -> SystemTime {
        clock::sub(next_update, self.margin(this_update, next_update))
    }

    /// When a response becomes due for refresh:
    /// `thisUpdate + refresh_fraction * validity`, spread by the jitter, and
    /// never later than [`LATEST_REFRESH_FRACTION`] of the validity.
    pub fn refresh_due(
        &self,
        this_update: SystemTime,
        next_update: SystemTime,
        jitter: f64,
    ) -> SystemTime {
        let validity = clock::since(next_update, this_update);
        let target = scale(validity, self.refresh_fraction * self.spread(jitter));
        let latest = scale(validity, LATEST_REFRESH_FRACTION);
        clock::add(this_update, target.min(latest))
    }

    /// The next refresh after a successful one that brought a response with
    /// these times: [`Policy::refresh_due`], but not before
    /// `now + min_refresh_interval`, so a responder handing out old
    /// responses is not queried in a loop.
    pub fn refresh_at(
        &self,
        this_update: SystemTime,
        next_update: SystemTime,
        now: SystemTime,
        jitter: f64,
    ) -> SystemTime {
        self.refresh_due(this_update, next_update, jitter)
            .max(clock::add(now, self.min_refresh_interval))
    }

    /// The delay before retry number `failures` (1 for the first failure):
    /// `backoff_initial * 2^(failures - 1)`, spread by the jitter, capped at
    /// `backoff_max`.
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let base = self
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        scale(base, self.spread(jitter)).min(self.backoff_max)
    }

    /// When to retry after `failures` consecutive failures at `now`.
    ///
    /// While a good staple is held (`serve_until` is its end), the retry is
    /// never scheduled past its end, so a last attempt happens before
    /// stapling would stop.
    pub fn retry_at(
        &self,
        failures: u32,
        now: SystemTime,
        serve_until: Option<SystemTime>,
        jitter: f64,
    ) -> SystemTime {
        let mut at = clock::add(now, self.backoff(failures, jitter));
        if let Some(until) = serve_until.filter(|until| *until > now) {
            let floor = self.backoff_initial.min(MIN_RETRY);
            at = at.min(clock::sub(until, floor)).max(clock::add(now, floor));
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn secs_after(base: SystemTime, at: SystemTime) -> f64 {
        at.duration_since(base).unwrap().as_secs_f64()
    }

    #[test]
    fn refresh_halfway_without_jitter() {
        let p = Policy::default();
        // A 7-day response fetched right away refreshes after 3.5 days.
        let at = p.refresh_at(t(0), t(7 * 24 * H), t(0), 0.0);
        assert_eq!(at, t(84 * H));
    }

    #[test]
    fn jitter_spreads_by_ten_percent_of_the_delay() {
        let p = Policy::default();
        let early = p.refresh_at(t(0), t(100 * H), t(0), -1.0);
        let late = p.refresh_at(t(0), t(100 * H), t(0), 1.0);
        assert_eq!(early, t(45 * H));
        assert_eq!(late, t(55 * H));
        // Out-of-range or NaN jitter cannot push it further.
        assert_eq!(p.refresh_at(t(0), t(100 * H), t(0), 7.0), late);
        assert_eq!(p.refresh_at(t(0), t(100 * H), t(0), f64::NAN), t(50 * H));
    }

    #[test]
    fn refresh_never_later_than_ninety_percent() {
        let p = Policy {
            refresh_fraction: 0.95,
            jitter_fraction: 0.5,
            ..Policy::default()
        };
        let at = p.refresh_at(t(0), t(100 * H), t(0), 1.0);
        assert_eq!(at, t(90 * H));
        assert!(at < p.serve_until(t(0), t(100 * H)));
    }

    #[test]
    fn old_response_is_not_refetched_in_a_loop() {
        let p = Policy::default();
        // Response from a CDN: thisUpdate 3 days ago, due already.
        let now = t(72 * H);
        let at = p.refresh_at(t(0), t(96 * H), now, 0.0);
        assert_eq!(at, t(72 * H + 60));
        // But at start-up with a cached one, it is due now.
        assert!(p.refresh_due(t(0), t(96 * H), 0.0) <= now);
    }

    #[test]
    fn margin_is_a_minute_or_one_percent() {
        let p = Policy::default();
        assert_eq!(p.margin(t(0), t(7 * 24 * H)), Duration::from_secs(60));
        assert_eq!(p.serve_until(t(0), t(7 * 24 * H)), t(7 * 24 * H - 60));
        // A 2-minute response stops 1.2 s before its end.
        assert_eq!(p.margin(t(0), t(120)), Duration::from_millis(1200));
        // Nonsense times saturate instead of panicking.
        assert_eq!(p.margin(t(10), t(0)), Duration::ZERO);
        assert_eq!(p.serve_until(t(10), t(0)), t(0));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Policy::default();
        let delays: Vec<u64> = (1..=8).map(|f| p.backoff(f, 0.0).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_secs(600));
        assert_eq!(p.backoff(0, 0.0), Duration::from_secs(10));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(11));
        assert_eq!(p.backoff(1, -1.0), Duration::from_secs(9));
        assert_eq!(p.backoff(9, 1.0), Duration::from_secs(600));
    }

    #[test]
    fn huge_config_values_do_not_panic() {
        let p = Policy {
            backoff_initial: Duration::MAX,
            backoff_max: Duration::MAX,
            min_refresh_interval: Duration::MAX,
            expiry_margin: Duration::MAX,
            ..Policy::default()
        };
        let _ = p.backoff(40, 1.0);
        let _ = p.retry_at(40, t(0), Some(t(10)), 1.0);
        let _ = p.refresh_at(t(0), t(10), t(0), 1.0);
        let _ = p.serve_until(SystemTime::UNIX_EPOCH, t(10));
    }

    #[test]
    fn retries_stay_before_the_staple_ends() {
        let p = Policy::default();
        let until = t(1000);
        // Far from the end: plain back-off.
        assert_eq!(p.retry_at(1, t(0), Some(until), 0.0), t(10));
        assert_eq!(p.retry_at(7, t(0), Some(until), 0.0), t(600));
        // Near the end: one second before it, not after.
        assert_eq!(p.retry_at(7, t(900), Some(until), 0.0), t(999));
        // At the very end: a short floor, never a tight loop.
        let at = p.retry_at(7, t(999), Some(until), 0.0);
        assert_eq!(at, t(1000));
        // No staple held (or it has ended): plain back-off.
        assert_eq!(p.retry_at(3, t(2000), Some(until), 0.0), t(2040));
        assert_eq!(p.retry_at(3, t(0), None, 0.0), t(40));
    }

    #[test]
    fn simulated_outage_keeps_trying_and_respects_bounds() {
        // A responder that is down for a whole 1-day response: attempts
        // back off to the cap, the last one happens before the staple
        // ends, and they never come closer than one second.
        let p = Policy {
            jitter_fraction: 0.1,
            ..Policy::default()
        };
        let this = t(0);
        let next = t(24 * H);
        let until = p.serve_until(this, next);
        let mut now = p.refresh_at(this, next, this, 0.3);
        let first = now;
        let mut failures = 0;
        let mut attempts = 0;
        let mut last_before_end = now;
        let jitters = [0.9, -0.7, 0.1, -1.0, 1.0];
        while now < t(30 * H) && attempts < 10_000 {
            failures += 1;
            attempts += 1;
            let held = (now < until).then_some(until);
            let at = p.retry_at(failures, now, held, jitters[attempts % jitters.len()]);
            assert!(at >= clock::add(now, Duration::from_secs(1)));
            assert!(secs_after(now, at) <= 660.0);
            if now < until {
                assert!(at <= until, "retry past the staple's end");
                last_before_end = at;
            }
            now = at;
        }
        assert!(first < until);
        assert!(secs_after(last_before_end, until) <= 1.0);
        assert!(attempts < 200, "{attempts} attempts in 30 h");
    }
}
