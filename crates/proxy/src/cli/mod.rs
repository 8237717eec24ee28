//! The command line: `moat run`, `moat check`, `moat version`,
//! `moat healthcheck`, `moat import-mosquitto`.
//!
//! Exit codes: 0 success; 1 a failure at run time (a port already taken);
//! 2 bad input (configuration, certificates, keys), with a message that
//! names the file and the field or line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ValidConfig};
use crate::{check, devcerts, logging, server};

/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for failures at run time.
pub const EXIT_RUNTIME: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version,
    about = "A TLS gateway for MQTT brokers",
    long_about = "moat terminates TLS and mutual TLS in front of a plaintext MQTT broker, reloads certificates without restarts, and exports their expiry as metrics."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration and describe its certificates, then exit.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
    /// Translate a Mosquitto configuration's TLS listeners into a moat
    /// configuration (printed to standard output).
    ImportMosquitto {
        /// The mosquitto.conf to read.
        #[arg(value_name = "MOSQUITTO_CONF")]
        file: PathBuf,
    },
    /// Ask a running moat's admin endpoint whether it is healthy (exit 0)
    /// or not (exit 1); for container HEALTHCHECKs, which have no curl.
    Healthcheck {
        /// Read the admin address from this configuration file.
        #[arg(short, long, value_name = "FILE", conflicts_with = "url")]
        config: Option<PathBuf>,
        /// Or check this URL, e.g. http://127.0.0.1:9090/readyz.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "3s")]
        timeout: String,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Everything in moat names its provider explicitly; installing it as the
    // process default serves libraries that do not. It fails only when a
    // default is already installed, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Version => {
            println!("{}", version_line());
            ExitCode::SUCCESS
        }
        Command::Healthcheck {
            config,
            url,
            timeout,
        } => healthcheck(config, url, &timeout),
        Command::ImportMosquitto { file } => match std::fs::read_to_string(&file) {
            Ok(text) => {
                print!(
                    "{}",
                    crate::import::translate(&file.display().to_string(), &text)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: {}: cannot read the Mosquitto configuration: {e}",
                    file.display()
                );
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Check { config } => match load(&config) {
            Ok(c) => check::run(&c),
            Err(code) => code,
        },
        Command::Run { config } => match load(&config) {
            Ok(c) => run(c),
            Err(code) => code,
        },
    }
}

/// `moat 0.1.0 (rustls, aws-lc-rs)`.
pub fn version_line() -> String {
    format!(
        "moat {} (rustls 0.23 with aws-lc-rs; TLS 1.2, 1.3; X25519MLKEM768)",
        env!("CARGO_PKG_VERSION")
    )
}

fn healthcheck(config: Option<PathBuf>, url: Option<String>, timeout: &str) -> ExitCode {
    let timeout = match humantime::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --timeout {timeout:?}: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let target = match (config, url) {
        (_, Some(u)) => crate::admin::HealthTarget::parse(&u),
        (Some(path), None) => match config::load(&path) {
            Ok(c) => match &c.config.admin {
                Some(a) => Ok(crate::admin::HealthTarget::for_listen(a.listen)),
                None => Err(format!(
                    "{} has no admin.listen; the health check needs the admin endpoint",
                    path.display()
                )),
            },
            Err(e) => Err(e.to_string()),
        },
        (None, None) => Err("give --config FILE or --url URL".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match target.check(timeout) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn load(path: &std::path::Path) -> Result<ValidConfig, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

/// Switches to the configured user and applies the sandbox, then checks
/// that what moat must read and write again is still within reach.
fn confine(
    config: &ValidConfig,
    account: Option<crate::privileges::Account>,
) -> Result<server::Confinement, String> {
    let c = &config.config;
    let switched = match account {
        Some(account) => {
            let how = crate::privileges::switch(&account)?;
            tracing::info!(
                user = %account.user,
                uid = %account.uid,
                group = %account.group,
                gid = %account.gid,
                already = how == crate::privileges::Switched::Already,
                "running as an unprivileged user"
            );
            true
        }
        None => {
            if nix::unistd::geteuid().is_root() {
                tracing::warn!(
                    "running as root; set user: to drop privileges once the ports are bound"
                );
            }
            false
        }
    };
    let (files, dirs) = crate::sandbox::runtime_paths(config);
    let plan = crate::sandbox::plan(&files, &dirs);
    let landlock = crate::sandbox::apply(c.sandbox.landlock, &plan)?;
    match landlock {
        crate::sandbox::Outcome::Off | crate::sandbox::Outcome::Unsupported => {}
        crate::sandbox::Outcome::Enforced | crate::sandbox::Outcome::Partial => tracing::info!(
            readable = ?plan.read,
            writable = ?plan.write,
            partial = landlock == crate::sandbox::Outcome::Partial,
            "Landlock sandbox enforced: file access is limited to these directories"
        ),
    }
    if switched || landlock.enforced() {
        for problem in crate::sandbox::access_problems(&files, &dirs) {
            tracing::warn!("{problem}");
        }
    }
    Ok(server::Confinement { landlock })
}

fn run(config: ValidConfig) -> ExitCode {
    logging::init(&config.config.log);
    match devcerts::ensure(&config) {
        Ok(dev) => devcerts::announce(&config, &dev),
        Err(e) => {
            eprintln!(
                "error: {}: development.generate_certificates: {e}",
                config.path.display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    let account = match &config.config.user {
        Some(user) => match crate::privileges::resolve(user, config.config.group.as_deref()) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("error: {}: {e}", config.path.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        None => None,
    };
    let prepared = match server::prepare(&config) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    check::log_warnings(&config, &prepared);
    // One connection worker per CPU, counted before the sandbox, which may
    // hide /sys/fs/cgroup; each binds its own socket of every listener.
    let worker_count = crate::workers::Workers::default_count();
    // Bind, switch user and sandbox while the process is one thread.
    let sockets = match server::bind_all(&config, worker_count) {
        Ok(s) => s,
        Err(server::RunError(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let confinement = match confine(&config, account) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", config.path.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // Connections are accepted and run on the workers (one per CPU, see
    // `workers`); the main runtime keeps the admin endpoint, reloads,
    // stapling and signals. Both start after the sandbox, so every thread
    // is inside it.
    let workers = match crate::workers::Workers::start_n(worker_count) {
        Ok(w) => std::sync::Arc::new(w),
        Err(e) => {
            eprintln!("error: cannot start the connection workers: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(server::run(
        config,
        prepared,
        sockets,
        confinement,
        workers.clone(),
    ));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Connections still open after the drain deadline are dropped here.
    if let Ok(workers) = std::sync::Arc::try_unwrap(workers) {
        workers.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(server::RunError(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
