//! The knobs of one certificate's stapler ([`StaplingConfig`]), their
//! defaults, and their validation. Pure.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How one certificate's OCSP response is obtained, refreshed and kept.
///
/// Defaults suit a public CA; [`StaplingConfig::validate`] refuses values
/// that would make no sense.
#[derive(Debug, Clone, PartialEq)]
pub struct StaplingConfig {
    /// Query this responder instead of the one in the certificate's
    /// Authority Information Access extension. Default: none.
    pub responder_url: Option<String>,
    /// Refresh when this fraction of a response's validity
    /// (`nextUpdate - thisUpdate`) has passed. Between 0 and 1 exclusive;
    /// refreshes never start later than 90% of the validity. Default 0.5.
    pub refresh_fraction: f64,
    /// Random spread of each refresh time, as a fraction of the delay it
    /// applies to (so 0.1 means ±10%), so that many gateways do not query a
    /// responder in step. Between 0 and 0.5. Default 0.1.
    pub jitter_fraction: f64,
    /// Keep the last good response of each certificate in this directory,
    /// so a restart staples at once even if the responder is down. Created
    /// if missing; unused with `static_file`. Default: none (no disk cache).
    pub cache_dir: Option<PathBuf>,
    /// Staple this DER OCSPResponse file instead of querying a responder
    /// (for air-gapped sites): verified like a fetched response and re-read
    /// when it changes. Excludes `responder_url`. Default: none.
    pub static_file: Option<PathBuf>,
    /// Time allowed to connect to the responder. Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for a whole query, connection included. Default 10 s.
    pub request_timeout: Duration,
    /// First retry delay after a failed refresh; it doubles on each
    /// further failure. Default 10 s.
    pub backoff_initial: Duration,
    /// The longest retry delay. Default 10 min.
    pub backoff_max: Duration,
    /// Least time between two successful refreshes, so a responder that
    /// hands out old responses is not queried in a loop. Default 60 s.
    pub min_refresh_interval: Duration,
    /// Stop stapling a response this long before its nextUpdate (at most 1%
    /// of its validity), so clients with slightly fast clocks never receive
    /// an expired response. Default 60 s.
    pub expiry_margin: Duration,
    /// Clock difference tolerated with the responder when checking
    /// thisUpdate and nextUpdate. Default 5 min.
    pub clock_skew: Duration,
    /// Upper bound on how long the stapler sleeps before re-checking the
    /// clock (and, in static-file mode, the file), whatever the schedule.
    /// Default 60 s.
    pub recheck_interval: Duration,
}

impl Default for StaplingConfig {
    fn default() -> Self {
        Self {
            responder_url: None,
            refresh_fraction: 0.5,
            jitter_fraction: 0.1,
            cache_dir: None,
            static_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(60),
            expiry_margin: Duration::from_secs(60),
            clock_skew: Duration::from_secs(300),
            recheck_interval: Duration::from_secs(60),
        }
    }
}

/// A configuration value [`StaplingConfig::validate`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as named in [`StaplingConfig`].
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl StaplingConfig {
    /// Checks every field; returns all problems, not only the first.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad =
            |field: &'static str, problem: String| errors.push(ConfigError { field, problem });
        if let Some(url) = &self.responder_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => bad(
                    "responder_url",
                    format!("{url:?} is not an http:// or https:// URL with a host"),
                ),
                Err(e) => bad("responder_url", format!("{url:?} is not a URL: {e}")),
            }
        }
        if self.static_file.is_some() && self.responder_url.is_some() {
            bad(
                "static_file",
                "a static OCSP file excludes responder_url: with a file, no query is made".into(),
            );
        }
        if !(self.refresh_fraction > 0.0 && self.refresh_fraction < 1.0) {
            bad(
                "refresh_fraction",
                format!(
                    "{} is not between 0 and 1 (exclusive)",
                    self.refresh_fraction
                ),
            );
        }
        if !(0.0..=0.5).contains(&self.jitter_fraction) {
            bad(
                "jitter_fraction",
                format!("{} is not between 0 and 0.5", self.jitter_fraction),
            );
        }
        let nonzero = [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("min_refresh_interval", self.min_refresh_interval),
            ("recheck_interval", self.recheck_interval),
        ];
        for (field, value) in nonzero {
            if value.is_zero() {
                bad(field, "must be more than zero".into());
            }
        }
        if self.backoff_max < self.backoff_initial {
            bad(
                "backoff_max",
                format!(
                    "{:?} is shorter than backoff_initial ({:?})",
                    self.backoff_max, self.backoff_initial
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        StaplingConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported() {
        let config = StaplingConfig {
            responder_url: Some("ftp://x".into()),
            static_file: Some("/x.der".into()),
            refresh_fraction: 1.0,
            jitter_fraction: f64::NAN,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(1),
            recheck_interval: Duration::ZERO,
            ..StaplingConfig::default()
        };
        let errors = config.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "responder_url",
                "static_file",
                "refresh_fraction",
                "jitter_fraction",
                "recheck_interval",
                "backoff_max"
            ]
        );
        assert!(errors[0].to_string().starts_with("responder_url: "));
    }

    #[test]
    fn url_without_scheme_is_refused() {
        let config = StaplingConfig {
            responder_url: Some("ocsp.example.com".into()),
            ..StaplingConfig::default()
        };
        assert_eq!(config.validate().unwrap_err()[0].field, "responder_url");
        let config = StaplingConfig {
            responder_url: Some("http://127.0.0.1:8080/ocsp".into()),
            ..StaplingConfig::default()
        };
        config.validate().unwrap();
    }
}
