//! What a proxy spends, read from `/proc`: CPU time (utime + stime of
//! `/proc/PID/stat`, which include the proxy's exited threads, and stime
//! alone) and resident memory (`VmRSS` of `/proc/PID/status`), summed over
//! the process and all its descendants (nginx's master and workers, for
//! example), and the open file descriptors of one process (`/proc/PID/fd`).

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::sync::OnceLock;

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User plus system CPU seconds since each process started.
    pub cpu_s: f64,
    /// Of `cpu_s`, the system (kernel) seconds: system calls and, over
    /// loopback, the TCP work of the packets the proxy sends.
    pub sys_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// How many processes were summed.
    pub procs: usize,
}

/// Clock ticks per second of `/proc/PID/stat` (asked of `getconf`).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields after the command name of `/proc/PID/stat` (the name may hold
/// spaces and parentheses, so split after the last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `pid` and every process descending from it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(f) = stat_fields(p) {
                if let Some(ppid) = f.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    children.entry(ppid).or_default().push(p);
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

/// User plus system, and system alone, CPU seconds of `pid`.
fn cpu_s(pid: u32) -> Option<(f64, f64)> {
    let f = stat_fields(pid)?;
    // Fields 14 and 15 of stat; index 0 here is field 3 (state).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(((utime + stime) as f64 / clk_tck(), stime as f64 / clk_tck()))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads CPU and RSS of `pid` and its descendants.
pub fn sample(pid: u32) -> Sample {
    let mut s = Sample::default();
    for p in tree(pid) {
        if let Some((c, sys)) = cpu_s(p) {
            s.cpu_s += c;
            s.sys_s += sys;
            s.rss_kib += rss_kib(p).unwrap_or(0);
            s.procs += 1;
        }
    }
    s
}

/// Reads CPU and RSS of `pid` alone (no descendants, no scan of `/proc`);
/// `None` once it has exited.
pub fn sample_one(pid: u32) -> Option<Sample> {
    let (cpu_s, sys_s) = cpu_s(pid)?;
    Some(Sample {
        cpu_s,
        sys_s,
        rss_kib: rss_kib(pid)?,
        procs: 1,
    })
}

/// CPU seconds the whole machine has spent busy (all cores; `/proc/stat`,
/// everything but idle and iowait), to tell how much of it went elsewhere.
pub fn system_busy_s() -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle) as f64 / clk_tck())
}

/// Open file descriptors of `pid` (the entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_own_descriptors() {
        let me = std::process::id();
        assert!(fd_count(me).unwrap() >= 3);
        assert!(sample_one(me).unwrap().rss_kib > 0);
        assert!(system_busy_s().unwrap() > 0.0);
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id());
        assert!(s.procs >= 1);
        assert!(s.rss_kib > 0);
    }
}
