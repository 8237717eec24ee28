//! OCSP stapling for moat: fetch, verify, schedule and cache the OCSP
//! responses a TLS server sends with its certificate.
//!
//! # What this crate owns
//!
//! * **Verification** ([`verify_response`]): a response is stapled only if
//!   it is successful, signed by the issuer or by a responder the issuer
//!   authorised (OCSPSigning), about our certificate (CertID), and fresh.
//!   Pure.
//! * **Scheduling** ([`schedule::Policy`]): refresh at a fraction of the
//!   validity with jitter, exponential back-off on failure, stop stapling
//!   shortly before nextUpdate, never staple an expired response. Pure.
//! * **Disk cache**: the last good response per certificate, written
//!   atomically, so a restart staples at once even if the responder is down.
//! * **Static files**: for air-gapped sites, a DER response file is
//!   verified, stapled, watched and re-read when it changes.
//! * **The task** ([`Stapler::spawn`]): one Tokio task per certificate,
//!   publishing the current staple wait-free ([`StaplerHandle::current`])
//!   and reporting events to a [`StapleObserver`] for metrics.
//!
//! * **Other certificates' responders** ([`OcspClient`]): the same query
//!   for many certificates over one HTTP client, each asking the
//!   responder its own AIA extension names (the proxy checks device
//!   certificates with it and [`verify_response`]).
//!
//! It knows nothing of listeners, rustls configuration or MQTT: the owner
//! puts [`Staple::der`] into its `CertifiedKey::ocsp`.
//!
//! # Beyond `ocsp-stapler`
//!
//! Queries to the certificate's responder use `ocsp_stapler::Client`. That
//! crate neither verifies signatures nor checks that a response is about
//! our certificate, refreshes on a fixed tick and keeps nothing across
//! restarts; this crate adds all of that.
//!
//! # Revoked and Must-Staple
//!
//! A verified "revoked" response is still stapled (clients must learn) and
//! logged at error level. An "unknown" one is not stapled. A certificate
//! with the TLS Feature extension (Must-Staple) and no valid staple is
//! reported through [`StapleObserver::must_staple_without_staple`] and
//! [`StapleStatus::must_staple_unmet`].

#![warn(missing_docs)]

mod cache;
mod cert;
mod clock;
mod config;
mod der;
mod fetch;
mod observer;
pub mod schedule;
mod stapler;
mod verify;

pub use cache::{cache_path, in_background, read_cached, write_atomic};
pub use cert::{leaf_facts, LeafFacts};
pub use clock::{Clock, SystemClock};
pub use config::{ConfigError, StaplingConfig};
pub use fetch::{responder_url_of, CrlClient, FetchError, OcspClient, MAX_CRL_SIZE};
pub use observer::{
    NoopObserver, RefreshError, RefreshRecord, StapleObserver, StapleSource, StapleStatus,
};
pub use stapler::{SpawnError, StapleReader, StapleTarget, Stapler, StaplerHandle};
pub use verify::{verify_response, CertStatus, Responder, RevocationReason, Staple, VerifyError};
