//! Per-device rate limits (`mqtt.limits`), against a real Mosquitto and
//! real paho-mqtt clients: a publisher over its rate is slowed to it, not
//! dropped, while another device goes at full speed; a device that
//! reconnects too often is refused at CONNECT.

use std::time::{Duration, Instant};

use moat_testkit::*;

fn gateway(limits: &str) -> Running {
    let mut yaml = String::from("mqtt:\n  limits:\n");
    for line in limits.lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    Gateway::new()
        .client_auth("required")
        .listener_yaml(&yaml)
        .start()
}

fn pubacks(p: &PahoSession) -> usize {
    p.events()
        .iter()
        .filter(|e| e.starts_with(r#"{"puback""#))
        .count()
}

#[test]
fn a_publisher_over_its_rate_is_slowed_to_it_and_others_are_not() {
    let s = gateway("publish_rate: 20\npublish_burst: 1");
    let dir = s.path().to_path_buf();
    let (a, b) = (
        s.devices()
            .issue(&dir, "fast", &Issue::client("fast-device")),
        s.devices()
            .issue(&dir, "calm", &Issue::client("calm-device")),
    );
    let ca = &s.ca().cert;
    let mut fast = PahoSession::connect(s.port, ca, (&a.cert, &a.key), "fast", true);
    let mut calm = PahoSession::connect(s.port, ca, (&b.cert, &b.key), "calm", true);
    const N: usize = 60;
    for i in 0..N {
        fast.send(&format!("publish t/fast m{i}"));
    }
    // Meanwhile the other device publishes a few: its own bucket, so it
    // does not wait behind the fast one's backlog.
    let started = Instant::now();
    for i in 0..5 {
        calm.send(&format!("publish t/calm c{i}"));
    }
    assert!(
        wait_until(Duration::from_secs(2), || pubacks(&calm) == 5),
        "the calm device was held up: {:?}",
        calm.events()
    );
    let calm_took = started.elapsed();
    // The fast device's acknowledgements come at the configured rate.
    let mut first = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let n = pubacks(&fast);
        if n >= 1 && first.is_none() {
            first = Some(Instant::now());
        }
        n == N
    }));
    let span = first.expect("a first puback").elapsed().as_secs_f64();
    let rate = (N - 1) as f64 / span;
    assert!((18.0..=22.0).contains(&rate), "{rate:.1} messages a second");
    assert!(calm_took < Duration::from_millis(1500), "{calm_took:?}");
    // Slowed, not dropped: every message was acknowledged as delivered.
    assert!(fast
        .events()
        .iter()
        .filter(|e| e.starts_with(r#"{"puback""#))
        .all(|e| e == r#"{"puback": 0}"# || e == r#"{"puback": 16}"#));
    assert!(
        s.moat
            .metric("moat_mqtt_throttled_total", "listener=\"mqtts\"")
            >= 1.0
    );
    assert!(
        s.moat
            .metric("moat_mqtt_throttle_seconds_total", "listener=\"mqtts\"")
            >= 1.5
    );
}

#[test]
fn a_device_over_its_rate_for_too_long_is_disconnected() {
    let s = gateway("publish_rate: 10\npublish_burst: 1\ndisconnect_after: 1s");
    let dir = s.path().to_path_buf();
    let d = s
        .devices()
        .issue(&dir, "flood", &Issue::client("flood-device"));
    let mut p = PahoSession::connect(s.port, &s.ca().cert, (&d.cert, &d.key), "flood", true);
    for i in 0..100 {
        p.send(&format!("publish t/flood m{i}"));
    }
    // DISCONNECT 0x96 "message rate too high".
    p.expect(r#"{"disconnect": 150}"#);
    assert_eq!(
        s.moat.metric_reaching(
            "moat_mqtt_sessions_closed_total",
            "reason=\"rate_exceeded\"",
            1.0
        ),
        1.0
    );
}

#[test]
fn a_device_that_reconnects_too_often_is_refused_at_connect() {
    let s = gateway("connections_per_minute: 3");
    let dir = s.path().to_path_buf();
    let d = s
        .devices()
        .issue(&dir, "loop", &Issue::client("loop-device"));
    let other = s
        .devices()
        .issue(&dir, "other", &Issue::client("other-device"));
    let connack = |device: &CertFiles, id: &str| {
        let cfg = rustls_client(
            &s.ca().cert,
            Some((device.cert.as_path(), device.key.as_path())),
        );
        let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("TLS");
        c.write_all(&mqtt_connect_v311(id)).expect("CONNECT");
        c.read_exact(4).expect("CONNACK")[3]
    };
    for i in 0..3 {
        assert_eq!(connack(&d, &format!("loop-{i}")), 0);
    }
    // The fourth in the minute: CONNACK "server unavailable" (MQTT 3.1.1
    // has no "connection rate exceeded"); another device is not affected.
    assert_eq!(connack(&d, "loop-3"), 3);
    assert_eq!(connack(&other, "other-0"), 0);
    assert_eq!(
        s.moat.metric(
            "moat_mqtt_connect_rejected_total",
            "reason=\"connection_rate\""
        ),
        1.0
    );
}
