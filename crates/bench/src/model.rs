//! The data every part of `compare` shares, and nothing above it: the
//! plan of one invocation, the measured records and problems, the saved
//! `results.json` (with how it was measured), plus where the workspace is
//! and what time it is. `compare` fills these, `report` and `charts` read
//! them, and `soak` borrows the last two.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proxies::Kind;
use crate::scenarios::SmallPlan;

/// Counts and durations of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Repetitions.
    pub runs: usize,
    /// Smoke mode.
    pub smoke: bool,
    /// Full handshakes per measurement.
    pub full: usize,
    /// Resumed handshakes per measurement.
    pub resumed: usize,
    /// Concurrent handshaking clients.
    pub concurrency: usize,
    /// Idle connection levels.
    pub idle_levels: Vec<usize>,
    /// Wait before reading RSS of idle connections, seconds.
    pub idle_settle_s: f64,
    /// Bytes echoed in the bulk scenario.
    pub bulk_bytes: u64,
    /// Connections of the bulk scenario.
    pub bulk_conns: usize,
    /// Messages per second of the small-message scenario.
    pub small_rate: f64,
    /// Connections of the small-message scenario.
    pub small_conns: usize,
    /// Seconds of the small-message scenario.
    pub small_secs: f64,
    /// Bytes per small message.
    pub small_size: usize,
    /// Devices in the reconnect storm.
    pub storm_devices: usize,
    /// Connections one proxy process can hold under the open-file limit.
    pub max_conns: usize,
    /// The open-file limit.
    pub nofile: u64,
    /// Levels lowered to fit the open-file limit: (asked, used).
    pub capped: Vec<(usize, usize)>,
}

impl Plan {
    /// The small-message scenario's part of the plan.
    pub fn small(&self) -> SmallPlan {
        SmallPlan {
            rate: self.small_rate,
            conns: self.small_conns,
            secs: self.small_secs,
            size: self.small_size,
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Repetition, from 0.
    pub run: usize,
    /// Scenario name.
    pub scenario: String,
    /// Proxy name, or `direct` for the plaintext baseline.
    pub proxy: String,
    /// Metric key.
    pub metric: String,
    /// Its value.
    pub value: f64,
}

/// Something wrong in one measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    /// Repetition, from 0.
    pub run: usize,
    /// Scenario name.
    pub scenario: String,
    /// Proxy name.
    pub proxy: String,
    /// What went wrong.
    pub text: String,
}

/// Everything measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// The values.
    pub records: Vec<Record>,
    /// What went wrong.
    pub problems: Vec<Problem>,
}

/// How a measurement was made; saved with the raw data so that the report
/// can be written again later (`moat-bench report`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The command, as typed.
    pub command: String,
    /// When it was measured.
    pub measured_at: String,
    /// How long measuring took, seconds.
    pub elapsed_s: f64,
    /// The proxies measured.
    pub kinds: Vec<Kind>,
    /// The scenarios run.
    pub scenarios: Vec<String>,
    /// The moat binary.
    pub moat_bin: PathBuf,
    /// The machine and versions, described when measuring started.
    #[serde(default)]
    pub machine: Vec<(String, String)>,
}

/// The whole of `results.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    /// How it was measured.
    pub meta: Meta,
    /// Counts and durations.
    pub plan: Plan,
    /// Every value and problem.
    pub results: Results,
}

/// The workspace root (for the default report path and building moat).
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The current time, UTC, to the minute.
pub fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
