//! The admin endpoint: liveness, readiness, and metrics that `promtool`
//! accepts.

use std::io::Write;
use std::process::{Command, Stdio};

use moat_testkit::*;

#[test]
fn health_readiness_and_metrics_that_promtool_accepts() {
    require("promtool", "prometheus");
    let s = Gateway::new().start();
    let dir = &s.dir;
    let broker = s.broker();
    let ca = s.ca();
    let port = s.port;
    let admin = s.admin.expect("an admin port");
    let moat = &s.moat;
    assert_eq!(moat.get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(moat.get("/readyz"), (200, "ready\n".to_string()));
    assert_eq!(moat.get("/nope").0, 404);
    assert_eq!(
        http_request(admin, "POST", "/metrics").expect("request").0,
        405
    );

    // Some traffic, so that every family has samples.
    let tls = Tls::ca(&ca.cert);
    round_trip(dir.path(), port, Some(&tls), broker.port, None);
    let _ = s_client(port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], "");

    let text = moat.metrics();
    for name in [
        "moat_connections_active",
        "moat_connections_total",
        "moat_tls_handshakes_total",
        "moat_tls_handshake_duration_seconds_bucket",
        "moat_tls_sessions_resumed_total",
        "moat_backend_connect_failures_total",
        "moat_relayed_bytes_total",
        "moat_connections_rejected_total",
        "moat_ready",
        "moat_build_info",
        "moat_certificate_not_after_timestamp_seconds",
        "moat_certificate_not_before_timestamp_seconds",
        "moat_certificate_reloads_total",
        "moat_certificate_last_reload_success_timestamp_seconds",
        "moat_certificate_reload_pending",
    ] {
        assert!(
            text.contains(&format!("# TYPE {}", name.trim_end_matches("_bucket")))
                || text.contains(name),
            "{name} missing:\n{text}"
        );
    }
    // The worker counts the refusal just after the alert has left.
    assert_eq!(
        moat.metric_reaching(
            "moat_tls_handshakes_total",
            "listener=\"mqtts\",result=\"failure\",reason=\"protocol_version\"",
            1.0
        ),
        1.0,
        "{text}"
    );
    assert_eq!(metric_value(&text, "moat_ready", ""), 1.0);
    let not_after = metric_value(
        &text,
        "moat_certificate_not_after_timestamp_seconds",
        "role=\"leaf\",subject=\"CN=localhost\"",
    );
    assert_eq!(not_after, 2051222400.0, "2035-01-01T00:00:00Z:\n{text}");
    let loaded = metric_value(
        &text,
        "moat_certificate_last_reload_success_timestamp_seconds",
        "listener=\"mqtts\"",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(loaded > now - 120.0 && loaded <= now, "{loaded} vs {now}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthcheck_command_reports_health_for_container_healthchecks() {
    let dir = TestDir::new();
    let broker = Mosquitto::start(dir.path());
    let (_ca, server) = localhost_pki(dir.path());
    let (port, admin) = (free_port(), free_port());
    let mut moat = Moat::start(
        dir.path(),
        &config_yaml(
            Some(admin),
            &[listener_yaml(
                "mqtts",
                port,
                broker.port,
                &[&server],
                "",
                "",
            )],
        ),
        Some(admin),
    );
    let config = moat.config.to_str().unwrap().to_string();
    let out = moat_cmd(&["healthcheck", "--config", &config]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "healthy");
    let url = format!("http://127.0.0.1:{admin}/readyz");
    assert_eq!(moat_cmd(&["healthcheck", "--url", &url]).code, Some(0));
    moat.signal("TERM");
    assert!(moat.wait_exit(std::time::Duration::from_secs(10)).is_some());
    let out = moat_cmd(&["healthcheck", "--config", &config]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("unhealthy: cannot connect"),
        "{}",
        out.stderr
    );
    let out = moat_cmd(&["healthcheck", "--url", "https://example.com"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}
