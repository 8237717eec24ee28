//! Admission: whether a new connection may start at all, decided before
//! any work is done for it. Three limits apply, in this order: the
//! listener's `max_connections` (a semaphore), the per-source-address
//! limits, and, when the handshake starts, `limits.max_handshakes`.
//!
//! Per-source-address admission: how many connections one address may have
//! open, and how fast it may open new ones.
//!
//! Devices behind a NAT share one address, so the defaults are generous;
//! they stop a single misbehaving host (a reconnect loop, a scanner) from
//! taking every slot. A connection over a limit is closed at once and
//! counted by reason; nobody else is affected.
//!
//! The table holds an entry per address with a connection open or a recent
//! connection; idle entries are swept, and the table is capped: when it is
//! full, new addresses are admitted without per-address accounting rather
//! than refused (a flood of distinct addresses is what `max_connections`
//! and `max_handshakes` are for).
//!
//! Pure logic with the time passed in, so it is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::reasons::RejectReason;
use crate::config::ListenerConfig;

/// A listener's admission limits.
#[derive(Debug)]
pub struct Admission {
    /// The listener's `max_connections`.
    pub max_connections: usize,
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    handshakes: Arc<Semaphore>,
}

/// What an admitted connection holds until it ends: its slot of
/// `max_connections` and of its source address.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
}

impl Admission {
    /// The limits of `listener`.
    pub fn new(listener: &ListenerConfig) -> Self {
        Self {
            max_connections: listener.max_connections,
            slots: Arc::new(Semaphore::new(listener.max_connections)),
            per_ip: Arc::new(PerIp::new(PerIpLimits {
                connections: listener.limits.per_ip_connections,
                rate: listener.limits.per_ip_rate,
            })),
            handshakes: Arc::new(Semaphore::new(listener.limits.max_handshakes)),
        }
    }

    /// Admits a connection from `ip` at `now`, or says why not.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Admitted, RejectReason> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| RejectReason::MaxConnections)?;
        let ip = self.per_ip.admit(ip, now).map_err(Refusal::reason)?;
        Ok(Admitted {
            _slot: slot,
            _ip: ip,
        })
    }

    /// A slot among the handshakes in progress, held until the handshake
    /// ends.
    pub fn handshake(&self) -> Result<OwnedSemaphorePermit, RejectReason> {
        self.handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| RejectReason::HandshakeLimit)
    }

    /// Forgets per-address entries with nothing open and a full bucket.
    pub fn sweep(&self, now: Instant) {
        self.per_ip.sweep(now);
    }
}

/// Most addresses tracked at once.
const MAX_TRACKED: usize = 200_000;

/// Per-address limits (0 disables one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerIpLimits {
    /// Connections one address may have open at once.
    pub connections: u32,
    /// New connections per second one address may open (bursts of twice
    /// this are allowed).
    pub rate: f64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    tokens: f64,
    refilled: Instant,
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It has `connections` open already.
    TooManyConnections,
    /// It opens connections faster than `rate`.
    TooFast,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> RejectReason {
        match self {
            Self::TooManyConnections => RejectReason::PerIpConnections,
            Self::TooFast => RejectReason::PerIpRate,
        }
    }
}

/// The per-address table of one listener.
#[derive(Debug)]
pub struct PerIp {
    limits: PerIpLimits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// Releases its address's slot when the connection ends.
#[derive(Debug)]
pub struct IpSlot {
    table: Option<(Arc<PerIp>, IpAddr)>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = self.table.take() {
            per_ip.release(ip);
        }
    }
}

impl PerIp {
    /// A table enforcing `limits`.
    pub fn new(limits: PerIpLimits) -> Self {
        Self {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.limits.connections > 0 || self.limits.rate > 0.0
    }

    fn burst(&self) -> f64 {
        (self.limits.rate * 2.0).max(1.0)
    }

    /// Admits a new connection from `ip` at `now`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<IpSlot, Refusal> {
        if !self.enabled() {
            return Ok(IpSlot { table: None });
        }
        let mut table = match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if !table.contains_key(&ip) && table.len() >= MAX_TRACKED {
            return Ok(IpSlot { table: None });
        }
        let burst = self.burst();
        let e = table.entry(ip).or_insert(Entry {
            open: 0,
            tokens: burst,
            refilled: now,
        });
        if self.limits.rate > 0.0 {
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * self.limits.rate).min(burst);
            e.refilled = now;
            if e.tokens < 1.0 {
                return Err(Refusal::TooFast);
            }
        }
        if self.limits.connections > 0 && e.open >= self.limits.connections {
            return Err(Refusal::TooManyConnections);
        }
        if self.limits.rate > 0.0 {
            e.tokens -= 1.0;
        }
        e.open += 1;
        Ok(IpSlot {
            table: Some((self.clone(), ip)),
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut table = match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = table.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
        }
    }

    /// Forgets addresses with nothing open whose rate bucket has refilled:
    /// they are back to a fresh start anyway.
    pub fn sweep(&self, now: Instant) {
        let refill = if self.limits.rate > 0.0 {
            Duration::from_secs_f64(self.burst() / self.limits.rate)
        } else {
            Duration::ZERO
        };
        let mut table = match self.table.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        table.retain(|_, e| e.open > 0 || now.saturating_duration_since(e.refilled) < refill);
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn concurrent_connections_per_address() {
        let t = Arc::new(PerIp::new(PerIpLimits {
            connections: 2,
            rate: 0.0,
        }));
        let now = Instant::now();
        let a = t.admit(ip(1), now).expect("first");
        let _b = t.admit(ip(1), now).expect("second");
        assert_eq!(t.admit(ip(1), now).err(), Some(Refusal::TooManyConnections));
        assert!(
            t.admit(ip(2), now).is_ok(),
            "another address is not affected"
        );
        drop(a);
        assert!(
            t.admit(ip(1), now).is_ok(),
            "a slot frees when a connection ends"
        );
    }

    #[test]
    fn rate_with_burst_and_refill() {
        let t = Arc::new(PerIp::new(PerIpLimits {
            connections: 0,
            rate: 5.0,
        }));
        let start = Instant::now();
        let mut admitted = 0;
        for _ in 0..20 {
            if t.admit(ip(1), start).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10, "a burst of twice the rate");
        assert_eq!(t.admit(ip(1), start).err(), Some(Refusal::TooFast));
        // One second later, five more.
        let later = start + Duration::from_secs(1);
        let more = (0..10).filter(|_| t.admit(ip(1), later).is_ok()).count();
        assert_eq!(more, 5);
    }

    #[test]
    fn sweep_forgets_idle_addresses_only() {
        let t = Arc::new(PerIp::new(PerIpLimits {
            connections: 10,
            rate: 10.0,
        }));
        let now = Instant::now();
        let held = t.admit(ip(1), now).expect("admit");
        drop(t.admit(ip(2), now).expect("admit"));
        t.sweep(now + Duration::from_secs(60));
        assert_eq!(t.tracked(), 1, "the address with an open connection stays");
        drop(held);
        t.sweep(now + Duration::from_secs(120));
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn disabled_limits_track_nothing() {
        let t = Arc::new(PerIp::new(PerIpLimits {
            connections: 0,
            rate: 0.0,
        }));
        for _ in 0..100 {
            let _ = t.admit(ip(1), Instant::now()).expect("admitted");
        }
        assert_eq!(t.tracked(), 0);
    }
}
