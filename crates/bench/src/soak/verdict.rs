//! Figures over windows of the run, and the verdicts.

use crate::soak::plan::{ProbeRec, Row, SoakRun};
use crate::soak::util::quantile;

/// Probe latency over one window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) name: &'static str,
    pub(crate) from: f64,
    pub(crate) to: f64,
    pub(crate) n: usize,
    pub(crate) failures: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) hs_p50: f64,
    pub(crate) hs_p99: f64,
}

pub(crate) fn window(run: &SoakRun, name: &'static str, from: f64, to: f64) -> Window {
    let inside: Vec<&ProbeRec> = run
        .probes
        .iter()
        .filter(|p| p.0 >= from && p.0 < to)
        .collect();
    let mut total: Vec<f64> = inside.iter().filter(|p| p.2).map(|p| p.4).collect();
    let mut hs: Vec<f64> = inside.iter().filter(|p| p.2).map(|p| p.3).collect();
    total.sort_by(f64::total_cmp);
    hs.sort_by(f64::total_cmp);
    Window {
        name,
        from,
        to,
        n: inside.len(),
        failures: inside.iter().filter(|p| !p.2).count(),
        p50: quantile(&total, 0.5),
        p99: quantile(&total, 0.99),
        max: total.last().copied().unwrap_or(f64::NAN),
        hs_p50: quantile(&hs, 0.5),
        hs_p99: quantile(&hs, 0.99),
    }
}

/// When the soak is steady again after the broker restart (every client
/// back), or its start when there was no restart.
pub(crate) fn settled(run: &SoakRun) -> f64 {
    run.restart
        .as_ref()
        .map_or(run.soak.0, |r| r.all_back.unwrap_or(r.t_up + 10.0))
}

pub(crate) fn windows(run: &SoakRun) -> Vec<Window> {
    let mut out = Vec::new();
    let (s0, s1) = run.soak;
    if let Some(r) = &run.restart {
        out.push(window(run, "steady, before the restart", s0, r.t_stop));
    }
    if let Some((fs, fe)) = run.flood_window {
        let f = run.plan.flood_s;
        let from = (fs - f).max(settled(run)).min(fs);
        out.push(window(run, "before the flood", from, fs));
        out.push(window(run, "during the flood", fs, fe));
        out.push(window(run, "after the flood", fe, (fe + f).min(s1)));
    }
    out
}

/// The row nearest to `t`.
pub(crate) fn row_at(run: &SoakRun, t: f64) -> Option<&Row> {
    run.rows
        .iter()
        .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
}

/// One replica's memory, descriptor and CPU figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplicaFig {
    pub(crate) baseline_mib: f64,
    pub(crate) ramp_mib: f64,
    pub(crate) peak_mib: f64,
    pub(crate) final_mib: f64,
    pub(crate) kib_per_conn: f64,
    pub(crate) fds_ramp: usize,
    pub(crate) fds_peak: usize,
    pub(crate) fds_final: usize,
    pub(crate) cpu_pct: f64,
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(crate) fn replica_figs(run: &SoakRun) -> Vec<ReplicaFig> {
    let (s0, s1) = run.soak;
    let (Some(a), Some(b)) = (row_at(run, s0), row_at(run, s1)) else {
        return Vec::new();
    };
    let held: Vec<&Row> = run.rows.iter().filter(|r| r.t <= s1 + 0.5).collect();
    (0..run.plan.replicas)
        .map(|i| {
            let get = |r: &Row| r.moat_rss_kib.get(i).copied().unwrap_or(0);
            let fds = |r: &Row| r.moat_fds.get(i).copied().unwrap_or(0);
            let cpu = |r: &Row| r.moat_cpu_s.get(i).copied().unwrap_or(0.0);
            let base = run.baseline_rss_kib.get(i).copied().unwrap_or(0);
            let conns = run.plan.per_replica + run.plan.subscribers.div_ceil(run.plan.replicas);
            ReplicaFig {
                baseline_mib: mib(base),
                ramp_mib: mib(get(a)),
                peak_mib: mib(held.iter().map(|r| get(r)).max().unwrap_or(0)),
                final_mib: mib(get(b)),
                kib_per_conn: get(a).saturating_sub(base) as f64 / conns.max(1) as f64,
                fds_ramp: fds(a),
                fds_peak: held.iter().map(|r| fds(r)).max().unwrap_or(0),
                fds_final: fds(b),
                cpu_pct: 100.0 * (cpu(b) - cpu(a)) / (b.t - a.t).max(1.0),
            }
        })
        .collect()
}

/// CPU of everything else on the machine during the soak, in cores.
pub(crate) fn other_load(run: &SoakRun) -> Option<(f64, f64)> {
    let (a, b) = (row_at(run, run.soak.0)?, row_at(run, run.soak.1)?);
    let dt = (b.t - a.t).max(1.0);
    let ours = (b.ours_cpu_s - a.ours_cpu_s) / dt;
    let all = (b.sys_busy_s - a.sys_busy_s) / dt;
    Some((ours, (all - ours).max(0.0)))
}

/// Descriptors of each replica just before the flood and 25 s after it (or
/// at the end of the soak, if sooner), and how long after the flood that is.
pub(crate) fn fd_around_flood(run: &SoakRun) -> Option<(Vec<(usize, usize)>, f64)> {
    let (fs, fe) = run.flood_window?;
    let before = run.rows.iter().rev().find(|r| r.t < fs)?;
    let held = || run.rows.iter().filter(|r| r.t <= run.soak.1 + 0.5);
    let after = held()
        .find(|r| r.t >= fe + 25.0)
        .or_else(|| held().next_back())?;
    let fds = before
        .moat_fds
        .iter()
        .zip(&after.moat_fds)
        .map(|(&a, &b)| (a, b))
        .collect();
    Some((fds, after.t - fe))
}

/// A criterion and its outcome.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) what: String,
    pub(crate) pass: bool,
    pub(crate) detail: String,
}

pub(crate) fn verdicts(run: &SoakRun) -> Vec<Verdict> {
    let mut v = Vec::new();
    let m = &run.messages;
    v.push(Verdict {
        what: "QoS 1: every acknowledged message received (difference 0)".into(),
        pass: m.difference == 0 && m.lost == 0 && m.unacked == 0 && m.sent > 0,
        detail: format!(
            "sent {} · received {} unique ({} duplicates) · difference {} · lost {} · never acknowledged {}",
            m.sent, m.unique, m.duplicates, m.difference, m.lost, m.unacked
        ),
    });
    let restart_total: u64 = run.restart_closes.values().sum();
    v.push(Verdict {
        what: "No dropped established connections except the broker restart's".into(),
        pass: run.unexplained.is_empty(),
        detail: format!(
            "{} closed by the restart · {} others",
            restart_total,
            run.unexplained.len()
        ),
    });
    let expected = (run.plan.duration_s / run.plan.reload_interval_s).floor() as usize;
    let good = run
        .reloads
        .iter()
        .filter(|r| {
            r.error.is_none()
                && !r.replicas.is_empty()
                && r.replicas
                    .iter()
                    .all(|l| l.success && l.serves_new && !l.failure)
        })
        .count();
    v.push(Verdict {
        what: "Every certificate renewal landed on every replica".into(),
        pass: good == run.reloads.len()
            && run.reloads.len() + 1 >= expected
            && !run.reloads.is_empty(),
        detail: format!(
            "{good} of {} renewals succeeded everywhere and were served by a fresh handshake",
            run.reloads.len()
        ),
    });
    v.push(Verdict {
        what: "moat never died, and exited cleanly at the end".into(),
        pass: run.moat_died.is_empty()
            && run.aborted.is_none()
            && run.moat_exit.iter().all(|e| e.contains("exit status: 0")),
        detail: if run.moat_died.is_empty() {
            format!("exits: {}", run.moat_exit.join(", "))
        } else {
            run.moat_died.join("; ")
        },
    });
    v.push(Verdict {
        what:
            "Every device and subscriber connected at the end (all reconnected after the restart)"
                .into(),
        pass: run.devices_at_end == run.plan.connections
            && run.subscribers_at_end == run.plan.subscribers,
        detail: format!(
            "{} of {} devices, {} of {} subscribers",
            run.devices_at_end, run.plan.connections, run.subscribers_at_end, run.plan.subscribers
        ),
    });
    let ws = windows(run);
    if let Some(d) = ws.iter().find(|w| w.name == "during the flood") {
        v.push(Verdict {
            what: format!(
                "Well-behaved handshakes during the flood: p99 within {:.0} ms, none failed",
                run.plan.handshake_bound_ms
            ),
            pass: d.n > 0 && d.failures == 0 && d.p99 <= run.plan.handshake_bound_ms,
            detail: format!(
                "{} probes, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                d.n, d.failures, d.p50, d.p99, d.max
            ),
        });
    } else {
        v.push(Verdict {
            what: "Well-behaved handshakes during the flood".into(),
            pass: false,
            detail: "the flood did not run".into(),
        });
    }
    if let Some((f, after)) = fd_around_flood(run) {
        let ok = f.iter().all(|&(a, b)| b as f64 <= a as f64 * 1.02 + 50.0);
        v.push(Verdict {
            what: "Descriptors back to their level once the flood is over".into(),
            pass: ok,
            detail: f
                .iter()
                .enumerate()
                .map(|(i, (a, b))| format!("moat #{i}: {a} before, {b} {after:.0} s after"))
                .collect::<Vec<_>>()
                .join(" · "),
        });
    }
    v
}
