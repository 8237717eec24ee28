//! `compare` and `smoke`: plan the scenarios, start every process, run each
//! scenario against each proxy several times, then write the report (or,
//! in smoke mode, check that every number is sane).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cluster;
use crate::model::{workspace_root, Meta, Plan, Problem, Record, Results, Saved};
use crate::peers;
use crate::pki::Pki;
use crate::proxies::{self, Env, Kind};
use crate::report::Report;
use crate::scenarios::{self, Outcome, WSS_ONLY_MOAT};

/// Options of `compare` (and, partly, `smoke`).
#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// Repetitions of every scenario against every proxy; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Multiplies every count and duration (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Scenarios to run, comma-separated: full, resumed, idle, idle_wss, bulk,
    /// small, storm, storm_cluster (idle_wss is measured for moat only,
    /// storm_cluster for moat, HAProxy and nginx).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "full,resumed,idle,idle_wss,bulk,small,storm,storm_cluster"
    )]
    pub scenarios: Vec<String>,
    /// Proxies to measure, comma-separated: moat, nginx, haproxy, stunnel, naive.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "moat,nginx,haproxy,stunnel,naive"
    )]
    pub proxies: Vec<String>,
    /// Idle-connection levels (capped by the open-file limit).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub idle_levels: Vec<usize>,
    /// Devices in the reconnect storm (capped by the open-file limit).
    #[arg(long, default_value_t = 10_000)]
    pub storm_devices: usize,
    /// The markdown report to write (its generated section is replaced).
    /// Default: docs/benchmarks.md for `compare`, none for `smoke`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not write the report or the charts.
    #[arg(long)]
    pub no_write: bool,
    /// The moat binary. Default: $MOAT_BIN, else `moat` next to this binary.
    #[arg(long)]
    pub moat_bin: Option<PathBuf>,
    /// Tiny scale, one run, sanity checks instead of targets; writes no
    /// report unless --out is given.
    #[arg(long)]
    pub smoke: bool,
}

/// Every scenario, in run order.
pub const SCENARIOS: [&str; 8] = [
    "full",
    "resumed",
    "idle",
    "idle_wss",
    "bulk",
    "small",
    "storm",
    "storm_cluster",
];

/// Open files kept free in each proxy process besides its connections.
const FD_RESERVE: u64 = 200;

impl Plan {
    fn new(args: &CompareArgs, nofile: u64, kinds: &[Kind]) -> Self {
        let mut max_conns = (nofile.saturating_sub(FD_RESERVE) / 2) as usize;
        if kinds.contains(&Kind::Stunnel) {
            // stunnel (pthread build) admits at most 125/256 of its open-file
            // limit in clients and resets the rest; every proxy gets the
            // same load, so all are capped there (in whole hundreds).
            let stunnel = (nofile * 125 / 256) as usize;
            max_conns = max_conns.min(stunnel.saturating_sub(50) / 100 * 100);
        }
        let s = if args.smoke { 1.0 } else { args.scale };
        let n = |x: usize| ((x as f64 * s).round() as usize).max(1);
        let mut capped = Vec::new();
        let mut cap = |x: usize| {
            if x > max_conns {
                capped.push((x, max_conns));
                max_conns
            } else {
                x
            }
        };
        if args.smoke {
            return Self {
                runs: 1,
                smoke: true,
                full: 200,
                resumed: 200,
                concurrency: 16,
                idle_levels: vec![cap(50), cap(200)],
                idle_settle_s: 0.3,
                bulk_bytes: 64 << 20,
                bulk_conns: 2,
                small_rate: 2000.0,
                small_conns: 4,
                small_secs: 1.0,
                small_size: 64,
                storm_devices: cap(200),
                max_conns,
                nofile,
                capped,
            };
        }
        let mut idle_levels: Vec<usize> = args.idle_levels.iter().map(|&l| cap(n(l))).collect();
        idle_levels.dedup();
        let storm_devices = cap(n(args.storm_devices));
        Self {
            runs: args.runs.max(1),
            smoke: false,
            full: n(4000),
            resumed: n(4000),
            concurrency: 32,
            idle_levels,
            idle_settle_s: 3.0,
            bulk_bytes: ((1u64 << 30) as f64 * s) as u64,
            bulk_conns: 4,
            small_rate: 2000.0,
            small_conns: 4,
            small_secs: 10.0 * s,
            small_size: 64,
            storm_devices,
            max_conns,
            nofile,
            capped,
        }
    }
}

impl Results {
    fn add(&mut self, run: usize, scenario: &str, proxy: &str, r: Result<Outcome>) {
        match r {
            Ok(o) => {
                eprintln!("  {proxy:<8} {}", o.info);
                for (metric, value) in o.values {
                    self.records.push(Record {
                        run,
                        scenario: scenario.into(),
                        proxy: proxy.into(),
                        metric,
                        value,
                    });
                }
                for text in o.problems {
                    eprintln!("  {proxy:<8} PROBLEM: {text}");
                    self.problems.push(Problem {
                        run,
                        scenario: scenario.into(),
                        proxy: proxy.into(),
                        text,
                    });
                }
            }
            Err(e) => {
                eprintln!("  {proxy:<8} FAILED: {e:#}");
                self.problems.push(Problem {
                    run,
                    scenario: scenario.into(),
                    proxy: proxy.into(),
                    text: format!("failed: {e:#}"),
                });
            }
        }
    }
}

/// Finds (or builds) the moat binary: --moat-bin, $MOAT_BIN, or a fresh
/// `cargo build -p moat` in this binary's own profile.
fn moat_bin(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("MOAT_BIN").map(PathBuf::from)) {
        if !p.is_file() {
            bail!("the moat binary {} does not exist", p.display());
        }
        return Ok(p.canonicalize()?);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("own directory")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "moat", "--bin", "moat"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "building moat ({}): {cmd:?}",
        if release { "release" } else { "debug" }
    );
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .context("run cargo build -p moat")?;
    if !status.success() {
        bail!("cargo build -p moat failed");
    }
    let bin = dir.join("moat");
    if !bin.is_file() {
        bail!("moat was built but is not at {}", bin.display());
    }
    Ok(bin)
}

fn parse_scenarios(list: &[String]) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for s in list {
        let s = s.trim();
        let Some(known) = SCENARIOS.iter().find(|k| **k == s) else {
            bail!(
                "unknown scenario {s:?}: expected one of {}",
                SCENARIOS.join(", ")
            );
        };
        if !out.contains(known) {
            out.push(*known);
        }
    }
    // Always in the canonical order.
    out.sort_by_key(|s| SCENARIOS.iter().position(|k| k == s));
    Ok(out)
}

fn settle() -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(200))
}

async fn measure(
    env: &Env,
    plan: &Plan,
    scenario: &str,
    kind: Kind,
    res: &mut Results,
    run: usize,
) {
    let name = kind.name();
    match scenario {
        "idle_wss" if kind != Kind::Moat => {
            eprintln!("  {name:<8} skipped: {WSS_ONLY_MOAT}");
            return;
        }
        "idle" | "idle_wss" => {
            for &level in &plan.idle_levels {
                let r = async {
                    let (_echo, backend) = proxies::start_echo(env)?;
                    let proxy = proxies::start(env, kind, backend).await?;
                    scenarios::idle(
                        env,
                        &proxy,
                        level,
                        Duration::from_secs_f64(plan.idle_settle_s),
                        scenario == "idle_wss",
                    )
                    .await
                }
                .await;
                res.add(run, scenario, name, r);
                settle().await;
            }
        }
        "storm" => {
            let r = async {
                let (_mosquitto, backend) = proxies::start_mosquitto(env).await?;
                let proxy = proxies::start(env, kind, backend).await?;
                scenarios::storm(env, &proxy, plan.storm_devices).await
            }
            .await;
            res.add(run, scenario, name, r);
        }
        "storm_cluster" => {
            let variants = cluster::variants(kind);
            if variants.is_empty() {
                eprintln!("  {name:<8} skipped: {}", cluster::SKIPPED);
                return;
            }
            for (balance, key) in variants {
                let r = async {
                    let (_brokers, nodes) = cluster::start_brokers(env).await?;
                    let proxy = proxies::start_cluster(env, kind, &nodes, balance).await?;
                    cluster::storm_cluster(env, &proxy, &nodes, plan.storm_devices, key).await
                }
                .await;
                res.add(run, scenario, name, r);
                settle().await;
            }
        }
        _ => {
            let r = async {
                let (_echo, backend) = proxies::start_echo(env)?;
                let proxy = proxies::start(env, kind, backend).await?;
                match scenario {
                    "full" => {
                        scenarios::handshakes(&proxy, &env.ca, plan.full, plan.concurrency, false)
                            .await
                    }
                    "resumed" => {
                        scenarios::handshakes(&proxy, &env.ca, plan.resumed, plan.concurrency, true)
                            .await
                    }
                    "bulk" => {
                        scenarios::bulk(&proxy, &env.ca, plan.bulk_bytes, plan.bulk_conns).await
                    }
                    "small" => scenarios::small(&proxy, &env.ca, plan.small()).await,
                    other => bail!("unknown scenario {other}"),
                }
            }
            .await;
            res.add(run, scenario, name, r);
        }
    }
    settle().await;
}

async fn run_all(env: &Env, plan: &Plan, kinds: &[Kind], scenarios: &[&'static str]) -> Results {
    let mut res = Results::default();
    for run in 0..plan.runs {
        // Rotate the order so that no proxy always runs first or last.
        let mut order = kinds.to_vec();
        order.rotate_left(run % kinds.len().max(1));
        for &scenario in scenarios {
            eprintln!("run {}/{} · {scenario}", run + 1, plan.runs);
            if scenario == "small" {
                let r = async {
                    let (_echo, backend) = proxies::start_echo(env)?;
                    scenarios::small_direct(backend, plan.small()).await
                }
                .await;
                res.add(run, scenario, "direct", r);
            }
            for &kind in &order {
                measure(env, plan, scenario, kind, &mut res, run).await;
            }
        }
    }
    res
}

/// Smoke mode's verdict: every proxy produced every value, and nothing
/// went wrong.
fn smoke_check(res: &Results, kinds: &[Kind], scenarios: &[&str], plan: &Plan) -> Result<()> {
    let mut failures: Vec<String> = res
        .problems
        .iter()
        .map(|p| format!("{} / {}: {}", p.scenario, p.proxy, p.text))
        .collect();
    for &k in kinds {
        for &s in scenarios {
            let want: Vec<String> = match s {
                "full" => vec!["full_hs_us".into(), "full_hs_sys_us".into()],
                "resumed" => vec![
                    "resumed_hs_us".into(),
                    "resumed_hs_sys_us".into(),
                    "resumed_pct".into(),
                ],
                "idle" => plan
                    .idle_levels
                    .iter()
                    .map(|l| format!("idle_kib_{l}"))
                    .collect(),
                "idle_wss" if k == Kind::Moat => plan
                    .idle_levels
                    .iter()
                    .map(|l| format!("idle_wss_kib_{l}"))
                    .collect(),
                "bulk" => vec!["bulk_s_per_gib".into()],
                "small" => vec!["rtt_p99_us".into(), "small_cpu_ms_per_1000".into()],
                "storm" => vec!["storm_s".into(), "storm_cpu_s".into()],
                "storm_cluster" => cluster::variants(k)
                    .into_iter()
                    .flat_map(|(_, key)| {
                        ["s", "cpu_s", "busiest_pct"].map(|m| format!("{key}_{m}"))
                    })
                    .collect(),
                _ => vec![],
            };
            for m in want {
                let v = res
                    .records
                    .iter()
                    .find(|r| r.proxy == k.name() && r.metric == m)
                    .map(|r| r.value);
                match v {
                    None => failures.push(format!("{s} / {}: no value for {m}", k.name())),
                    Some(v) if !v.is_finite() => {
                        failures.push(format!("{s} / {}: {m} is {v}", k.name()))
                    }
                    Some(v) if m.contains("_kib_") && !(0.0..1024.0).contains(&v) => failures.push(
                        format!("{s} / {}: {m} = {v:.1} KiB is not plausible", k.name()),
                    ),
                    // System time is counted in clock ticks (10 ms), which
                    // a smoke run's few hundred handshakes may not fill: 0
                    // is a valid reading there.
                    Some(v)
                        if !m.contains("_kib_")
                            && (v < 0.0 || (v == 0.0 && !m.ends_with("_sys_us"))) =>
                    {
                        failures.push(format!("{s} / {}: {m} = {v} is not positive", k.name()))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    // Hashing distinct client ids must reach every node; one source
    // address reaches one, which is the finding, not a failure.
    for r in res
        .records
        .iter()
        .filter(|r| r.metric == "storm_cluster_cid_nodes_used")
    {
        if r.value < cluster::NODES as f64 {
            failures.push(format!(
                "storm_cluster / {}: balance client_id put the devices on {} of {} brokers",
                r.proxy,
                r.value,
                cluster::NODES
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("smoke checks failed:\n  - {}", failures.join("\n  - "))
    }
}

/// How this invocation would be typed.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.ends_with("release")))
        .unwrap_or(false);
    format!(
        "cargo run {}-p moat-bench -- {}",
        if release { "--release " } else { "" },
        args.join(" ")
    )
}

/// `report --from results.json`: writes the report again from saved raw
/// data, without measuring.
pub fn rerender(from: &Path, out: Option<PathBuf>) -> Result<()> {
    let from = if !from.exists() && from.is_relative() {
        workspace_root().join(from)
    } else {
        from.to_path_buf()
    };
    let from = from.as_path();
    let text = std::fs::read_to_string(from).with_context(|| format!("read {}", from.display()))?;
    let saved: Saved =
        serde_json::from_str(&text).with_context(|| format!("parse {}", from.display()))?;
    let scenarios: Vec<&'static str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| saved.meta.scenarios.iter().any(|m| m == s))
        .collect();
    let report = Report::new(
        &saved.results,
        &saved.plan,
        &saved.meta.kinds,
        &scenarios,
        &saved.meta.moat_bin,
    );
    println!("{}", report.summary());
    let out = out.unwrap_or_else(|| workspace_root().join("docs/benchmarks.md"));
    report.write(&out, &saved.meta)?;
    eprintln!("moat-bench: wrote {}", out.display());
    Ok(())
}

/// Runs `compare` (or smoke mode).
pub fn main(args: CompareArgs) -> Result<()> {
    let started = Instant::now();
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raise the open-file limit")?;
    let kinds = args
        .proxies
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let plan = Plan::new(&args, nofile, &kinds);
    let scenarios = parse_scenarios(&args.scenarios)?;

    let mut needs: Vec<peers::Need> = kinds
        .iter()
        .flat_map(|k| k.needs().iter().copied())
        .collect();
    if scenarios.contains(&"storm") || scenarios.contains(&"storm_cluster") {
        needs.push(peers::MOSQUITTO);
    }
    peers::require(&needs)?;
    let moat_bin = if kinds.contains(&Kind::Moat) {
        moat_bin(args.moat_bin.clone())?
    } else {
        PathBuf::from("moat")
    };

    let machine = crate::machine::describe(&workspace_root());
    let tmp = tempfile::Builder::new().prefix("moat-bench-").tempdir()?;
    let pki = Pki::generate(tmp.path())?;
    let env = Env::new(
        pki,
        moat_bin.clone(),
        tmp.path().join("run"),
        plan.max_conns,
    )?;
    eprintln!(
        "moat-bench: {} run(s) of {} against {} (open-file limit {nofile}: at most {} connections per proxy process); moat = {}",
        plan.runs,
        scenarios.join(", "),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        plan.max_conns,
        moat_bin.display()
    );
    for (asked, used) in &plan.capped {
        eprintln!("note: {asked} connections lowered to {used} to fit the open-file limit");
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env.cores)
        .enable_all()
        .build()?;
    let res = rt.block_on(run_all(&env, &plan, &kinds, &scenarios));
    drop(rt);
    let elapsed = started.elapsed();
    eprintln!("moat-bench: measured in {:.0} s", elapsed.as_secs_f64());

    let report = Report::new(&res, &plan, &kinds, &scenarios, &moat_bin);
    println!("{}", report.summary());
    let meta = Meta {
        command: command_line(),
        measured_at: crate::model::now_utc(),
        elapsed_s: elapsed.as_secs_f64(),
        kinds: kinds.clone(),
        scenarios: scenarios.iter().map(|s| s.to_string()).collect(),
        moat_bin: moat_bin.clone(),
        machine,
    };

    // Smoke numbers never overwrite the real report unless asked to.
    if !args.no_write && (!plan.smoke || args.out.is_some()) {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| workspace_root().join("docs/benchmarks.md"));
        report.write(&out, &meta)?;
        eprintln!("moat-bench: wrote {}", out.display());
    }
    if plan.smoke {
        smoke_check(&res, &kinds, &scenarios, &plan)?;
        eprintln!("moat-bench: smoke checks passed");
    }
    Ok(())
}
