//! Confinement after binding: switching to the configured user, applying
//! the Landlock sandbox, and then checking that what moat must read and
//! write again is still within reach.

use super::privileges::{self, Account, Switched};
use super::sandbox::{self, Landlock};
use crate::config::ValidConfig;

/// Switches to `account` (when one is configured) and applies the sandbox,
/// then warns about files moat can no longer reach. Call it while the
/// process is one thread.
pub fn confine(config: &ValidConfig, account: Option<Account>) -> Result<Landlock, String> {
    let c = &config.config;
    let switched = match account {
        Some(account) => {
            let how = privileges::switch(&account)?;
            tracing::info!(
                user = %account.user,
                uid = %account.uid,
                group = %account.group,
                gid = %account.gid,
                already = how == Switched::Already,
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
    let (files, dirs) = sandbox::runtime_paths(config);
    let plan = sandbox::plan(&files, &dirs);
    let landlock = sandbox::apply(c.sandbox.landlock, &plan)?;
    match landlock {
        Landlock::Off | Landlock::Unsupported => {}
        Landlock::Enforced | Landlock::Partial => tracing::info!(
            readable = ?plan.read,
            writable = ?plan.write,
            partial = landlock == Landlock::Partial,
            "Landlock sandbox enforced: file access is limited to these directories"
        ),
    }
    if switched || landlock.enforced() {
        for problem in sandbox::access_problems(&files, &dirs) {
            tracing::warn!("{problem}");
        }
    }
    Ok(landlock)
}
