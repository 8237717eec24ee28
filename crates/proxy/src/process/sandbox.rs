//! The Landlock sandbox (`sandbox.landlock`) and the access check that
//! follows any confinement.
//!
//! Once started, a sandboxed moat can read only the directories that hold
//! the files its configuration names (every hop of a symlink chain, so that
//! certbot and Kubernetes renewals still land), write only its OCSP cache
//! directories, and read the few system files name resolution needs.
//! Everything else on the file system, including running programs, is
//! refused by the kernel, even to root. Network access is not restricted.
//!
//! The ruleset is applied before the async runtime starts, while the
//! process has one thread: Landlock confines the calling thread and the
//! threads it creates afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};

use crate::config::{LandlockMode, ValidConfig};

/// The newest file-system rights moat asks for; older kernels enforce the
/// subset they know (best effort, reported as "partially enforced").
const ABI_WANTED: ABI = ABI::V5;

/// System paths moat reads at run time: name resolution for backend host
/// names (and the NSS modules glibc loads for it), the CPU quota the
/// runtime sizes itself by, and randomness.
const SYSTEM_READ: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/ld.so.cache",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/proc/self",
    "/sys/fs/cgroup",
    "/dev/null",
    "/dev/urandom",
];

/// What the sandbox allows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Readable, with everything beneath.
    pub read: BTreeSet<PathBuf>,
    /// Readable and writable, with everything beneath.
    pub write: BTreeSet<PathBuf>,
}

/// The files a running moat reads (the configuration file, which every
/// reload reads again; certificates, keys, CA bundles, CRLs, ticket keys,
/// static OCSP responses, ACME CA bundles and EAB keys) and the
/// directories it writes (OCSP caches, ACME state).
pub fn runtime_paths(config: &ValidConfig) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = vec![config.path.clone()];
    let mut dirs = Vec::new();
    for (l, _) in config.listeners() {
        files.extend(crate::tls::files::reloadable_files(l));
        files.extend(
            l.tls
                .certificates
                .iter()
                .filter_map(|c| c.ocsp_file.clone()),
        );
        files.extend(l.tls.ocsp.static_file.clone());
        dirs.extend(l.tls.ocsp.cache_dir.clone());
        for a in l.tls.certificates.iter().filter_map(|c| c.acme.as_ref()) {
            dirs.push(a.state_dir.clone());
            files.extend(a.ca_bundle.clone());
            files.extend(a.eab.as_ref().map(|e| e.hmac_key_file.clone()));
            files.extend(a.account_key.clone());
        }
    }
    files.sort();
    files.dedup();
    dirs.sort();
    dirs.dedup();
    (files, dirs)
}

/// The sandbox for these files and directories: the directory of every hop
/// of every file's symlink chain is readable; the cache directories are
/// writable.
pub fn plan(files: &[PathBuf], write_dirs: &[PathBuf]) -> Plan {
    let mut read = BTreeSet::new();
    for f in files {
        for hop in crate::control::reload::resolution_hops(f) {
            if let Some(d) = hop.parent() {
                read.insert(d.to_path_buf());
            }
        }
    }
    Plan {
        read,
        write: write_dirs.iter().cloned().collect(),
    }
}

/// How the sandbox came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landlock {
    /// Not asked for.
    Off,
    /// Every requested restriction is in force.
    Enforced,
    /// The kernel enforces an older, smaller set of restrictions.
    Partial,
    /// The kernel has no Landlock; moat runs without the sandbox.
    Unsupported,
}

impl Landlock {
    /// Whether the kernel restricts file access.
    pub fn enforced(self) -> bool {
        matches!(self, Landlock::Enforced | Landlock::Partial)
    }
}

/// Applies the sandbox as `mode` asks. Cache directories that do not exist
/// are created first (rules can only name existing paths).
pub fn apply(mode: LandlockMode, plan: &Plan) -> Result<Landlock, String> {
    if mode == LandlockMode::Off {
        return Ok(Landlock::Off);
    }
    for d in &plan.write {
        if let Err(e) = std::fs::create_dir_all(d) {
            // The stapler reports the failed writes itself; the sandbox just
            // cannot name a directory that is not there.
            tracing::warn!(directory = %d.display(), error = %e, "cannot create the OCSP cache directory");
        }
    }
    let wanted = AccessFs::from_all(ABI_WANTED);
    let read = AccessFs::from_read(ABI_WANTED);
    let result = Ruleset::default()
        .handle_access(wanted)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(SYSTEM_READ, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(&plan.read, read)))
        .and_then(|r| r.add_rules(path_beneath_rules(&plan.write, wanted)))
        .and_then(|r| r.restrict_self());
    // A seccomp filter (systemd's SystemCallFilter=, a container runtime's
    // profile) may refuse the Landlock calls outright: for best effort that
    // is the same as a kernel without Landlock.
    let (outcome, why) = match result {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => (Landlock::Enforced, String::new()),
            RulesetStatus::PartiallyEnforced => (Landlock::Partial, String::new()),
            RulesetStatus::NotEnforced => (
                Landlock::Unsupported,
                "this kernel does not enforce Landlock".to_string(),
            ),
        },
        Err(e) => (
            Landlock::Unsupported,
            format!("the Landlock calls failed: {e}"),
        ),
    };
    if outcome == Landlock::Unsupported {
        if mode == LandlockMode::Required {
            return Err(format!("sandbox.landlock: required, but {why}\n  hint: use Linux 5.13 or later with landlock in the lsm= boot parameter (and allow the landlock_* system calls in any seccomp filter), or set sandbox.landlock: best_effort"));
        }
        tracing::warn!(reason = %why, "sandbox.landlock: running without the file sandbox");
    }
    Ok(outcome)
}

/// Checks, after a user switch or the sandbox, that every file moat will
/// read again is still readable and every cache directory writable. Each
/// problem is a warning: the running state is already loaded, but the next
/// reload of that file (or cache write) will fail.
pub fn access_problems(files: &[PathBuf], write_dirs: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    for f in files {
        if let Err(e) = std::fs::File::open(f) {
            problems.push(format!(
                "{}: cannot be read any more ({e}); reloads of it will fail until it is readable",
                f.display()
            ));
        }
    }
    for d in write_dirs {
        if let Err(e) = probe_write(d) {
            problems.push(format!(
                "{}: OCSP cache directory is not writable ({e}); staples will not survive a restart",
                d.display()
            ));
        }
    }
    problems
}

fn probe_write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".moat-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_every_hop_of_a_symlinked_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let d = d.path();
        std::fs::create_dir_all(d.join("live/x")).expect("mkdir");
        std::fs::create_dir_all(d.join("archive/x")).expect("mkdir");
        std::fs::write(d.join("archive/x/cert1.pem"), "x").expect("write");
        std::os::unix::fs::symlink("../../archive/x/cert1.pem", d.join("live/x/cert.pem"))
            .expect("symlink");
        let p = plan(&[d.join("live/x/cert.pem")], &[d.join("cache")]);
        assert!(p.read.contains(&d.join("live/x")), "{p:?}");
        assert!(p.read.contains(&d.join("archive/x")), "{p:?}");
        assert!(!p.read.contains(d), "not the whole tree: {p:?}");
        assert_eq!(p.write, BTreeSet::from([d.join("cache")]));
    }

    #[test]
    fn access_problems_name_the_file_and_the_consequence() {
        let d = tempfile::tempdir().expect("tempdir");
        let missing = d.path().join("gone.pem");
        let blocked = d.path().join("file");
        std::fs::write(&blocked, "x").expect("write");
        let problems = access_problems(std::slice::from_ref(&missing), &[blocked.join("cache")]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with(&missing.display().to_string()));
        assert!(problems[0].contains("reloads of it will fail"));
        assert!(problems[1].contains("not writable"));
    }
}
