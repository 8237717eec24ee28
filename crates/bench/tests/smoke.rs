//! Runs `moat-bench smoke` against moat and the naive proxy: every scenario
//! at a tiny scale, once, with the harness's own sanity checks (non-zero
//! CPU, every connection up, moat's sessions resumed, every CONNACK back).
//! And runs `moat-bench soak` for 20 s with 100 devices, so that the soak
//! test (`scripts/soak`) keeps working between its long runs. Neither is a
//! timing test.
//!
//! Both need a real Mosquitto; if it is missing the tests fail and name the
//! Debian package. They are never skipped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use moat_testkit::moat_bin;

fn require(command: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(command).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| PathBuf::from(d).join(command).is_file());
    assert!(
        found,
        "missing benchmark peer: `{command}` is not installed. Install it with `apt-get install -y {package}`."
    );
}

#[test]
fn smoke_moat_and_naive_proxy() {
    require("mosquitto", "mosquitto");
    let moat = moat_bin();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_moat-bench"))
        .arg("smoke")
        .arg("--moat-bin")
        .arg(&moat)
        .output()
        .expect("run moat-bench smoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}\n{stdout}");
    assert!(
        out.status.success(),
        "moat-bench smoke failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("smoke checks passed"),
        "no verdict:\n{stderr}"
    );
    for row in [
        "Full TLS 1.3 handshake",
        "Resumed handshake",
        "Idle TLS connection",
        "Idle WSS connection",
        "Bulk echo",
        "round trip p99",
        "Reconnect storm",
        "balance source, storm over 3 brokers",
        "moat balance client_id",
    ] {
        assert!(stdout.contains(row), "summary lacks {row:?}:\n{stdout}");
    }
    eprintln!("smoke took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn soak_at_tiny_scale() {
    require("mosquitto", "mosquitto");
    let moat = moat_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("reliability.md");
    let started = Instant::now();
    // The whole timeline, squeezed: renewals every 5 s, the broker down for
    // 1 s at 6 s, a 5 s flood at 10 s. The latency bound is loose: this
    // checks that the harness and its verdicts work, not how fast moat is.
    let out = Command::new(env!("CARGO_BIN_EXE_moat-bench"))
        .args(["soak", "--connections", "100", "--per-worker", "50"])
        .args(["--duration", "20s", "--publish-interval", "2s"])
        .args(["--reload-interval", "5s", "--broker-down", "1s"])
        .args([
            "--flood",
            "5s",
            "--half-open",
            "200",
            "--garbage-rate",
            "50",
        ])
        .args(["--slowloris", "2", "--handshake-bound-ms", "2000"])
        .arg("--moat-bin")
        .arg(&moat)
        .arg("--out")
        .arg(&report)
        .output()
        .expect("run moat-bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}\n{stdout}");
    assert!(
        out.status.success(),
        "moat-bench soak failed ({}):\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("[FAIL]"), "a criterion failed:\n{stdout}");
    for verdict in [
        "[pass] QoS 1",
        "[pass] No dropped established connections",
        "[pass] Every certificate renewal landed",
        "[pass] Well-behaved handshakes during the flood",
    ] {
        assert!(stdout.contains(verdict), "no {verdict:?}:\n{stdout}");
    }
    let md = std::fs::read_to_string(&report).expect("the report was written");
    assert!(md.contains("### Verdicts"), "{md}");
    assert!(dir.path().join("reliability/soak.json").is_file());
    eprintln!("soak took {:.1} s", started.elapsed().as_secs_f64());
}
