//! `soak`: the long-running reliability test (`scripts/soak`; issue 9,
//! item 8, and the "small bound" of item 1). This module owns all of it:
//!
//! - the orchestrator: a test PKI whose CA stays in memory, Mosquitto with
//!   persistence, two moat replicas, the client worker processes, the
//!   timeline (ramp, certificate renewals every 10 s, a broker restart, a
//!   flood of garbage, half-open and slowloris handshakes), a once-a-second
//!   `/proc` sampler, a handshake-latency probe, and the verdicts;
//! - the worker roles it starts as `moat-bench soak-worker --spec JSON`:
//!   *devices* (persistent MQTT sessions publishing QoS 1 and retransmitting
//!   what was not acknowledged), *subscribers* (counting unique
//!   (publisher, sequence) pairs) and the *flood*;
//! - the report: a summary on stdout, raw data and charts under
//!   `docs/reliability/`, and the generated section of
//!   `docs/reliability.md`.
//!
//! Every wait has a deadline, every loop ends with the phase it belongs to,
//! and every child process is killed when its handle is dropped (on an
//! error, on Ctrl-C or SIGTERM too).
//!
//! This file holds the entry points only: `main` (the `soak` command and
//! its `--report-from` rerender) and `worker_main` (a worker process, from
//! `roles`). The parts, each depending only on those below it: `args`,
//! `util`, `protocol` (orchestrator <-> worker), `roles`, `pki`,
//! `children`, `metrics`, `plan` (with the recorded run), `tasks` (clock,
//! sampler, probes, renewals, broker restart), `accounting` (messages and
//! dropped connections at the end), `run`, `verdict`, `report`.

mod accounting;
mod args;
mod children;
mod metrics;
mod pki;
mod plan;
mod protocol;
mod report;
mod roles;
mod run;
mod tasks;
#[cfg(test)]
mod tests;
mod util;
mod verdict;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::soak::plan::{Plan, SoakRun};
use crate::soak::report::{secs, summary, write_report};
use crate::soak::run::run;
use crate::soak::verdict::verdicts;

pub use args::SoakArgs;
pub use roles::worker_main;

/// The moat binary: --moat-bin, $MOAT_BIN, or `moat` next to this binary.
fn find_moat(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let p = match explicit.or_else(|| std::env::var_os("MOAT_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("own directory")?
            .join("moat"),
    };
    if !p.is_file() {
        bail!(
            "the moat binary {} does not exist: build it (`cargo build --release -p moat`), pass --moat-bin, or run scripts/soak",
            p.display()
        );
    }
    Ok(p.canonicalize()?)
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "Ctrl-C";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

fn rerender(from: &Path, out: Option<PathBuf>) -> Result<()> {
    let text = std::fs::read_to_string(from).with_context(|| format!("read {}", from.display()))?;
    let run: SoakRun =
        serde_json::from_str(&text).with_context(|| format!("parse {}", from.display()))?;
    println!("{}", summary(&run));
    let out = out.unwrap_or_else(|| crate::model::workspace_root().join("docs/reliability.md"));
    write_report(&run, &out)
}

/// `moat-bench soak`.
pub fn main(args: SoakArgs) -> Result<()> {
    if let Some(from) = &args.report_from {
        return rerender(from, args.out.clone());
    }
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raise the open-file limit")?;
    crate::peers::require(&[crate::peers::MOSQUITTO])?;
    let plan = Plan::new(&args, nofile)?;
    let moat_bin = find_moat(args.moat_bin.clone())?;
    let out = if args.no_write {
        None
    } else {
        args.out.clone().or_else(|| {
            plan.full_size()
                .then(|| crate::model::workspace_root().join("docs/reliability.md"))
        })
    };
    let command = std::env::var("MOAT_SOAK_COMMAND").unwrap_or_else(|_| {
        let a: Vec<String> = std::env::args().skip(1).collect();
        format!("moat-bench {}", a.join(" "))
    });
    let tmp = tempfile::Builder::new().prefix("moat-soak-").tempdir()?;
    eprintln!(
        "soak: {} devices ({} per replica, {} worker processes) and {} subscribers through {} moat replicas to one Mosquitto, for {} once all are up; moat = {}; scratch in {}",
        plan.connections,
        plan.per_replica,
        plan.workers,
        plan.subscribers,
        plan.replicas,
        secs(plan.duration_s),
        moat_bin.display(),
        tmp.path().display()
    );
    eprintln!(
        "soak: timeline: renewals every {:.0} s, broker restart at +{:.0} s ({:.0} s down), flood at +{:.0} s for {:.0} s",
        plan.reload_interval_s, plan.restart_at_s, plan.broker_down_s, plan.flood_at_s, plan.flood_s
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&plan, &moat_bin, tmp.path(), command) => r,
            s = interrupted() => Err(anyhow!("interrupted ({s}); every process it started was stopped")),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let run = match result {
        Ok(r) => r,
        Err(e) => {
            let kept = tmp.keep();
            eprintln!("soak: logs kept in {}", kept.display());
            return Err(e);
        }
    };
    println!("{}", summary(&run));
    match &out {
        Some(out) => write_report(&run, out)?,
        None => {
            let scratch = tmp.path().join("report.md");
            write_report(&run, &scratch)?;
            eprintln!(
                "soak: not a full-size run, so docs/reliability.md was left alone (use --out to write one)"
            );
        }
    }
    let failed: Vec<String> = verdicts(&run)
        .into_iter()
        .filter(|v| !v.pass)
        .map(|v| v.what)
        .collect();
    if failed.is_empty() && out.is_some() {
        return Ok(());
    }
    let kept = tmp.keep();
    eprintln!("soak: logs and scratch files kept in {}", kept.display());
    if failed.is_empty() {
        return Ok(());
    }
    bail!("soak criteria failed:\n  - {}", failed.join("\n  - "))
}
