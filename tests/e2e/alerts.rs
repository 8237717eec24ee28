//! The shipped Prometheus alert rules are valid and do what their tests
//! say, checked with the real `promtool`.

use moat_testkit::*;

fn promtool(args: &[&str]) -> String {
    let (ok, text) = moat_testkit::promtool(&workspace_root().join("deploy/prometheus"), args);
    assert!(ok, "promtool {args:?} failed:\n{text}");
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
