//! The command line: `moat run`, `moat check`, `moat version`.
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

fn load(path: &std::path::Path) -> Result<ValidConfig, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(server::run(config, prepared));
    // Connections still open after the drain deadline are dropped here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(server::RunError(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
