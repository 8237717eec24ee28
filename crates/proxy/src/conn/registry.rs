//! The live sessions of every listener: who each one is (its verified
//! certificate chain, identity, address and MQTT client id), so that a
//! reload can check it again against new CAs, CRLs and allow-lists, an
//! operator can list and close it, and a session ends when its certificate
//! expires or it reaches `timeouts.max_connection_lifetime`.
//!
//! A session registers once its handshake is done and leaves when its
//! [`Registered`] handle drops, whichever way it ends. Stopping one sets
//! its reason and wakes it; the session itself then closes (an MQTT-aware
//! one with a DISCONNECT first), so the registry never touches a socket.
//!
//! The ban list (`bans`) lives here too: who may not start a session.
//!
//! One mutex over a map: registrations and removals are one insert or
//! remove each, and the scans (a reload's re-check, a listing, the expiry
//! sweep once a second) copy what they need and release it at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::CertificateDer;
use tokio::sync::Notify;

use crate::metrics::reason::reasons;
use crate::tls::client_auth::PeerIdentity;

reasons! {
    /// Why moat closed a live session on its own
    /// (`moat_connections_closed_total`).
    pub enum CloseReason {
        /// A reloaded CRL, or a `revocation_recheck` round's OCSP answer or
        /// CRL distribution point, revokes its client certificate.
        Revoked => "revoked",
        /// Its client certificate no longer passes the reloaded CA bundle
        /// or allow-list.
        NotTrusted => "not_trusted",
        /// Its client certificate's notAfter passed.
        CertificateExpired => "certificate_expired",
        /// It reached `timeouts.max_connection_lifetime`.
        MaxLifetime => "max_lifetime",
        /// An operator closed it (`DELETE /connections`).
        Kicked => "kicked",
        /// An operator banned it (`POST /bans`).
        Banned => "banned",
        /// A reloaded topic ACL no longer allows a subscription it holds.
        SubscriptionDenied => "subscription_denied",
    }
}

impl CloseReason {
    /// The MQTT 5 DISCONNECT reason code that tells the client why.
    pub fn disconnect_code(self) -> u8 {
        use moat_mqtt::ack::reason;
        match self {
            Self::Revoked
            | Self::NotTrusted
            | Self::CertificateExpired
            | Self::SubscriptionDenied => reason::NOT_AUTHORIZED,
            Self::MaxLifetime => reason::MAXIMUM_CONNECT_TIME,
            Self::Kicked | Self::Banned => reason::ADMINISTRATIVE_ACTION,
        }
    }
}

/// One live session, as the registry knows it.
#[derive(Debug)]
pub struct Session {
    /// The connection's id, as in its log lines (`conn{id=...}`); unique
    /// for the life of the process. `DELETE /connections/{id}`.
    pub id: u64,
    /// The listener (or route) that owns it.
    pub listener: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The verified client certificate's identity, if one was presented.
    pub identity: Option<PeerIdentity>,
    /// The client's chain, kept only on listeners that verify clients, for
    /// the re-check on reload.
    pub chain: Option<Vec<CertificateDer<'static>>>,
    /// When the session was established.
    pub since: SystemTime,
    /// When it ends on its own, and why.
    pub deadline: Option<(Instant, CloseReason)>,
    client_id: OnceLock<String>,
}

impl Session {
    /// The MQTT client id, once the CONNECT was accepted.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.get().map(String::as_str)
    }
}

/// How a session is told to stop, or that its listener's MQTT policy
/// was reloaded.
#[derive(Debug, Default)]
struct Stop {
    reason: OnceLock<CloseReason>,
    wake: Notify,
    policy: Notify,
}

#[derive(Debug, Clone)]
struct Entry {
    session: Arc<Session>,
    stop: Arc<Stop>,
}

/// The live sessions of the process.
#[derive(Debug, Default)]
pub struct Registry {
    /// Who may not start a session.
    pub bans: super::bans::Bans,
    sessions: Mutex<HashMap<u64, Entry>>,
}

/// What a new session tells the registry about itself.
pub struct NewSession {
    /// The connection's id, unique for the life of the process.
    pub id: u64,
    /// The listener (or route) that owns it.
    pub listener: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The verified identity.
    pub identity: Option<PeerIdentity>,
    /// The chain to check again on reload.
    pub chain: Option<Vec<CertificateDer<'static>>>,
    /// `timeouts.max_connection_lifetime` (zero: none).
    pub max_lifetime: Duration,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic elsewhere while holding the lock leaves the map whole.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session; it leaves when the handle drops.
    pub fn register(self: &Arc<Self>, new: NewSession) -> Registered {
        let id = new.id;
        let now = Instant::now();
        let wall = SystemTime::now();
        let deadline = deadline(
            id,
            now,
            wall,
            new.identity.as_ref().map(|i| i.not_after),
            new.max_lifetime,
        );
        let session = Arc::new(Session {
            id,
            listener: new.listener,
            peer: new.peer,
            identity: new.identity,
            chain: new.chain,
            since: wall,
            deadline,
            client_id: OnceLock::new(),
        });
        let stop = Arc::new(Stop::default());
        self.lock().insert(
            id,
            Entry {
                session: session.clone(),
                stop: stop.clone(),
            },
        );
        Registered {
            registry: self.clone(),
            session,
            stop,
        }
    }

    /// Every live session, in id order (the order they came).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<Arc<Session>> = self.lock().values().map(|e| e.session.clone()).collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The live sessions of `listener`.
    pub fn sessions_of(&self, listener: &str) -> Vec<Arc<Session>> {
        let mut all: Vec<Arc<Session>> = self
            .lock()
            .values()
            .filter(|e| e.session.listener == listener)
            .map(|e| e.session.clone())
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Tells session `id` to stop for `reason`. False when there is no such
    /// session (it may have just ended). A session told twice keeps the
    /// first reason.
    pub fn stop(&self, id: u64, reason: CloseReason) -> bool {
        let Some(stop) = self.lock().get(&id).map(|e| e.stop.clone()) else {
            return false;
        };
        let _ = stop.reason.set(reason);
        // notify_one keeps a permit when the session is not waiting yet.
        stop.wake.notify_one();
        true
    }

    /// Tells the live sessions of `listener` that its MQTT settings were
    /// reloaded: each MQTT-aware one takes the new ACL and limits for its
    /// next packets, and ends if the ACL no longer allows a subscription it
    /// holds (`conn::mqtt`). Returns how many were told.
    pub fn policy_changed(&self, listener: &str) -> usize {
        let told: Vec<Arc<Stop>> = self
            .lock()
            .values()
            .filter(|e| e.session.listener == listener)
            .map(|e| e.stop.clone())
            .collect();
        for stop in &told {
            // notify_one keeps a permit for a session busy elsewhere.
            stop.policy.notify_one();
        }
        told.len()
    }

    /// Stops every session whose deadline is at or before `now`; returns
    /// how many.
    pub fn expire(&self, now: Instant) -> usize {
        let due: Vec<(u64, CloseReason)> = self
            .lock()
            .values()
            .filter_map(|e| match e.session.deadline {
                Some((at, reason)) if at <= now && e.stop.reason.get().is_none() => {
                    Some((e.session.id, reason))
                }
                _ => None,
            })
            .collect();
        for (id, reason) in &due {
            self.stop(*id, *reason);
        }
        due.len()
    }
}

/// When a session established at `now` (`wall` on the wall clock) ends on
/// its own: its certificate's notAfter, or the lifetime limit, whichever
/// comes first.
///
/// The lifetime is jittered down to between 90 and 100 percent of the
/// limit, spread evenly by session id, so that a fleet that connected in
/// one burst (after a broker restart) does not reconnect in one burst
/// again when the limit comes round.
fn deadline(
    id: u64,
    now: Instant,
    wall: SystemTime,
    not_after: Option<i64>,
    max_lifetime: Duration,
) -> Option<(Instant, CloseReason)> {
    let expiry = not_after.map(|t| {
        let now_unix = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let left = (t as f64 - now_unix).max(0.0);
        (
            now + Duration::from_secs_f64(left),
            CloseReason::CertificateExpired,
        )
    });
    let lifetime = (!max_lifetime.is_zero()).then(|| {
        // A multiplicative hash of the id, as a fraction in [0, 1).
        let spread = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        let jittered = max_lifetime.mul_f64(0.9 + 0.1 * spread);
        (now + jittered, CloseReason::MaxLifetime)
    });
    match (expiry, lifetime) {
        (Some(e), Some(l)) => Some(if e.0 <= l.0 { e } else { l }),
        (e, l) => e.or(l),
    }
}

/// A session's place in the registry; leaving it when dropped.
pub struct Registered {
    registry: Arc<Registry>,
    session: Arc<Session>,
    stop: Arc<Stop>,
}

impl Registered {
    /// Records the MQTT client id the CONNECT carried.
    pub fn set_client_id(&self, client_id: &str) {
        let _ = self.session.client_id.set(client_id.to_string());
    }

    /// Resolves when the session is told to stop, with the reason.
    pub async fn stopped(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.stop.reason.get() {
                return *reason;
            }
            self.stop.wake.notified().await;
        }
    }

    /// Resolves when the listener's MQTT settings were reloaded since the
    /// last call ([`Registry::policy_changed`]).
    pub async fn policy_reloaded(&self) {
        self.stop.policy.notified().await;
    }

    /// The identity, for the line that says the session was closed.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.session.id);
    }
}

/// A fresh id for a unit test's session.
#[cfg(test)]
pub fn test_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_session(listener: &str, not_after: Option<i64>, max: Duration) -> NewSession {
        NewSession {
            id: test_id(),
            listener: listener.to_string(),
            peer: "127.0.0.1:4000".parse().unwrap(),
            identity: not_after.map(|t| PeerIdentity {
                subject: "CN=dev".into(),
                common_name: Some("dev".into()),
                sha256: "ab".into(),
                not_after: t,
            }),
            chain: None,
            max_lifetime: max,
        }
    }

    #[test]
    fn sessions_leave_when_their_handle_drops() {
        let r = Arc::new(Registry::default());
        let a = r.register(new_session("a", None, Duration::ZERO));
        let b = r.register(new_session("b", None, Duration::ZERO));
        assert_ne!(a.session().id, b.session().id);
        assert_eq!(r.sessions().len(), 2);
        assert_eq!(r.sessions_of("b").len(), 1);
        drop(a);
        assert_eq!(
            r.sessions().iter().map(|s| s.id).collect::<Vec<_>>(),
            [b.session().id]
        );
        drop(b);
        assert!(r.sessions().is_empty());
    }

    #[tokio::test]
    async fn a_stopped_session_wakes_with_the_first_reason() {
        let r = Arc::new(Registry::default());
        let a = r.register(new_session("a", None, Duration::ZERO));
        // Told before it waits: the permit is kept.
        assert!(r.stop(a.session().id, CloseReason::Kicked));
        assert!(r.stop(a.session().id, CloseReason::Revoked));
        assert_eq!(a.stopped().await, CloseReason::Kicked);
        assert!(!r.stop(9999, CloseReason::Kicked));
    }

    #[tokio::test]
    async fn a_policy_reload_tells_the_sessions_of_its_listener_only() {
        let r = Arc::new(Registry::default());
        let a = r.register(new_session("a", None, Duration::ZERO));
        let b = r.register(new_session("b", None, Duration::ZERO));
        assert_eq!(r.policy_changed("a"), 1);
        // Told before it waits: the permit is kept.
        tokio::time::timeout(Duration::from_secs(1), a.policy_reloaded())
            .await
            .expect("a was told");
        let untold = tokio::time::timeout(Duration::from_millis(50), b.policy_reloaded()).await;
        assert!(untold.is_err(), "b's listener did not reload");
        assert_eq!(r.policy_changed("none"), 0);
    }

    #[test]
    fn the_earlier_of_expiry_and_lifetime_wins() {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        // Expires in 10 s, lifetime an hour: expiry.
        let (at, why) = deadline(1, now, wall, Some(1_000_010), hour).unwrap();
        assert_eq!(why, CloseReason::CertificateExpired);
        assert_eq!(at - now, Duration::from_secs(10));
        // Expires in a day: the jittered lifetime.
        let (at, why) = deadline(1, now, wall, Some(1_086_400), hour).unwrap();
        assert_eq!(why, CloseReason::MaxLifetime);
        assert!(at - now >= hour.mul_f64(0.9) && at - now <= hour);
        // Already expired: due now.
        let (at, _) = deadline(1, now, wall, Some(10), Duration::ZERO).unwrap();
        assert_eq!(at, now);
        assert!(deadline(1, now, wall, None, Duration::ZERO).is_none());
    }

    #[test]
    fn lifetime_jitter_spreads_sessions_over_the_last_tenth() {
        let now = Instant::now();
        let max = Duration::from_secs(1000);
        let secs: Vec<u64> = (1..=1000)
            .map(|id| {
                let (at, _) = deadline(id, now, SystemTime::now(), None, max).unwrap();
                (at - now).as_secs()
            })
            .collect();
        assert!(secs.iter().all(|s| (900..=1000).contains(s)), "{secs:?}");
        // Every 10-second slice of the window gets some sessions.
        for slice in 90..100 {
            let n = secs.iter().filter(|s| **s / 10 == slice).count();
            assert!(n > 50, "slice {slice}: {n} sessions");
        }
    }

    #[test]
    fn expire_stops_only_the_sessions_that_are_due() {
        let r = Arc::new(Registry::default());
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expired = r.register(new_session("a", Some(now_unix - 5), Duration::ZERO));
        let valid = r.register(new_session("a", Some(now_unix + 3600), Duration::ZERO));
        assert_eq!(r.expire(Instant::now()), 1);
        assert_eq!(
            expired.stop.reason.get(),
            Some(&CloseReason::CertificateExpired)
        );
        assert!(valid.stop.reason.get().is_none());
        // Told once: not counted again.
        assert_eq!(r.expire(Instant::now()), 0);
    }
}
