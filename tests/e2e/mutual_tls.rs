//! Mutual TLS: devices with a certificate from the configured CA get in and
//! are logged with their identity; devices without one, or with one from
//! another CA, fail the handshake with the right alert and a counted reason.

use std::time::Duration;

use moat_testkit::*;

/// moat in front of a broker, asking for device certificates in `mode`.
fn setup(mode: &str) -> Running {
    Gateway::new()
        .ca_named("ca", "Server CA")
        .client_auth(mode)
        .start()
}

/// A CA moat does not trust.
fn stranger(s: &Running) -> Ca {
    Ca::new(s.path(), "stranger-ca", "Stranger CA")
}

#[test]
fn required_client_certificate_is_accepted_and_identity_logged() {
    let s = setup("required");
    let device = s
        .devices()
        .issue(s.dir.path(), "device-1", &Issue::client("device-1"));
    let tls = s.device_tls(&device);
    let got = round_trip(s.dir.path(), s.port, Some(&tls), s.broker().port, None);
    assert!(got.starts_with("hello-"), "{got}");
    let logs = s.moat.logs();
    assert!(logs.contains("client authenticated"), "{logs}");
    assert!(logs.contains("client.subject=CN=device-1"), "{logs}");
    assert!(
        logs.contains(&format!("client.sha256={}", device.sha256())),
        "{logs}"
    );
}

#[test]
fn missing_client_certificate_is_refused_with_certificate_required() {
    let s = setup("required");
    let out = mosquitto_pub("localhost", s.port, Some(&Tls::ca(&s.ca().cert)), "t", "m");
    assert!(
        !out.status.success(),
        "publish without a certificate must fail"
    );
    // openssl shows the alert the server sent (TLS 1.3: certificate_required).
    let text = s_client_alert(s.port, &s.ca().cert, None);
    assert!(text.contains("alert certificate required"), "{text}");
    assert!(s
        .moat
        .wait_for_log("reason=\"no_client_certificate\"", Duration::from_secs(5)));
    assert!(
        s.moat.metric(
            "moat_tls_handshakes_total",
            "reason=\"no_client_certificate\""
        ) >= 2.0
    );
    assert_eq!(
        s.broker().logs().matches("New client connected").count(),
        0,
        "nothing must reach the broker"
    );
}

#[test]
fn certificate_from_another_ca_is_refused_with_unknown_ca() {
    let s = setup("required");
    let intruder = stranger(&s).issue(s.dir.path(), "intruder", &Issue::client("device-1"));
    let tls = s.device_tls(&intruder);
    let out = mosquitto_pub("localhost", s.port, Some(&tls), "t", "m");
    assert!(
        !out.status.success(),
        "publish with a foreign certificate must fail"
    );
    let text = s_client_alert(s.port, &s.ca().cert, Some(&intruder));
    assert!(text.contains("alert unknown ca"), "{text}");
    assert!(
        s.moat.metric(
            "moat_tls_handshakes_total",
            "reason=\"bad_client_certificate\""
        ) >= 2.0
    );
    assert_eq!(s.broker().logs().matches("New client connected").count(), 0);
}

#[test]
fn optional_mode_admits_anonymous_devices_but_not_foreign_certificates() {
    let s = setup("optional");
    let got = round_trip(
        s.dir.path(),
        s.port,
        Some(&Tls::ca(&s.ca().cert)),
        s.broker().port,
        None,
    );
    assert!(got.starts_with("hello-"), "{got}");
    assert!(s.moat.logs().contains("client connected"));

    let device = s
        .devices()
        .issue(s.dir.path(), "device-2", &Issue::client("device-2"));
    let tls = s.device_tls(&device);
    let out = mosquitto_pub("localhost", s.port, Some(&tls), "t", "m");
    assert!(out.status.success(), "{out:?}");
    assert!(s
        .moat
        .wait_for_log("client.subject=CN=device-2", Duration::from_secs(5)));

    let intruder = stranger(&s).issue(s.dir.path(), "intruder", &Issue::client("x"));
    let tls = s.device_tls(&intruder);
    let out = mosquitto_pub("localhost", s.port, Some(&tls), "t", "m");
    assert!(
        !out.status.success(),
        "a certificate that does not verify is refused even in optional mode"
    );
}
