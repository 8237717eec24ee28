//! The computed report: medians over runs, moat/peer ratios (computed
//! within each run, then the median taken), the targets and their
//! verdicts, and the plain-text summary for the terminal.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::model::{Plan, Record, Results};
use crate::proxies::Kind;

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Metric key.
    pub key: String,
    /// What it is.
    pub label: String,
    /// Unit.
    pub unit: &'static str,
}

/// A target the user set for moat.
#[derive(Debug, Clone)]
pub struct Target {
    /// As stated.
    pub text: String,
    /// Metric key.
    pub metric: String,
    /// The peer the ratio is taken against.
    pub peer: Kind,
    /// The peer's metric: `metric`, except for a target against another of
    /// moat's own figures (WSS against TLS).
    pub peer_metric: String,
    /// Largest acceptable moat/peer ratio.
    pub max_ratio: f64,
    /// Largest acceptable absolute value for moat, if any.
    pub abs_max: Option<f64>,
}

/// The computed report.
pub struct Report<'a> {
    pub(super) plan: &'a Plan,
    pub(super) results: &'a Results,
    pub(super) kinds: Vec<Kind>,
    pub(super) scenarios: Vec<&'static str>,
    pub(super) moat_bin: PathBuf,
    pub(super) records: Vec<Record>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A number with as many decimals as its size deserves.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn level_label(l: usize) -> String {
    if l >= 1000 && l % 100 == 0 {
        let k = l as f64 / 1000.0;
        if l % 1000 == 0 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else {
        l.to_string()
    }
}

impl<'a> Report<'a> {
    /// Computes derived values (latency added over the direct baseline).
    pub fn new(
        results: &'a Results,
        plan: &'a Plan,
        kinds: &[Kind],
        scenarios: &[&'static str],
        moat_bin: &Path,
    ) -> Self {
        let mut records = results.records.clone();
        for r in &results.records {
            if r.proxy == "direct" || !r.metric.starts_with("rtt_p") {
                continue;
            }
            if let Some(d) = results
                .records
                .iter()
                .find(|d| d.proxy == "direct" && d.run == r.run && d.metric == r.metric)
            {
                records.push(Record {
                    metric: r.metric.replace("rtt_", "rtt_added_"),
                    value: r.value - d.value,
                    ..r.clone()
                });
            }
        }
        Self {
            plan,
            results,
            kinds: kinds.to_vec(),
            scenarios: scenarios.to_vec(),
            moat_bin: moat_bin.to_path_buf(),
            records,
        }
    }

    /// The rows to show, in order.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut row = |key: String, label: String, unit| rows.push(Row { key, label, unit });
        let rate = format!("{:.0}k msg/s", self.plan.small_rate / 1000.0);
        for s in &self.scenarios {
            match *s {
                "full" => {
                    row(
                        "full_hs_us".into(),
                        "Full TLS 1.3 handshake: proxy CPU per handshake".into(),
                        "µs",
                    );
                    row(
                        "full_hs_sys_us".into(),
                        "… of which in the kernel (system time)".into(),
                        "µs",
                    );
                }
                "resumed" => {
                    row(
                        "resumed_hs_us".into(),
                        "Resumed handshake (ticket): proxy CPU per handshake".into(),
                        "µs",
                    );
                    row(
                        "resumed_hs_sys_us".into(),
                        "… of which in the kernel (system time)".into(),
                        "µs",
                    );
                    row("resumed_pct".into(), "Handshakes that resumed".into(), "%");
                }
                "idle" => {
                    for &l in &self.plan.idle_levels {
                        row(
                            format!("idle_kib_{l}"),
                            format!(
                                "Idle TLS connection: proxy RSS per connection at {}",
                                level_label(l)
                            ),
                            "KiB",
                        );
                    }
                }
                "idle_wss" => {
                    for &l in &self.plan.idle_levels {
                        row(
                            format!("idle_wss_kib_{l}"),
                            format!(
                                "Idle WSS connection: proxy RSS per connection at {}",
                                level_label(l)
                            ),
                            "KiB",
                        );
                    }
                }
                "bulk" => row(
                    "bulk_s_per_gib".into(),
                    "Bulk echo: proxy CPU per GiB echoed".into(),
                    "s",
                ),
                "small" => {
                    for (q, name) in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")] {
                        row(
                            format!("rtt_{q}_us"),
                            format!(
                                "{}-byte messages at {rate}: round trip {name}",
                                self.plan.small_size
                            ),
                            "µs",
                        );
                    }
                    for (q, name) in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")] {
                        row(
                            format!("rtt_added_{q}_us"),
                            format!("… added over direct plaintext, {name}"),
                            "µs",
                        );
                    }
                    row(
                        "small_cpu_ms_per_1000".into(),
                        format!(
                            "{}-byte messages: proxy CPU per 1000 messages",
                            self.plan.small_size
                        ),
                        "ms",
                    );
                }
                "storm" | "storm_cluster" => {
                    for r in self.storm_rows(s) {
                        row(r.key, r.label, r.unit);
                    }
                }
                _ => {}
            }
        }
        rows
    }

    /// The rows of the two storm scenarios.
    fn storm_rows(&self, scenario: &str) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut row = |key: String, label: String, unit| rows.push(Row { key, label, unit });
        match scenario {
            "storm" => {
                let n = level_label(self.plan.storm_devices);
                row(
                    "storm_s".into(),
                    format!("Reconnect storm, {n} devices: time until every CONNACK"),
                    "s",
                );
                row(
                    "storm_cpu_s".into(),
                    format!("Reconnect storm, {n} devices: proxy CPU"),
                    "s",
                );
                row(
                    "storm_cpu_us_per_device".into(),
                    "Reconnect storm: proxy CPU per device".into(),
                    "µs",
                );
            }
            "storm_cluster" => {
                let n = level_label(self.plan.storm_devices);
                for (key, how) in [
                    ("storm_cluster", "balance source"),
                    (
                        "storm_cluster_cid",
                        "moat balance client_id (ratios to the peer's source)",
                    ),
                ] {
                    let head = format!("{how}, storm over 3 brokers of {n} devices");
                    row(
                        format!("{key}_s"),
                        format!("{head}: time until every CONNACK"),
                        "s",
                    );
                    row(format!("{key}_cpu_s"), "… proxy CPU".into(), "s");
                    row(
                        format!("{key}_cpu_us_per_device"),
                        "… proxy CPU per device".into(),
                        "µs",
                    );
                    row(
                        format!("{key}_busiest_pct"),
                        "… devices on the busiest broker".into(),
                        "%",
                    );
                }
            }
            _ => {}
        }
        rows
    }

    /// Columns: the proxies measured, and `direct` when it was.
    pub(super) fn columns(&self) -> Vec<String> {
        let mut c: Vec<String> = self.kinds.iter().map(|k| k.name().to_string()).collect();
        if self.records.iter().any(|r| r.proxy == "direct") {
            c.push("direct".into());
        }
        c
    }

    fn values(&self, proxy: &str, metric: &str) -> Vec<(usize, f64)> {
        self.records
            .iter()
            .filter(|r| r.proxy == proxy && r.metric == metric)
            .map(|r| (r.run, r.value))
            .collect()
    }

    /// Median over runs.
    pub fn median(&self, proxy: &str, metric: &str) -> Option<f64> {
        median(
            self.values(proxy, metric)
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        )
    }

    /// Median, minimum and maximum over runs.
    pub fn spread(&self, proxy: &str, metric: &str) -> Option<(f64, f64, f64)> {
        let v: Vec<f64> = self
            .values(proxy, metric)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let m = median(v.clone())?;
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((m, lo, hi))
    }

    /// moat/peer within each run, and the median of those ratios. moat's
    /// `balance: client_id` storm figures are taken against the peer's
    /// `balance source` ones (the peers are not measured with client_id).
    pub fn ratio(&self, metric: &str, peer: &str) -> Option<(f64, Vec<f64>)> {
        let peer_metric = metric.replace("storm_cluster_cid_", "storm_cluster_");
        self.ratio_to(metric, peer, &peer_metric)
    }

    /// moat's `metric` over the peer's `peer_metric` within each run, and
    /// the median of those ratios.
    pub fn ratio_to(&self, metric: &str, peer: &str, peer_metric: &str) -> Option<(f64, Vec<f64>)> {
        let moat = self.values("moat", metric);
        let peer = self.values(peer, peer_metric);
        let per_run: Vec<f64> = moat
            .iter()
            .filter_map(|(run, m)| {
                peer.iter()
                    .find(|(r, _)| r == run)
                    .filter(|(_, p)| *p != 0.0)
                    .map(|(_, p)| m / p)
            })
            .collect();
        Some((median(per_run.clone())?, per_run))
    }

    /// The targets that apply to what was measured.
    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let mut add = |text: String, metric: String, peer, max_ratio, abs_max| {
            t.push(Target {
                text,
                peer_metric: metric.clone(),
                metric,
                peer,
                max_ratio,
                abs_max,
            })
        };
        add(
            "Proxy CPU per full handshake ≤ 0.45× nginx".into(),
            "full_hs_us".into(),
            Kind::Nginx,
            0.45,
            None,
        );
        let near_5k = self
            .plan
            .idle_levels
            .iter()
            .copied()
            .min_by_key(|l| l.abs_diff(5000));
        if let Some(l) = near_5k {
            add(
                format!(
                    "RSS per idle TLS connection at {} ≤ 8 KiB and under half of HAProxy's",
                    level_label(l)
                ),
                format!("idle_kib_{l}"),
                Kind::Haproxy,
                0.5,
                Some(8.0),
            );
        }
        add(
            "Proxy CPU per GiB ≤ 0.9× HAProxy".into(),
            "bulk_s_per_gib".into(),
            Kind::Haproxy,
            0.9,
            None,
        );
        add(
            format!(
                "Round-trip p99 at {:.0}k msg/s ≤ HAProxy's",
                self.plan.small_rate / 1000.0
            ),
            "rtt_p99_us".into(),
            Kind::Haproxy,
            1.0,
            None,
        );
        add(
            "Proxy CPU per 1000 small messages ≤ 0.9× nginx".into(),
            "small_cpu_ms_per_1000".into(),
            Kind::Nginx,
            0.9,
            None,
        );
        if let Some(l) = near_5k {
            // Issue 16: an idle WSS connection holds no buffer, as the TCP
            // path does; against moat's own TLS figure of the same run.
            t.push(Target {
                text: format!(
                    "RSS per idle WSS connection at {0} ≤ 1.5× moat's idle TLS figure at {0}",
                    level_label(l)
                ),
                metric: format!("idle_wss_kib_{l}"),
                peer: Kind::Moat,
                peer_metric: format!("idle_kib_{l}"),
                max_ratio: 1.5,
                abs_max: None,
            });
        }
        t
    }

    /// The peer column of a target: the peer, or which of moat's figures.
    pub(super) fn peer_label(t: &Target) -> String {
        if t.peer_metric == t.metric {
            t.peer.name().to_string()
        } else {
            format!("{} (`{}`)", t.peer.name(), t.peer_metric)
        }
    }

    /// (moat median, peer median, ratio median, per-run ratios, verdict).
    pub(super) fn verdict(&self, t: &Target) -> (String, String, String, String, &'static str) {
        let m = self.median("moat", &t.metric);
        let p = self.median(t.peer.name(), &t.peer_metric);
        let r = self.ratio_to(&t.metric, t.peer.name(), &t.peer_metric);
        let show = |v: Option<f64>| v.map(fmt).unwrap_or_else(|| "–".into());
        let (ratio, runs, met) = match (&r, m) {
            (Some((med, runs)), Some(mv)) => {
                let abs_ok = t.abs_max.is_none_or(|a| mv <= a);
                let ok = *med <= t.max_ratio && abs_ok;
                let every = runs.iter().all(|x| *x <= t.max_ratio);
                let some = runs.iter().any(|x| *x <= t.max_ratio);
                let verdict = match (ok, every, some && abs_ok) {
                    (true, true, _) => "**met**",
                    (true, false, _) => "**met** (not in every run)",
                    (false, _, true) => "**not met** (met in some runs)",
                    (false, _, false) => "**not met**",
                };
                (
                    format!("{med:.2}×"),
                    runs.iter()
                        .map(|x| format!("{x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    verdict,
                )
            }
            _ => ("–".into(), String::new(), "not measured"),
        };
        (show(m), show(p), ratio, runs, met)
    }

    /// A plain-text summary for the terminal.
    pub fn summary(&self) -> String {
        let cols = self.columns();
        let mut s = String::new();
        let _ = write!(s, "\n{:<58}", "median");
        for c in &cols {
            let _ = write!(s, "{c:>10}");
        }
        s.push('\n');
        for row in self.rows() {
            let _ = write!(
                s,
                "{:<58}",
                format!("{} ({})", short(&row.label, 52), row.unit)
            );
            for c in &cols {
                let v = self
                    .median(c, &row.key)
                    .map(fmt)
                    .unwrap_or_else(|| "-".into());
                let _ = write!(s, "{v:>10}");
            }
            s.push('\n');
        }
        if !self.plan.smoke {
            s.push_str("\ntargets:\n");
            for t in self.targets() {
                let (m, p, ratio, _, met) = self.verdict(&t);
                if met == "not measured" {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "  {:<66} moat {m:>7} {:>8} {p:>7}  ratio {ratio:>6}  {}",
                    t.text,
                    Self::peer_label(&t).replace('`', ""),
                    met.replace("**", "")
                );
            }
        }
        if !self.results.problems.is_empty() {
            s.push_str("\nproblems:\n");
            for p in &self.results.problems {
                let _ = writeln!(
                    s,
                    "  run {} {} {}: {}",
                    p.run + 1,
                    p.scenario,
                    p.proxy,
                    p.text
                );
            }
        }
        s
    }

    /// Proxies and `direct`, for charts.
    pub fn series(&self) -> Vec<String> {
        self.columns()
    }

    /// Idle levels measured.
    pub fn idle_levels(&self) -> BTreeSet<usize> {
        self.plan.idle_levels.iter().copied().collect()
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        self.plan
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn labels() {
        assert_eq!(level_label(5000), "5k");
        assert_eq!(level_label(9900), "9.9k");
        assert_eq!(level_label(50), "50");
    }
}
