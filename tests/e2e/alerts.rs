//! The shipped Prometheus alert rules are valid and do what their tests
//! say, checked with the real `promtool`.

use std::process::Command;

use moat_testkit::*;

fn promtool(args: &[&str]) -> String {
    require("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(workspace_root().join("deploy/prometheus"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_are_valid() {
    let out = promtool(&["check", "rules", "moat-alerts.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rule_unit_tests_pass() {
    let out = promtool(&["test", "rules", "moat-alerts.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}
