//! `moat run`: the start-up sequence, in the order that keeps it safe.
//!
//! 1. Logging, and the quickstart's development certificates if asked.
//! 2. The configured user is resolved, and every certificate, key, chain,
//!    CA bundle and CRL is loaded and checked before anything is bound, so
//!    a bad file fails the start with exit code 2 and nothing half-open.
//!    ACME entries without a stored certificate obtain one first (exit
//!    code 1 when they cannot).
//! 3. Every port is bound (one socket per connection worker), then the
//!    process switches user and applies the sandbox, all while it is one
//!    thread.
//! 4. The connection workers and the main runtime start, inside the
//!    sandbox, and `process::server` serves until a signal.

use std::process::ExitCode;

use super::exit::{EXIT_BAD_INPUT, EXIT_RUNTIME};
use super::{check, devcerts};
use crate::config::ValidConfig;
use crate::control::acme;
use crate::listen::socket::{self, BindError};
use crate::listen::workers::Workers;
use crate::process::server::{self, AdminSecurity, RunError};
use crate::process::{confine, logging, privileges};
use crate::tls;

/// Runs `moat run`: the start-up sequence, then the gateway.
pub fn run(config: ValidConfig) -> ExitCode {
    logging::init(&config.config.log);
    let (account, prepared, admin, acme) = match load(&config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // One connection worker per CPU, counted before the sandbox, which may
    // hide /sys/fs/cgroup; each binds its own socket of every listener.
    let worker_count = Workers::default_count();
    // Bind, switch user and sandbox while the process is one thread.
    let sockets = match socket::bind_all(&config, worker_count) {
        Ok(s) => s,
        Err(BindError(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let landlock = match confine::confine(&config, account) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", config.path.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // Connections are accepted and run on the workers (one per CPU, see
    // `listen::workers`); the main runtime keeps the admin endpoint,
    // reloads, stapling and signals. Both start after the sandbox, so every
    // thread is inside it.
    let workers = match Workers::start_n(worker_count) {
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
    let result = runtime.block_on(server::serve(
        config,
        prepared,
        admin,
        sockets,
        (landlock, workers.clone()),
        acme,
    ));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Connections still open after the drain deadline are dropped here.
    if let Ok(workers) = std::sync::Arc::try_unwrap(workers) {
        workers.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// What is loaded before anything is bound.
type Loaded = (
    Option<privileges::Account>,
    tls::Prepared,
    AdminSecurity,
    Option<acme::Acme>,
);

/// Everything that is loaded before anything is bound: development
/// certificates when asked for, the account to switch to, every
/// listener's TLS state (with the start-up warnings logged), the admin
/// token and the admin endpoint's TLS settings. Bad input is reported and comes back as exit code 2.
fn load(config: &ValidConfig) -> Result<Loaded, ExitCode> {
    match devcerts::ensure(config) {
        Ok(dev) => devcerts::announce(config, &dev),
        Err(e) => {
            eprintln!(
                "error: {}: development.generate_certificates: {e}",
                config.path.display()
            );
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    }
    let account = match &config.config.user {
        Some(user) => match privileges::resolve(user, config.config.group.as_deref()) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("error: {}: {e}", config.path.display());
                return Err(ExitCode::from(EXIT_BAD_INPUT));
            }
        },
        None => None,
    };
    // ACME entries' state directories and HTTP-01 sockets; an entry with
    // no certificate yet loads as pending and is ordered once serving.
    let acme = match acme::prepare(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {}: {e}", config.path.display());
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
    };
    if let (Some(acme), Some(a)) = (&acme, &account) {
        if let Err(e) = acme.hand_over(a.uid.as_raw(), a.gid.as_raw()) {
            eprintln!("error: {}: {e}", config.path.display());
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
    }
    let prepared = match tls::prepare(config) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    check::log_warnings(config, &prepared);
    let token = match check::admin_token(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", config.path.display());
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let tls = match check::admin_tls(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    Ok((account, prepared, AdminSecurity { token, tls }, acme))
}
