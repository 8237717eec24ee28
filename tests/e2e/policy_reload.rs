//! The configuration file reloads: an allow-list edit closes the live
//! sessions it refuses and no other, an ACL edit applies to the sessions
//! that connect after it and to the live ones from their next packet
//! (closing those that hold a subscription it takes away), and a file
//! that is bad, or that changes what
//! needs a restart, is refused naming the line or the field while the
//! previous configuration stays in service.

use std::time::Duration;

use moat_testkit::*;

/// Edits `s`'s moat.yaml (replacing the first `from` with `to`, which
/// must be there) atomically, as an editor or a config manager would.
fn edit(s: &Running, from: &str, to: &str) {
    edit_n(s, from, to, 1);
}

/// [`edit`], replacing the first `n` of `from`.
fn edit_n(s: &Running, from: &str, to: &str, n: usize) {
    let path = s.dir.join("moat.yaml");
    let text = std::fs::read_to_string(&path).expect("read moat.yaml");
    assert!(
        text.matches(from).count() >= n,
        "{n} of {from:?} not in:\n{text}"
    );
    let tmp = s.dir.join("moat.yaml.new");
    std::fs::write(&tmp, text.replacen(from, to, n)).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
}

/// moat with client certificates from `devices`, `allow` rules under
/// `client_auth` and `extra` under the listener.
fn start(dir: TestDir, devices: &OpensslCa, allow: &str, extra: &str) -> Running {
    let client_auth = format!(
        "client_auth:\n  mode: required\n  ca: {}\n{allow}",
        devices.cert.display()
    );
    Gateway::new()
        .in_dir(dir)
        .ca_named("server-ca", "Server CA")
        .tls_yaml(&client_auth)
        .listener_yaml(extra)
        .start()
}

/// [`start`] with no `allow` rules and one device (`CN=device-1`), which
/// it returns.
fn start_with_a_device(extra: &str) -> (Running, CertFiles) {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let device = devices.issue_client(dir.path(), "d", "/CN=device-1", None);
    (start(dir, &devices, "", extra), device)
}

/// An ACL that allows every publish and subscription.
const OPEN_ACL: &str = "mqtt:\n  acl:\n    - publish: [\"#\"]\n      subscribe: [\"#\"]";

/// A publish by `device` on `plant/valve` (which the edited ACL no longer
/// allows) is denied: the listener's first denial.
fn assert_plant_publish_denied(s: &Running, device: &CertFiles) {
    assert!(s.publish_as(device, "plant/valve", "open"));
    assert_eq!(
        s.moat
            .metric_reaching("moat_mqtt_publish_denied_total", "listener=\"mqtts\"", 1.0),
        1.0
    );
}

#[test]
fn an_allow_list_edit_closes_only_the_live_sessions_it_refuses() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let sensor = devices.issue_client(dir.path(), "sensor", "/CN=sensor-1", None);
    let camera = devices.issue_client(dir.path(), "camera", "/CN=camera-1", None);
    let allow = "  allow:\n    - common_name: \"sensor-*\"\n    - common_name: \"camera-*\"\n";
    let s = start(dir, &devices, allow, "");
    let sensor_sub = s.hold(&sensor, "sensor-sub");
    let camera_sub = s.hold(&camera, "camera-sub");
    s.until_all_receive(&sensor, &[&sensor_sub, &camera_sub], "ready");

    edit(&s, "\n          - common_name: \"camera-*\"", "");
    s.moat.signal("HUP");
    assert!(
        s.moat
            .wait_for_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        s.moat.logs()
    );
    assert_eq!(
        s.moat.metric_reaching(
            "moat_connections_closed_total",
            "reason=\"not_trusted\"",
            1.0
        ),
        1.0
    );
    let logs = s.moat.logs();
    let closed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("session closed by moat"))
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].contains("CN=camera-1"), "{closed:?}");
    // New camera connections are refused; the sensor goes on receiving.
    assert!(!s.publish_as(&camera, "t", "camera-again"));
    s.until_all_receive(&sensor, &[&sensor_sub], "after-edit");
    assert!(!camera_sub.output().contains("after-edit"));
    assert_eq!(s.moat.metric("moat_config_reload_pending", ""), 0.0);
}

#[test]
fn an_acl_edit_applies_to_the_sessions_that_connect_after_it() {
    let (s, device) = start_with_a_device(OPEN_ACL);
    assert!(s.publish_as(&device, "plant/valve", "open"));
    assert_eq!(s.moat.metric("moat_mqtt_publish_denied_total", ""), 0.0);

    edit(&s, "- publish: [\"#\"]", "- publish: [\"telemetry/#\"]");
    let admin = s.admin.expect("admin");
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200, "{body}");
    assert!(
        s.moat.logs().contains("configuration reloaded"),
        "{}",
        s.moat.logs()
    );
    // The same publish is now denied; an allowed one passes.
    assert_plant_publish_denied(&s, &device);
    assert!(s.publish_as(&device, "telemetry/t", "21.5"));
    assert_eq!(
        s.moat
            .metric("moat_mqtt_publish_denied_total", "listener=\"mqtts\""),
        1.0
    );
}

#[test]
fn an_acl_edit_reaches_live_sessions_and_closes_those_it_takes_a_subscription_from() {
    let (s, device) = start_with_a_device(OPEN_ACL);
    let (ca, dev) = (&s.ca().cert, (device.cert.as_path(), device.key.as_path()));
    // One session holds a subscription the edit takes away; the other
    // holds one it keeps.
    let mut plant = PahoSession::connect(s.port, ca, dev, "plant-watcher", true);
    plant.ask("subscribe plant/#", r#"{"suback": [1]}"#);
    let mut telemetry = PahoSession::connect(s.port, ca, dev, "telemetry-watcher", true);
    telemetry.ask("subscribe telemetry/#", r#"{"suback": [1]}"#);
    // A filter subscribed and then unsubscribed is not held any more.
    telemetry.ask("subscribe plant/old", r#"{"suback": [1]}"#);
    telemetry.ask("unsubscribe plant/old", r#"{"unsuback": true}"#);

    // Publish and subscribe narrowed to telemetry/#, in one write.
    edit_n(&s, "[\"#\"]", "[\"telemetry/#\"]", 2);
    let admin = s.admin.expect("admin");
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200, "{body}");

    // The session that holds plant/# gets DISCONNECT "not authorized"
    // (0x87), within 2 s, and is counted and logged once.
    assert!(
        plant.saw_within(r#"{"disconnect": 135}"#, Duration::from_secs(2)),
        "{:?}\n{}",
        plant.events(),
        s.moat.logs()
    );
    assert_eq!(
        s.moat.metric_reaching(
            "moat_connections_closed_total",
            "reason=\"subscription_denied\"",
            1.0
        ),
        1.0
    );
    let line = s
        .moat
        .log_line("session closed by moat", Duration::from_secs(2));
    assert!(line.contains("plant-watcher"), "{line}");
    assert!(s
        .moat
        .logs()
        .contains("the reloaded topic ACL no longer allows a subscription"));

    // The other session stays, and the new ACL applies to its next
    // packets: a SUBSCRIBE and a PUBLISH now outside it are refused, one
    // inside it goes through.
    telemetry.ask("subscribe plant/x", r#"{"suback": [135]}"#);
    telemetry.ask("publish plant/valve open", r#"{"puback": 135}"#);
    telemetry.ask("publish telemetry/t 21.5", r#"{"puback": 0}"#);
    telemetry.expect(r#"{"message": ["telemetry/t", "21.5"]}"#);
    assert!(
        !telemetry.events().iter().any(|e| e.contains("disconnect")),
        "{:?}",
        telemetry.events()
    );
    assert_eq!(
        s.moat.metric(
            "moat_connections_closed_total",
            "reason=\"subscription_denied\""
        ),
        1.0
    );
}

#[test]
fn a_bad_file_or_a_fixed_setting_is_refused_and_the_old_configuration_stays() {
    let (s, device) = start_with_a_device("");
    let admin = s.admin.expect("admin");

    // An unknown key: refused with its line, counted, pending.
    edit(
        &s,
        "    backend: ",
        "    backend_timeout: 5s\n    backend: ",
    );
    s.moat.signal("HUP");
    let line = s
        .moat
        .log_line("configuration reload failed", Duration::from_secs(5));
    assert!(
        line.contains("backend_timeout") && line.contains("line"),
        "{line}"
    );
    assert_eq!(s.moat.metric("moat_config_reload_pending", ""), 1.0);
    assert!(s.moat.metric("moat_config_reload_failures_total", "") >= 1.0);
    assert!(s.publish_as(&device, "t", "still serving"));
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("\"name\": \"configuration\""), "{body}");
    edit(&s, "    backend_timeout: 5s\n", "");

    // A new listen address needs a restart: refused, naming the field.
    let port = s.port.to_string();
    let moved = free_port().to_string();
    edit(&s, &format!(":{port}\n"), &format!(":{moved}\n"));
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("listen") && body.contains("restart"),
        "{body}"
    );
    assert!(s.publish_as(&device, "t", "on the old port"));

    // Put back: accepted, nothing pending.
    edit(&s, &format!(":{moved}\n"), &format!(":{port}\n"));
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST");
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.moat.metric("moat_config_reload_pending", ""), 0.0);
}

#[test]
fn a_saved_moat_yaml_is_applied_without_a_signal() {
    let (s, device) = start_with_a_device("mqtt:\n  acl:\n    - publish: [\"#\"]");
    // Saved the way editors and config managers save: a rename.
    edit(&s, "- publish: [\"#\"]", "- publish: [\"telemetry/#\"]");
    assert!(
        s.moat
            .wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        s.moat.logs()
    );
    assert_plant_publish_denied(&s, &device);
}
