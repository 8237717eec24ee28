//! What a stapler tells its owner: the [`StapleObserver`] events (for
//! metrics and logs), the full [`StapleStatus`], and the [`RefreshError`]
//! reasons with their stable labels.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use crate::clock::fmt_time;
use crate::fetch::FetchError;
use crate::verify::{Staple, VerifyError};

/// Where the current staple came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StapleSource {
    /// Queried from the OCSP responder by this process.
    Fetched,
    /// Read from the disk cache at start-up.
    Cache,
    /// Read from the configured static file.
    StaticFile,
}

impl StapleSource {
    /// A short stable label: `fetched`, `cache` or `static_file`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fetched => "fetched",
            Self::Cache => "cache",
            Self::StaticFile => "static_file",
        }
    }
}

impl fmt::Display for StapleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a refresh (a query, or a read of the static file) brought no new
/// staple. The previous staple, if any, is kept until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshError {
    /// The query failed.
    Fetch(FetchError),
    /// The response was refused.
    Verify(VerifyError),
    /// The responder does not know the certificate. Such a response is
    /// valid but is not stapled: strict clients treat "unknown" as a
    /// failure, while no staple lets them fall back to their own checks.
    UnknownStatus,
    /// The response is valid but ends within the expiry margin.
    ExpiresTooSoon {
        /// The response's nextUpdate.
        next_update: SystemTime,
    },
    /// The static file cannot be read.
    StaticFile(String),
}

impl RefreshError {
    /// A short stable label for metrics; see [`RefreshError::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason(),
            Self::Verify(e) => e.reason(),
            Self::UnknownStatus => "unknown_status",
            Self::ExpiresTooSoon { .. } => "expired",
            Self::StaticFile(_) => "file_error",
        }
    }

    /// Every label [`RefreshError::reason`] can return (the failure side
    /// of a refresh-result metric; success is `success`).
    pub const REASONS: &'static [&'static str] = &concat::<18>(&[
        // fetching (`malformed` and `bad_certificate` come with verifying)
        &[
            "no_responder_url",
            "timeout",
            "fetch_failed",
            "http_status",
            "internal",
        ],
        // verifying
        VerifyError::REASONS,
        // policy and files
        &["unknown_status", "file_error"],
    ]);
}

/// The label lists `parts` one after the other, at compile time; fails to
/// compile unless they hold exactly `N` labels.
const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut len = 0;
    let mut part = 0;
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[len] = parts[part][i];
            len += 1;
            i += 1;
        }
        part += 1;
    }
    assert!(len == N, "the label lists do not hold N labels");
    out
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(e) => e.fmt(f),
            Self::Verify(e) => e.fmt(f),
            Self::UnknownStatus => f.write_str(
                "the OCSP responder does not know this certificate (status unknown); not stapling that",
            ),
            Self::ExpiresTooSoon { next_update } => write!(
                f,
                "the OCSP response expires too soon to staple (nextUpdate {})",
                fmt_time(*next_update)
            ),
            Self::StaticFile(d) => write!(f, "static OCSP file: {d}"),
        }
    }
}

impl std::error::Error for RefreshError {}

/// When the last refresh ended and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// When it ended.
    pub at: SystemTime,
    /// `Ok` if it brought a verified response.
    pub result: Result<(), RefreshError>,
}

/// Everything about one certificate's stapling, for metrics and status
/// pages. Read it with [`StaplerHandle::status`](crate::StaplerHandle::status).
#[derive(Debug, Clone)]
pub struct StapleStatus {
    /// The certificate's name, as given in the target.
    pub name: String,
    /// Whether the certificate requires stapling (TLS Feature
    /// status_request). If it does and `staple` is `None`, clients that
    /// honour Must-Staple refuse the handshake.
    pub must_staple: bool,
    /// The staple being served, if any.
    pub staple: Option<Arc<Staple>>,
    /// Where it came from.
    pub source: Option<StapleSource>,
    /// When stapling of it stops (shortly before its nextUpdate).
    pub serve_until: Option<SystemTime>,
    /// When the next query is planned (`None` in static-file mode).
    pub next_refresh: Option<SystemTime>,
    /// The last refresh.
    pub last_refresh: Option<RefreshRecord>,
    /// Refreshes that failed since the last success.
    pub consecutive_failures: u32,
}

impl StapleStatus {
    /// Whether a Must-Staple certificate is without a staple.
    pub fn must_staple_unmet(&self) -> bool {
        self.must_staple && self.staple.is_none()
    }
}

/// Receives a stapler's events. The owner turns them into metrics and, if
/// it wants, logs (the stapler already logs each of them with `tracing`).
///
/// Methods are called from the stapler's task and must return quickly:
/// no blocking, no awaiting. Every method has an empty default.
pub trait StapleObserver: Send + Sync + 'static {
    /// The stapled response changed: a new response, or none any more
    /// (`status.staple` is `None`). `status` is the complete new status.
    fn staple_changed(&self, status: &StapleStatus) {
        let _ = status;
    }

    /// A refresh ended: `Ok` for a verified response, otherwise why not.
    /// Label it `success` or [`RefreshError::reason`].
    fn refresh_result(&self, name: &str, result: Result<(), &RefreshError>) {
        let _ = (name, result);
    }

    /// The last good response could not be written to the disk cache.
    /// Stapling goes on; only a restart would lose it.
    fn cache_write_failed(&self, name: &str, error: &io::Error) {
        let _ = (name, error);
    }

    /// A Must-Staple certificate has no staple: after the first attempt,
    /// and each time its staple is lost.
    fn must_staple_without_staple(&self, name: &str) {
        let _ = name;
    }
}

/// An observer that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl StapleObserver for NoopObserver {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_cover_fetch_and_verify_without_duplicates() {
        for r in FetchError::REASONS.iter().chain(VerifyError::REASONS) {
            assert!(RefreshError::REASONS.contains(r), "{r} missing");
        }
        let mut sorted = RefreshError::REASONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), RefreshError::REASONS.len());
        assert!(!RefreshError::REASONS.contains(&"success"));
        for e in [
            RefreshError::UnknownStatus,
            RefreshError::ExpiresTooSoon {
                next_update: SystemTime::UNIX_EPOCH,
            },
            RefreshError::StaticFile("x".into()),
        ] {
            assert!(RefreshError::REASONS.contains(&e.reason()));
        }
    }

    #[test]
    fn source_labels() {
        assert_eq!(StapleSource::StaticFile.to_string(), "static_file");
        assert_eq!(StapleSource::Cache.label(), "cache");
        assert_eq!(StapleSource::Fetched.label(), "fetched");
    }
}
