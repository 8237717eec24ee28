//! MQTT awareness, with paho-mqtt devices at 3.1.1 and 5 through moat to a
//! real Mosquitto. What reached the broker is checked with a second
//! subscriber connected to the broker directly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use moat_testkit::*;

/// moat with an MQTT-aware listener (`mqtt` its settings) that requires
/// device certificates, in front of a broker (`broker_extra` its extra
/// configuration) or of `backend_override` instead.
fn setup_with(broker_extra: &str, mqtt: &str, backend_override: Option<u16>) -> Running {
    let g = Gateway::new()
        .broker_conf(broker_extra)
        .ca_named("server-ca", "Server CA")
        .client_auth("required")
        .mqtt_aware(mqtt);
    match backend_override {
        Some(port) => g.backend(port),
        None => g,
    }
    .start()
}

const ACL: &str = "acl:
  - publish: [\"devices/%i/#\"]
    subscribe: [\"commands/%i/+\", \"broadcast/#\"]";

/// What the MQTT tests ask of a running gateway.
trait Devices: std::ops::Deref<Target = Prepared> {
    fn device(&self, cn: &str) -> CertFiles {
        self.devices()
            .issue(self.dir.path(), cn, &Issue::client(cn))
    }

    /// paho (`tests/python/mqtt_device.py`) as `device` (or none) at MQTT
    /// `version`, as `client_id` with `username`, doing `action`.
    fn paho(
        &self,
        device: Option<&CertFiles>,
        version: &str,
        client_id: &str,
        username: Option<&str>,
        action: &[&str],
    ) -> Command {
        require("python3", "python3");
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg("python3")
            .arg(workspace_root().join("tests/python/mqtt_device.py"))
            .arg(self.port.to_string())
            .arg(&self.ca().cert);
        match device {
            Some(d) => cmd.arg(&d.cert).arg(&d.key),
            None => cmd.arg("-").arg("-"),
        };
        cmd.arg(version)
            .arg(client_id)
            .arg(username.unwrap_or("-"))
            .args(action);
        cmd
    }

    /// Publishes one QoS 1 message of `size` bytes on `topic` as
    /// `device` (no username); the paho result.
    fn publish(
        &self,
        device: &CertFiles,
        version: &str,
        client_id: &str,
        size: &str,
        topic: &str,
    ) -> serde_json::Value {
        run(self.paho(
            Some(device),
            version,
            client_id,
            None,
            &["publish", "1", size, topic],
        ))
    }

    /// A subscriber on the broker itself, for what really arrived.
    fn watch_broker(&self, name: &str) -> Sub {
        let sub = Sub::watch(self.dir.path(), name, self.broker().port, "#");
        assert!(wait_until(Duration::from_secs(10), || self
            .broker()
            .logs()
            .contains(name)));
        sub
    }
}

impl Devices for Running {}

/// Runs a paho action ([`Devices::paho`]) to completion; its JSON result.
fn run(mut paho: Command) -> serde_json::Value {
    let out = paho.output().expect("run paho (pip install paho-mqtt)");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A rustls client that trusts `s`'s server CA and presents `device`.
fn raw_client(s: &Running, device: &CertFiles) -> std::sync::Arc<rustls::ClientConfig> {
    rustls_client(&s.ca().cert, Some((&device.cert, &device.key)))
}

/// CONNECTs moat refused for `reason`.
fn connects_rejected(s: &Running, reason: &str) -> f64 {
    s.moat.metric(
        "moat_mqtt_connect_rejected_total",
        &format!("reason=\"{reason}\""),
    )
}

/// Sessions moat closed for `reason`.
fn sessions_closed(s: &Running, reason: &str) -> f64 {
    s.moat.metric(
        "moat_mqtt_sessions_closed_total",
        &format!("reason=\"{reason}\""),
    )
}

fn broker_topics(watch: &Sub) -> Vec<String> {
    watch
        .output()
        .lines()
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

fn publishes_are_filtered(version: &str) {
    let s = setup_with("", ACL, None);
    let watch = s.watch_broker(&format!("watch-{version}"));
    let d = s.device("sensor-7");
    let v = run(s.paho(
        Some(&d),
        version,
        "sensor-7",
        None,
        &[
            "publish",
            "1",
            "10",
            "devices/sensor-7/temp",
            "devices/sensor-8/temp",
            "secrets/x",
        ],
    ));
    assert_eq!(v["connack"]["value"], 0, "{v}");
    assert!(
        v["disconnect"].is_null(),
        "denials must not cost the connection: {v}"
    );
    // Every QoS 1 publish was acknowledged, the denied ones with 0x87 in v5.
    let acks = v["acks"].as_object().expect("acks");
    assert_eq!(acks.len(), 3, "{v}");
    let codes: Vec<u64> = v["mids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| acks[&m.to_string()]["value"].as_u64().unwrap())
        .collect();
    if version == "5" {
        assert_eq!(codes, [0, 0x87, 0x87], "{v}");
    } else {
        assert_eq!(codes, [0, 0, 0], "{v}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        broker_topics(&watch),
        ["devices/sensor-7/temp"],
        "only the allowed publish reached the broker"
    );
    assert_eq!(s.moat.metric("moat_mqtt_publish_denied_total", ""), 2.0);
    let proto = if version == "5" { "5" } else { "3.1.1" };
    assert_eq!(
        s.moat.metric(
            "moat_mqtt_connections_total",
            &format!("protocol=\"{proto}\"")
        ),
        1.0
    );
}

#[test]
fn publishes_are_filtered_by_the_acl_v311() {
    publishes_are_filtered("311");
}

#[test]
fn publishes_are_filtered_by_the_acl_v5() {
    publishes_are_filtered("5");
}

fn subscriptions_are_filtered(version: &str) {
    let s = setup_with("", ACL, None);
    let d = s.device("sensor-7");
    let mut child = s
        .paho(
            Some(&d),
            version,
            "sensor-7",
            None,
            &[
                "subscribe",
                "3",
                "commands/sensor-7/+",
                "secrets/#",
                "broadcast/#",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("paho");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().expect("line").expect("read")).expect("JSON");
    let denied = if version == "5" { 0x87 } else { 0x80 };
    assert_eq!(
        first["subscribed"],
        serde_json::json!([1, denied, 1]),
        "{first}"
    );
    for topic in ["commands/sensor-7/reboot", "secrets/key", "broadcast/fw"] {
        assert!(
            mosquitto_pub("localhost", s.broker().port, None, topic, "m")
                .status
                .success()
        );
    }
    let last: serde_json::Value =
        serde_json::from_str(&lines.last().expect("line").expect("read")).expect("JSON");
    let _ = child.wait();
    let topics: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["commands/sensor-7/reboot", "broadcast/fw"],
        "the denied filter never reached the broker: {last}"
    );
    assert_eq!(s.moat.metric("moat_mqtt_subscribe_denied_total", ""), 1.0);
}

#[test]
fn subscriptions_are_filtered_and_the_suback_merged_v311() {
    subscriptions_are_filtered("311");
}

#[test]
fn subscriptions_are_filtered_and_the_suback_merged_v5() {
    subscriptions_are_filtered("5");
}

#[test]
fn client_id_mismatch_gets_not_authorized() {
    let s = setup_with("", "client_id: equal_to_identity", None);
    let d = s.device("sensor-7");
    // Exact bytes at 3.1.1 with a raw client.
    let cfg = raw_client(&s, &d);
    let mut c = RustlsConn::connect(s.port, "localhost", cfg.clone()).expect("handshake");
    c.write_all(&mqtt_connect_v311("sensor-8"))
        .expect("CONNECT");
    assert_eq!(c.read_exact(4).expect("CONNACK"), [0x20, 0x02, 0x00, 0x05]);
    assert!(c.read_to_end().expect("then a clean close").is_empty());
    // paho at v5.
    let v = run(s.paho(Some(&d), "5", "sensor-8", None, &["connect"]));
    assert_eq!(v["connack"]["value"], 0x87, "{v}");
    // The matching id is accepted.
    let v = run(s.paho(Some(&d), "5", "sensor-7", None, &["connect"]));
    assert_eq!(v["connack"]["value"], 0, "{v}");
    assert_eq!(connects_rejected(&s, "client_id_mismatch"), 2.0);
    assert!(
        !s.broker().logs().contains("sensor-8"),
        "a refused CONNECT never reaches the broker"
    );
}

#[test]
fn username_rewrite_lets_a_username_keyed_broker_acl_work() {
    // Mosquitto's own acl_file is keyed by username: each device may write
    // only under its own name.
    let dir_acl = TestDir::new();
    let acl = dir_acl.write(
        "mosquitto.acl",
        "pattern write devices/%u/#\npattern read #\n",
    );
    let extra = format!("acl_file {}\n", acl.display());
    for (policy, arrives) in [("identity", true), ("passthrough", false)] {
        let s = setup_with(&extra, &format!("username: {policy}"), None);
        let watch = s.watch_broker(&format!("watch-{policy}"));
        let d = s.device("sensor-7");
        // The device claims another username (with a password).
        let v = run(s.paho(
            Some(&d),
            "311",
            "dev-a",
            Some("admin"),
            &["publish", "1", "5", "devices/sensor-7/temp"],
        ));
        assert_eq!(v["connack"]["value"], 0, "{v}");
        std::thread::sleep(Duration::from_millis(500));
        let got = broker_topics(&watch).contains(&"devices/sensor-7/temp".to_string());
        assert_eq!(
            got,
            arrives,
            "username {policy}: {:?}",
            broker_topics(&watch)
        );
    }
}

#[test]
fn backend_down_gets_server_unavailable() {
    let s = setup_with("", "", Some(free_port()));
    let d = s.device("sensor-7");
    let cfg = raw_client(&s, &d);
    let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("handshake");
    c.write_all(&mqtt_connect_v311("sensor-7"))
        .expect("CONNECT");
    assert_eq!(
        c.read_exact(4)
            .unwrap_or_else(|e| panic!("CONNACK: {e}\n{}", s.moat.logs())),
        [0x20, 0x02, 0x00, 0x03]
    );
    let v = run(s.paho(Some(&d), "5", "sensor-7", None, &["connect"]));
    assert_eq!(v["connack"]["value"], 0x88, "{v}");
    assert_eq!(connects_rejected(&s, "backend_unavailable"), 2.0);
}

#[test]
fn oversize_packets_are_refused() {
    let s = setup_with("", "max_packet_size: 1024", None);
    let watch = s.watch_broker("watch-size");
    let d = s.device("sensor-7");
    let v = s.publish(&d, "5", "big-5", "2000", "devices/sensor-7/big");
    assert_eq!(
        v["disconnect"]["value"], 0x95,
        "v5 gets DISCONNECT 0x95: {v}"
    );
    let v = s.publish(&d, "311", "big-311", "2000", "devices/sensor-7/big");
    assert!(!v["disconnect"].is_null(), "v3 is closed: {v}");
    // A packet under the limit still passes.
    let v = s.publish(&d, "311", "small", "100", "devices/sensor-7/small");
    assert!(v["disconnect"].is_null(), "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(broker_topics(&watch), ["devices/sensor-7/small"]);
    assert_eq!(sessions_closed(&s, "packet_too_large"), 2.0);
}

#[test]
fn the_first_packet_must_be_connect_in_time() {
    let s = setup_with("", "connect_timeout: 1s", None);
    let d = s.device("sensor-7");
    let cfg = raw_client(&s, &d);
    // A PINGREQ first.
    let mut c = RustlsConn::connect(s.port, "localhost", cfg.clone()).expect("handshake");
    c.write_all(&[0xc0, 0x00]).expect("PINGREQ");
    assert!(c.read_to_end().map(|b| b.is_empty()).unwrap_or(true));
    // Nothing at all.
    let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("handshake");
    let start = std::time::Instant::now();
    assert!(c.read_to_end().map(|b| b.is_empty()).unwrap_or(true));
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(connects_rejected(&s, "not_connect"), 1.0);
    assert_eq!(connects_rejected(&s, "connect_timeout"), 1.0);
}

#[test]
fn denial_with_on_deny_disconnect_closes_the_session() {
    let s = setup_with("", &format!("on_deny: disconnect\n{ACL}"), None);
    let d = s.device("sensor-7");
    let v = s.publish(&d, "5", "sensor-7", "10", "secrets/x");
    assert_eq!(v["disconnect"]["value"], 0x87, "{v}");
    assert_eq!(sessions_closed(&s, "publish_denied"), 1.0);
}
