//! Wall-clock time: the [`Clock`] the stapler reads (injectable, so tests
//! can move time), and safe conversions and formatting of the times found
//! in certificates and OCSP responses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// OCSP validity is expressed in wall-clock time, so the stapler reads the
/// time from a `Clock`. Production uses [`SystemClock`]; tests can supply a
/// clock they move forward.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The time `secs` seconds (and `nanos`) after the Unix epoch, if a
/// `SystemTime` can hold it.
pub(crate) fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    t.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Whole seconds since the Unix epoch (negative before it), saturating.
pub(crate) fn to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// RFC 3339 for log lines and error messages. Unlike
/// `humantime::format_rfc3339_seconds`, it never panics: times outside
/// 1970..=9999 (possible in hostile input) are shown as Unix seconds.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("@{} (Unix seconds)", to_unix(t)),
    }
}

/// `a - b`, or zero when `b` is later.
pub(crate) fn since(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or(Duration::ZERO)
}

/// `t + d`, saturating far in the future.
pub(crate) fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64))
}

/// `t - d`, or the Unix epoch if that cannot be represented.
pub(crate) fn sub(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        let t = from_unix(1_700_000_000, 5).unwrap();
        assert_eq!(to_unix(t), 1_700_000_000);
        let before = from_unix(-10, 0).unwrap();
        assert_eq!(to_unix(before), -10);
        assert!(from_unix(i64::MAX, 999_999_999).is_none() || to_unix(add(t, Duration::MAX)) > 0);
        assert_eq!(
            sub(UNIX_EPOCH, Duration::from_secs(5)),
            from_unix(-5, 0).unwrap()
        );
        assert_eq!(sub(UNIX_EPOCH, Duration::MAX), UNIX_EPOCH);
        assert_eq!(since(UNIX_EPOCH, t), Duration::ZERO);
    }

    #[test]
    fn formatting_never_panics() {
        assert_eq!(fmt_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert!(fmt_time(from_unix(-1, 0).unwrap()).contains("-1"));
        let far = from_unix(300_000_000_000, 0).unwrap();
        assert!(fmt_time(far).contains("300000000000"));
    }
}
