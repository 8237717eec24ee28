//! The plan (phases and timeline constants) and the recorded run that
//! the report is written from.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::soak::args::SoakArgs;
use crate::soak::protocol::FloodStats;

/// Open files kept free in each process besides its connections.
pub(crate) const FD_RESERVE: u64 = 200;
/// Probes in flight at once, at most.
pub(crate) const PROBES_IN_FLIGHT: usize = 50;
/// Garbage connections open at once, at most.
pub(crate) const GARBAGE_CONCURRENCY: usize = 200;
/// Closes this long after the broker is back still count as the restart's.
pub(crate) const RESTART_GRACE_S: f64 = 30.0;

/// Counts and times of one soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Device connections.
    pub connections: usize,
    /// moat replicas.
    pub replicas: usize,
    /// Devices per replica (at most).
    pub per_replica: usize,
    /// Device worker processes.
    pub workers: usize,
    /// Devices per worker process (at most).
    pub per_worker: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Seconds of the soak once every connection is up.
    pub duration_s: f64,
    /// Seconds between two publishes of one device.
    pub publish_interval_s: f64,
    /// Seconds between two certificate renewals.
    pub reload_interval_s: f64,
    /// Broker restart, seconds after the soak starts.
    pub restart_at_s: f64,
    /// Seconds the broker stays down.
    pub broker_down_s: f64,
    /// Flood start, seconds after the soak starts.
    pub flood_at_s: f64,
    /// Flood length, seconds.
    pub flood_s: f64,
    /// Half-open connections during the flood.
    pub half_open: usize,
    /// Garbage connections per second during the flood.
    pub garbage_rate: f64,
    /// Slowloris clients during the flood.
    pub slowloris: usize,
    /// The probe's p99 bound during the flood, ms.
    pub handshake_bound_ms: f64,
    /// moat's `max_connections` per replica.
    pub max_connections: usize,
    /// The open-file limit of every process.
    pub nofile: u64,
    /// MQTT keep-alive of devices and subscribers, seconds.
    pub keep_alive: u16,
}

impl Plan {
    pub(crate) fn new(a: &SoakArgs, nofile: u64) -> Result<Self> {
        let d = a.duration.as_secs_f64();
        if d < 10.0 {
            bail!("--duration must be at least 10 s (the timeline needs room for a restart and a flood)");
        }
        if a.connections == 0 || a.replicas == 0 || a.subscribers == 0 {
            bail!("--connections, --replicas and --subscribers must be positive");
        }
        if a.per_worker == 0 || a.per_worker > crate::worker::PER_WORKER {
            bail!(
                "--per-worker must be between 1 and {}",
                crate::worker::PER_WORKER
            );
        }
        let r = a.replicas;
        let per_replica = a.connections.div_ceil(r);
        let flood_s = a
            .flood
            .map_or((d * 0.075).clamp(15.0, 60.0), |f| f.as_secs_f64());
        let max_connections = (nofile / 2).saturating_sub(FD_RESERVE) as usize;
        // Everything one replica may hold at once: devices and subscribers
        // (two descriptors each), probes, and its share of the flood (one).
        let relayed = per_replica + a.subscribers.div_ceil(r) + PROBES_IN_FLIGHT;
        let flood = a.half_open.div_ceil(r) + GARBAGE_CONCURRENCY.div_ceil(r) + a.slowloris;
        let fds = 2 * relayed + flood;
        if fds as u64 + FD_RESERVE > nofile || relayed + flood > max_connections {
            bail!(
                "{per_replica} devices per replica plus the flood need about {fds} descriptors in one moat process, over the open-file limit of {nofile}: use more --replicas"
            );
        }
        if (a.connections + a.subscribers + PROBES_IN_FLIGHT) as u64 + FD_RESERVE > nofile {
            bail!(
                "Mosquitto cannot hold {} connections under the open-file limit of {nofile}",
                a.connections
            );
        }
        let interval = a.publish_interval.as_secs_f64().max(0.1);
        Ok(Self {
            connections: a.connections,
            replicas: r,
            per_replica,
            workers: a.connections.div_ceil(a.per_worker),
            per_worker: a.per_worker,
            subscribers: a.subscribers,
            duration_s: d,
            publish_interval_s: interval,
            reload_interval_s: a.reload_interval.as_secs_f64().max(1.0),
            restart_at_s: (d * 0.3).round(),
            broker_down_s: a.broker_down.as_secs_f64(),
            flood_at_s: (d * 0.5).round(),
            flood_s,
            half_open: a.half_open,
            garbage_rate: a.garbage_rate,
            slowloris: a.slowloris,
            handshake_bound_ms: a.handshake_bound_ms,
            max_connections,
            nofile,
            keep_alive: (interval * 2.0).clamp(60.0, 600.0) as u16,
        })
    }

    /// Whether this is the full-size run whose figures go into the docs.
    pub(crate) fn full_size(&self) -> bool {
        self.connections >= 10_000 && self.duration_s >= 600.0
    }
}

/// One second of samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    /// Seconds since the start.
    pub t: f64,
    /// RSS of each moat, KiB.
    pub moat_rss_kib: Vec<u64>,
    /// Open descriptors of each moat.
    pub moat_fds: Vec<usize>,
    /// CPU seconds of each moat so far.
    pub moat_cpu_s: Vec<f64>,
    /// Mosquitto's RSS, KiB (none while it is down).
    pub mosq_rss_kib: Option<u64>,
    /// Mosquitto's open descriptors.
    pub mosq_fds: Option<usize>,
    /// Device sessions established.
    pub devices: usize,
    /// Subscriber sessions established.
    pub subscribers: usize,
    /// Messages published so far.
    pub published: u64,
    /// ... acknowledged.
    pub acked: u64,
    /// ... received by the subscribers (unique).
    pub unique: u64,
    /// Half-open flood connections open.
    pub half_open: usize,
    /// CPU seconds of the whole machine so far.
    pub sys_busy_s: f64,
    /// CPU seconds of the soak's own processes so far.
    pub ours_cpu_s: f64,
}

/// A moment of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRec {
    /// Seconds since the start.
    pub t: f64,
    /// `soak start`, `reload`, `broker stop`, `broker up`, `flood start`, ...
    pub kind: String,
    /// Details.
    pub detail: String,
}

/// How one replica took one renewal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Landing {
    /// `moat_certificate_reloads_total{result="success"}` went up.
    pub success: bool,
    /// `...{result="failure"}` went up.
    pub failure: bool,
    /// From the rename to the metric, ms.
    pub landed_ms: Option<f64>,
    /// A fresh handshake got the new certificate.
    pub serves_new: bool,
}

/// One certificate renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadRec {
    /// Seconds since the start.
    pub t: f64,
    /// The new certificate's serial.
    pub serial: u64,
    /// Per replica.
    pub replicas: Vec<Landing>,
    /// Why it could not be done, if so.
    pub error: Option<String>,
}

/// The broker restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartRec {
    /// SIGTERM sent.
    pub t_stop: f64,
    /// Mosquitto exited.
    pub t_down: f64,
    /// Mosquitto listens again.
    pub t_up: f64,
    /// Its exit status.
    pub exit: String,
    /// It had to be killed.
    pub killed: bool,
    /// Every device and subscriber was connected again.
    pub all_back: Option<f64>,
}

/// One probe: TCP + TLS + CONNECT/CONNACK, as `[t, replica, ok, handshake
/// ms, total ms]`.
pub type ProbeRec = (f64, u8, bool, f64, f64);

/// A dropped established connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dropped {
    /// Seconds since the start.
    pub t: f64,
    /// `d123` or `s2`.
    pub who: String,
    /// How it ended.
    pub kind: String,
    /// How long it had been up, seconds.
    pub held_s: f64,
}

/// Message accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Messages {
    /// Published for the first time.
    pub published: u64,
    /// Acknowledged by the broker: "sent".
    pub sent: u64,
    /// Never acknowledged, even after the wait at the end.
    pub unacked: u64,
    /// PUBLISH frames received by the subscribers.
    pub received: u64,
    /// Unique (device, sequence) pairs received.
    pub unique: u64,
    /// Received again.
    pub duplicates: u64,
    /// Not ours.
    pub malformed: u64,
    /// Sent minus unique.
    pub difference: i64,
    /// Acknowledged but never received.
    pub lost: u64,
    /// Received but never published or acknowledged.
    pub unexpected: u64,
    /// PUBLISH frames sent again (DUP) after a reconnection.
    pub retransmits: u64,
    /// Seconds the subscribers needed to catch up at the end.
    pub drain_s: f64,
}

/// Everything one soak recorded; saved as `soak.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakRun {
    /// The plan.
    pub plan: Plan,
    /// The command.
    pub command: String,
    /// When.
    pub measured_at: String,
    /// The machine.
    pub machine: Vec<(String, String)>,
    /// Uncommitted changes in crates/proxy when the run started.
    pub proxy_changes: String,
    /// Seconds the whole run took.
    pub elapsed_s: f64,
    /// Seconds until every connection was up.
    pub ramp_s: f64,
    /// Start and end of the soak proper, seconds since the start.
    pub soak: (f64, f64),
    /// Each moat's RSS before any client, KiB.
    pub baseline_rss_kib: Vec<u64>,
    /// The samples.
    pub rows: Vec<Row>,
    /// The timeline.
    pub events: Vec<EventRec>,
    /// The renewals.
    pub reloads: Vec<ReloadRec>,
    /// The restart.
    pub restart: Option<RestartRec>,
    /// The flood: start and end.
    pub flood_window: Option<(f64, f64)>,
    /// What the flood did.
    pub flood: Option<FloodStats>,
    /// The probes.
    pub probes: Vec<ProbeRec>,
    /// Closes attributed to the restart, by kind.
    pub restart_closes: BTreeMap<String, u64>,
    /// The window they were counted in.
    pub restart_window: Option<(f64, f64)>,
    /// Every other close.
    pub unexplained: Vec<Dropped>,
    /// Message accounting.
    pub messages: Messages,
    /// Devices connected at the end of the soak.
    pub devices_at_end: usize,
    /// Subscribers connected at the end of the soak.
    pub subscribers_at_end: usize,
    /// Sessions established (first ones included).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// A few of their errors.
    pub connect_errors: Vec<String>,
    /// Selected metrics of each replica at the end.
    pub moat_metrics: Vec<BTreeMap<String, f64>>,
    /// How each moat ended.
    pub moat_exit: Vec<String>,
    /// moat processes that died during the run.
    pub moat_died: Vec<String>,
    /// Each moat's log: lines by level and message.
    pub moat_log: Vec<Vec<(String, u64)>>,
    /// Mosquitto's telling log lines.
    pub mosquitto_log: Vec<String>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}
