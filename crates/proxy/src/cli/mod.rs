//! The command line: `moat run`, `moat check`, `moat version`,
//! `moat healthcheck`, `moat import-mosquitto`, `moat connections`.
//!
//! Exit codes: 0 success; 1 a failure at run time (a port already taken);
//! 2 bad input (configuration, certificates, keys), with a message that
//! names the file and the field or line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_client;
mod backend_names;
mod check;
mod connections;
mod devcerts;
mod exit;
mod healthcheck;
mod import;
mod run;

use std::path::Path;

use crate::config::{self, ValidConfig};
use exit::EXIT_BAD_INPUT;

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
        /// Do not resolve the backends' host names (to check a
        /// configuration away from the network it runs in).
        #[arg(long)]
        no_resolve: bool,
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
    /// List or close a running moat's live sessions through its admin
    /// endpoint (address and token from the configuration file).
    Connections {
        /// The configuration file of the running moat.
        #[arg(
            short,
            long,
            value_name = "FILE",
            global = true,
            default_value = "/etc/moat/moat.yaml"
        )]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        verb: connections::Verb,
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
        } => healthcheck::run(config, url, &timeout),
        Command::ImportMosquitto { file } => import::run(&file),
        Command::Connections { config, verb } => match load(&config) {
            Ok(c) => connections::run(&c, &verb),
            Err(code) => code,
        },
        Command::Check { config, no_resolve } => match load(&config) {
            Ok(c) => check::run(&c, !no_resolve),
            Err(code) => code,
        },
        Command::Run { config } => match load(&config) {
            Ok(c) => run::run(c),
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

fn load(path: &Path) -> Result<ValidConfig, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}
