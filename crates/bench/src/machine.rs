//! A description of the machine a report was measured on: processor,
//! cores, memory, kernel, the peers' Debian package versions, rustc, and the
//! moat commit.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut c = Command::new(cmd);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpuinfo(field: &str) -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Rows of (what, value).
pub fn describe(root: &Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        rows.push((k.to_string(), v.unwrap_or_else(|| "unknown".into())));
    };
    push("processor", cpuinfo("model name"));
    let flags = cpuinfo("flags").unwrap_or_default();
    let wanted = ["aes", "avx2", "avx512f", "vaes", "vpclmulqdq", "sha_ni"];
    let has: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    push("crypto-relevant CPU flags", Some(has.join(" ")));
    push(
        "cores (nproc)",
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.to_string()),
    );
    push(
        "memory",
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        }),
    );
    push(
        "kernel",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
    );
    push(
        "OS",
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            }),
    );
    for pkg in [
        "nginx",
        "libnginx-mod-stream",
        "haproxy",
        "stunnel4",
        "mosquitto",
        "openssl",
    ] {
        push(
            &format!("`{pkg}` package"),
            run("dpkg-query", &["-W", "-f", "${Version}", pkg], None).filter(|v| !v.is_empty()),
        );
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    push("rustc", run(&rustc, &["-V"], None));
    let commit = run("git", &["rev-parse", "--short", "HEAD"], Some(root)).map(|c| {
        let dirty = run(
            "git",
            &["status", "--porcelain", "crates/proxy"],
            Some(root),
        )
        .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{c} with uncommitted changes in crates/proxy")
        } else {
            c
        }
    });
    push("moat commit", commit);
    rows
}
