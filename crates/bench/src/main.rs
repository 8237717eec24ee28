//! `moat-bench`: measures moat side by side with nginx (stream), HAProxy,
//! stunnel and a naive tokio-rustls proxy on this machine, and writes
//! `docs/benchmarks.md`.
//!
//! `compare` is the one command that does everything; `smoke` runs every
//! scenario at a tiny scale and checks the numbers are sane. `soak` is the
//! long reliability test (`scripts/soak`, `docs/reliability.md`). The other
//! subcommands are the processes `compare` and `soak` start: the echo
//! backend, the naive reference proxy and the client workers that spread
//! many connections over several processes.

mod charts;
mod client;
mod cluster;
mod compare;
mod echo;
mod machine;
mod model;
mod mqtt;
mod naive;
mod peers;
mod pki;
mod procstat;
mod proxies;
mod report;
mod scenarios;
mod soak;
mod worker;
mod wsclient;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use compare::CompareArgs;

#[derive(Parser)]
#[command(
    name = "moat-bench",
    about = "Benchmarks moat against nginx, HAProxy, stunnel and a naive tokio-rustls proxy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs every scenario against every proxy and writes docs/benchmarks.md.
    Compare(CompareArgs),
    /// Every scenario at a tiny scale, once, with sanity checks (moat and the
    /// naive proxy unless --proxies says otherwise).
    Smoke(SmokeArgs),
    /// The soak test: 10k connections through two moat replicas to
    /// Mosquitto for 10 minutes, with certificate renewals, a broker restart
    /// and a flood; writes docs/reliability.md.
    Soak(soak::SoakArgs),
    /// A soak worker process (started by `soak`).
    SoakWorker {
        /// The worker's job, as JSON.
        #[arg(long)]
        spec: String,
    },
    /// The naive reference proxy: tokio-rustls and copy_bidirectional.
    NaiveProxy {
        /// Address to accept TLS on.
        #[arg(long)]
        listen: String,
        /// The plaintext backend.
        #[arg(long)]
        backend: String,
        /// PEM certificate chain.
        #[arg(long)]
        cert: PathBuf,
        /// PEM private key.
        #[arg(long)]
        key: PathBuf,
    },
    /// The plaintext echo backend.
    EchoServer {
        /// Address to listen on; port 0 picks one (printed on stdout).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Writes the report again from saved raw data, without measuring.
    Report {
        /// The raw data a `compare` saved.
        #[arg(long, default_value = "docs/benchmarks/results.json")]
        from: PathBuf,
        /// The markdown report to write (default: docs/benchmarks.md).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A client worker process (started by `compare`).
    Worker {
        /// The worker's job, as JSON.
        #[arg(long)]
        spec: String,
    },
}

/// Options of `smoke`.
#[derive(Args, Clone, Debug)]
pub struct SmokeArgs {
    /// Proxies to smoke-test.
    #[arg(long, value_delimiter = ',', default_value = "moat,naive")]
    pub proxies: Vec<String>,
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "full,resumed,idle,idle_wss,bulk,small,storm,storm_cluster"
    )]
    pub scenarios: Vec<String>,
    /// The moat binary. Default: $MOAT_BIN, else `moat` next to this binary.
    #[arg(long)]
    pub moat_bin: Option<PathBuf>,
    /// Also write a report here (not done by default).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Compare(args) => compare::main(args),
        Cmd::Smoke(s) => compare::main(CompareArgs {
            runs: 1,
            scale: 1.0,
            scenarios: s.scenarios,
            proxies: s.proxies,
            idle_levels: vec![50, 200],
            storm_devices: 200,
            no_write: s.out.is_none(),
            out: s.out,
            moat_bin: s.moat_bin,
            smoke: true,
        }),
        Cmd::NaiveProxy {
            listen,
            backend,
            cert,
            key,
        } => naive::main(&listen, &backend, &cert, &key),
        Cmd::EchoServer { listen } => echo::main(&listen),
        Cmd::Report { from, out } => compare::rerender(&from, out),
        Cmd::Worker { spec } => worker::main(&spec),
        Cmd::Soak(args) => soak::main(args),
        Cmd::SoakWorker { spec } => soak::worker_main(&spec),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
