//! The `soak` command's options and their duration syntax.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

/// Options of `soak`.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// How long the connections are held once all are up (ramp and drain
    /// come on top): `10m`, `120s`, `1h`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Device connections held through moat (split evenly over the
    /// replicas and over worker processes).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// moat replicas in front of the one Mosquitto.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Each device publishes one QoS 1 message this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub publish_interval: Duration,
    /// Subscriber connections (through moat), each on its share of the topics.
    #[arg(long, default_value_t = 4)]
    pub subscribers: usize,
    /// A new server certificate is swapped in this often.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// How long the broker stays down during the restart.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub broker_down: Duration,
    /// Length of the flood (default: 7.5 % of --duration, within 15 s..60 s).
    #[arg(long, value_parser = parse_duration)]
    pub flood: Option<Duration>,
    /// Half-open connections held during the flood (they send nothing).
    #[arg(long, default_value_t = 5000)]
    pub half_open: usize,
    /// New garbage connections per second during the flood.
    #[arg(long, default_value_t = 300.0)]
    pub garbage_rate: f64,
    /// Slowloris clients during the flood (a ClientHello, one byte a second).
    #[arg(long, default_value_t = 10)]
    pub slowloris: usize,
    /// The "small bound": the probe's p99 (TCP + TLS + CONNECT/CONNACK)
    /// during the flood may be at most this many milliseconds.
    #[arg(long, default_value_t = 250.0)]
    pub handshake_bound_ms: f64,
    /// Devices per worker process.
    #[arg(long, default_value_t = 2500)]
    pub per_worker: usize,
    /// The moat binary. Default: $MOAT_BIN, else `moat` next to this binary.
    #[arg(long)]
    pub moat_bin: Option<PathBuf>,
    /// The report to write (its generated section is replaced); charts and
    /// raw data go to the directory of the same name without `.md`.
    /// Default: docs/reliability.md for a full-size run (at least 10,000
    /// connections for at least 10 minutes), otherwise `report.md` in the
    /// scratch directory, which is kept and named at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave docs/reliability.md alone even for a full-size run (the report
    /// goes to the scratch directory).
    #[arg(long)]
    pub no_write: bool,
    /// Write the report again from a saved `soak.json`, without running.
    #[arg(long)]
    pub report_from: Option<PathBuf>,
}

/// Parses `90s`, `10m`, `1h`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10m, 90s)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}
