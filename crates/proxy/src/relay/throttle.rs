//! Per-device rate limits on what a client sends (`mqtt.limits`): PUBLISH
//! packets and bytes a second, with bursts, shared by every connection of
//! one device, and the cap on its new connections a minute.
//!
//! A client over its rate is slowed, not dropped: the MQTT pump holds the
//! packet it decided on until the device's bucket allows it, and reads
//! nothing more from the client meanwhile, so TCP pushes back on the
//! device (as EMQX's rate limits do). With `disconnect_after`, a session
//! that stays over its rate that long is closed.
//!
//! The buckets are governor's keyed GCRA limiters (a Mutex'd map: no
//! extra concurrent-map crate), keyed by the identity, else the client id.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Sleep;

use crate::config::MqttLimits;

/// The byte burst when none is given (and the rate is lower): a few reads
/// of the relay's buffer.
const MIN_BYTES_BURST: u32 = 64 * 1024;

/// One listener's limits, shared by all its connections.
pub struct DeviceLimits {
    publish: Option<DefaultKeyedRateLimiter<String>>,
    bytes: Option<(DefaultKeyedRateLimiter<String>, u32)>,
    connects: Option<DefaultKeyedRateLimiter<String>>,
    disconnect_after: Option<Duration>,
    /// The settings they came from.
    pub config: MqttLimits,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl DeviceLimits {
    /// The limiters `config` asks for (validated: rates at least 1).
    pub fn new(config: &MqttLimits) -> Self {
        let publish = config.publish_rate.map(|rate| {
            let burst = config.publish_burst.unwrap_or(rate);
            DefaultKeyedRateLimiter::hashmap(Quota::per_second(nz(rate)).allow_burst(nz(burst)))
        });
        let bytes = config.bytes_rate.map(|rate| {
            let burst = config.bytes_burst.unwrap_or(rate.max(MIN_BYTES_BURST));
            let q = Quota::per_second(nz(rate)).allow_burst(nz(burst));
            (DefaultKeyedRateLimiter::hashmap(q), burst)
        });
        let connects = config
            .connections_per_minute
            .map(|n| DefaultKeyedRateLimiter::hashmap(Quota::per_minute(nz(n)).allow_burst(nz(n))));
        Self {
            publish,
            bytes,
            connects,
            disconnect_after: config.disconnect_after.map(|d| d.0),
            config: config.clone(),
        }
    }

    /// The limits of `listener` (none when it is not MQTT-aware).
    pub fn of(listener: &crate::config::ListenerConfig) -> Self {
        Self::new(
            &listener
                .mqtt
                .as_ref()
                .map(|m| m.limits.clone())
                .unwrap_or_default(),
        )
    }

    /// Whether any rate limit is set (a session then gets a [`Throttle`]).
    pub fn limits_rates(&self) -> bool {
        self.publish.is_some() || self.bytes.is_some()
    }

    /// Counts a new connection of `key`; false when it is over
    /// `connections_per_minute`.
    pub fn admit_connection(&self, key: &str) -> bool {
        self.connects
            .as_ref()
            .is_none_or(|l| l.check_key(&key.to_string()).is_ok())
    }

    /// Forgets devices whose buckets are full again (from the sweep).
    pub fn forget_idle(&self) {
        for l in [&self.publish, &self.connects].into_iter().flatten() {
            l.retain_recent();
        }
        if let Some((l, _)) = &self.bytes {
            l.retain_recent();
        }
    }
}

/// The counters a throttle updates.
#[derive(Clone, Default)]
pub struct ThrottleCounters {
    /// `moat_mqtt_throttled_total`: times a client's reads were paused.
    pub throttled: Counter,
    /// `moat_mqtt_throttle_seconds_total`.
    pub paused: Counter<f64, AtomicU64>,
}

/// One session's view of its device's limits: what it sent and has not
/// been let through yet.
pub struct Throttle {
    limits: Arc<DeviceLimits>,
    key: String,
    packets_due: u32,
    bytes_due: u32,
    sleep: Option<Pin<Box<Sleep>>>,
    paused_at: Option<Instant>,
    /// Since when the session has been over its rate without a break.
    over_since: Option<Instant>,
    counters: ThrottleCounters,
}

/// The session stayed over its rate for `disconnect_after`.
#[derive(Debug)]
pub struct RateExceeded;

impl Throttle {
    /// The throttle of a session of device `key`.
    pub fn new(limits: Arc<DeviceLimits>, key: String, counters: ThrottleCounters) -> Self {
        Self {
            limits,
            key,
            packets_due: 0,
            bytes_due: 0,
            sleep: None,
            paused_at: None,
            over_since: None,
            counters,
        }
    }

    /// Records what the client just sent: `packets` PUBLISHes started,
    /// `bytes` bytes to forward.
    pub fn charge(&mut self, packets: u32, bytes: usize) {
        if self.limits.publish.is_some() {
            self.packets_due += packets;
        }
        if self.limits.bytes.is_some() {
            self.bytes_due = self.bytes_due.saturating_add(bytes as u32);
        }
    }

    /// Ready when what was charged may go on; pending (with a timer) while
    /// the device is over its rate. An error when it has been over its
    /// rate for longer than `disconnect_after`.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RateExceeded>> {
        loop {
            if let Some(sleep) = &mut self.sleep {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let wait = match self.try_admit() {
                None => {
                    if let Some(at) = self.paused_at.take() {
                        self.counters.paused.inc_by(at.elapsed().as_secs_f64());
                    } else {
                        // Let through without a pause: no longer over.
                        self.over_since = None;
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(wait) => wait,
            };
            let now = Instant::now();
            let since = *self.over_since.get_or_insert(now);
            if let Some(limit) = self.limits.disconnect_after {
                if now.duration_since(since) >= limit {
                    return Poll::Ready(Err(RateExceeded));
                }
            }
            if self.paused_at.is_none() {
                self.paused_at = Some(now);
                self.counters.throttled.inc();
            }
            self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }

    /// Takes what is due from the buckets; how long to wait when they
    /// cannot give it all yet.
    fn try_admit(&mut self) -> Option<Duration> {
        let clock = DefaultClock::default();
        if self.packets_due > 0 {
            if let Some(l) = &self.limits.publish {
                match l.check_key(&self.key) {
                    Ok(()) => self.packets_due -= 1,
                    Err(not_until) => return Some(not_until.wait_time_from(clock.now())),
                }
                return self.try_admit();
            }
        }
        while self.bytes_due > 0 {
            let Some((l, burst)) = &self.limits.bytes else {
                self.bytes_due = 0;
                break;
            };
            let n = self.bytes_due.min(*burst);
            match l.check_key_n(&self.key, nz(n)) {
                Ok(Ok(())) => self.bytes_due -= n,
                Ok(Err(not_until)) => return Some(not_until.wait_time_from(clock.now())),
                // Cannot happen: n is at most the burst.
                Err(_) => self.bytes_due = 0,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml: &str) -> Arc<DeviceLimits> {
        let c: MqttLimits = serde_yaml::from_str(yaml).expect("limits");
        Arc::new(DeviceLimits::new(&c))
    }

    // Real time (governor's clock is not tokio's), with rates high enough
    // to keep the tests short; only lower bounds are asserted.
    #[tokio::test]
    async fn a_device_over_its_publish_rate_waits_and_others_do_not() {
        let l = limits("publish_rate: 50\npublish_burst: 2");
        let mut a = Throttle::new(l.clone(), "a".into(), ThrottleCounters::default());
        let mut b = Throttle::new(l.clone(), "b".into(), ThrottleCounters::default());
        let started = tokio::time::Instant::now();
        for _ in 0..12 {
            a.charge(1, 10);
            std::future::poll_fn(|cx| a.poll_ready(cx))
                .await
                .expect("slowed, not closed");
        }
        // Two at once, then ten at 50 a second: at least 0.2 s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(180), "{took:?}");
        b.charge(1, 10);
        let waker = futures_noop();
        assert!(b.poll_ready(&mut Context::from_waker(&waker)).is_ready());
        assert!(a.counters.throttled.get() >= 1);
    }

    #[tokio::test]
    async fn staying_over_the_rate_closes_after_disconnect_after() {
        let l = limits("publish_rate: 20\npublish_burst: 1\ndisconnect_after: 300ms");
        let mut a = Throttle::new(l, "a".into(), ThrottleCounters::default());
        let mut closed = false;
        for _ in 0..100 {
            a.charge(1, 0);
            if std::future::poll_fn(|cx| a.poll_ready(cx)).await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(closed);
    }

    #[tokio::test]
    async fn bytes_over_the_rate_wait_in_chunks_of_the_burst() {
        let l = limits("bytes_rate: 100000\nbytes_burst: 65536");
        let mut a = Throttle::new(l, "a".into(), ThrottleCounters::default());
        let started = tokio::time::Instant::now();
        // 65536 at once, then 34464 more at 100000 a second.
        a.charge(0, 100_000);
        std::future::poll_fn(|cx| a.poll_ready(cx))
            .await
            .expect("slowed");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn new_connections_a_minute_are_capped_per_device() {
        let l = limits("connections_per_minute: 3");
        assert!((0..3).all(|_| l.admit_connection("a")));
        assert!(!l.admit_connection("a"));
        assert!(l.admit_connection("b"));
    }

    fn futures_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
