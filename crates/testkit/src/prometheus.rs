//! Reading Prometheus text exposition, as `/metrics` serves it, and
//! running the real `promtool`.

use std::path::Path;
use std::process::Command;

use crate::require::require;

/// Runs `promtool` with `args` in `dir`, failing the test when it is not
/// installed: whether it succeeded, and its stdout then stderr.
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    require("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Sums the samples in Prometheus text whose name is `name` and whose
/// labels contain every comma-separated part of `labels`; 0 when none.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    let parts: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let series_name = series.split('{').next().unwrap_or("");
        if series_name == name && parts.iter().all(|p| series.contains(p)) {
            sum += value.parse().unwrap_or(f64::NAN);
        }
    }
    sum
}
