//! MQTT over WebSockets on the TLS port (issue 16), against real peers:
//! paho-mqtt's websockets transport with device certificates beside
//! `mosquitto_sub` on raw TLS on the same port, the topic ACL and the
//! allow-list and CRLs over WSS, and hand-driven clients for the bad
//! upgrade requests and bad frames, each answered and counted.

use std::time::Duration;

use moat_testkit::*;

/// moat (MQTT-aware, topic ACL on `t` and `sensors/#`, WebSockets on)
/// in front of a broker, with devices of `devices` and `allow` rules,
/// checking `crl`.
fn wss_gateway(dir: TestDir, devices: &OpensslCa, crl: &std::path::Path, allow: &str) -> Running {
    Gateway::new()
        .in_dir(dir)
        .ca_named("server-ca", "Server CA")
        .tls_yaml(&format!("{}\n{allow}", devices.client_auth_with_crl(crl)))
        .listener_yaml(
            "mqtt:\n  acl:\n    - publish: [\"t\", \"sensors/#\"]\n      subscribe: [\"t\", \"sensors/#\"]\nwebsocket:\n  path: /mqtt",
        )
        .start()
}

#[test]
fn paho_over_wss_and_mosquitto_on_raw_tls_share_one_port_and_one_acl() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let device = devices.issue_client(dir.path(), "d", "/CN=sensor-1", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = wss_gateway(dir, &devices, &crl, "");
    let raw = s.hold(&device, "raw-sub");
    let (ca, dev) = (&s.ca().cert, (device.cert.as_path(), device.key.as_path()));
    let mut ws = PahoSession::connect_ws(s.port, ca, dev, "ws-sensor", "/mqtt");
    ws.ask("subscribe t", r#"{"suback": [1]}"#);
    // The same ACL refusals as on raw TLS, over WSS.
    ws.ask("subscribe plant/#", r#"{"suback": [135]}"#);
    ws.ask("publish plant/valve open", r#"{"puback": 135}"#);
    // A WSS publish reaches the WSS subscriber and the raw-TLS one.
    ws.ask("publish t hello-from-wss", r#"{"puback": 0}"#);
    ws.expect(r#"{"message": ["t", "hello-from-wss"]}"#);
    assert!(
        wait_until(Duration::from_secs(5), || raw
            .output()
            .contains("hello-from-wss")),
        "raw-TLS subscriber: {:?}\n{}",
        raw.output(),
        s.moat.logs()
    );
    // And a raw-TLS publish reaches the WSS subscriber.
    assert!(s.publish_as(&device, "t", "hello-from-tls"));
    ws.expect(r#"{"message": ["t", "hello-from-tls"]}"#);
    assert!(
        s.moat.metric(
            "moat_connections_by_transport_total",
            "transport=\"websocket\""
        ) >= 1.0
    );
    assert!(
        s.moat
            .metric("moat_connections_by_transport_total", "transport=\"mqtt\"")
            >= 2.0
    );
    assert_eq!(
        s.moat
            .metric("moat_websocket_upgrades_total", "result=\"ok\""),
        1.0
    );
}

#[test]
fn over_wss_a_device_off_the_allow_list_is_refused_and_a_revoked_one_is_closed() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let sensor = devices.issue_client(dir.path(), "sensor", "/CN=sensor-1", None);
    let camera = devices.issue_client(dir.path(), "camera", "/CN=camera-1", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let allow = "  allow:\n    - common_name: \"sensor-*\"\n";
    let s = wss_gateway(dir, &devices, &crl, allow);
    let ca = &s.ca().cert;
    let refused = PahoSession::open(
        s.port,
        ca,
        (&camera.cert, &camera.key),
        ("ws-camera", true),
        Some("/mqtt"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || refused
            .events()
            .iter()
            .any(|e| e.contains("connect_error") || e.contains("disconnect"))),
        "{:?}",
        refused.events()
    );
    assert!(!refused.events().iter().any(|e| e == r#"{"connack": 0}"#));
    assert!(
        s.moat
            .metric("moat_client_auth_denied_total", "reason=\"not_allowed\"")
            >= 1.0
    );

    let mut ws = PahoSession::connect_ws(
        s.port,
        ca,
        (&sensor.cert, &sensor.key),
        "ws-sensor",
        "/mqtt",
    );
    ws.ask("subscribe t", r#"{"suback": [1]}"#);
    devices.revoke_and_publish(&sensor.cert, &crl);
    assert!(
        wait_until(Duration::from_secs(10), || ws
            .events()
            .iter()
            .any(|e| e.contains("disconnect"))),
        "the revoked WSS session stayed: {:?}\n{}",
        ws.events(),
        s.moat.logs()
    );
}

/// moat with WebSockets for `origins` on a listener that also negotiates
/// ALPN `mqtt` and `http/1.1`.
fn open_gateway(websocket: &str) -> Running {
    Gateway::new()
        .tls_yaml("alpn: [mqtt, http/1.1]")
        .listener_yaml(&format!("mqtt:\nwebsocket:\n{websocket}"))
        .start()
}

#[test]
fn bad_upgrade_requests_get_short_http_answers_and_alpn_picks_the_transport() {
    let s = open_gateway("  origins: [\"https://dash.example\"]");
    let ca = &s.ca().cert;
    let http = || rustls_client_alpn(ca, &["http/1.1"]);
    let dash = "Origin: https://dash.example";
    let cases: [(&str, String, u16); 4] = [
        (
            "not_upgrade",
            "GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            426,
        ),
        ("wrong_path", upgrade_request("/other", &[dash]), 404),
        (
            "bad_origin",
            upgrade_request("/mqtt", &["Origin: https://evil.example"]),
            403,
        ),
        (
            "bad_subprotocol",
            upgrade_request("/mqtt", &[dash, "Sec-WebSocket-Protocol: chat"]),
            400,
        ),
    ];
    for (result, request, status) in &cases {
        let (got, text) = http_exchange(s.port, http(), request.as_bytes());
        assert_eq!(got, *status, "{result}: {text}");
        assert_eq!(
            s.moat.metric(
                "moat_websocket_upgrades_total",
                &format!("result=\"{result}\"")
            ),
            1.0,
            "{result}"
        );
    }
    // ALPN decides before any byte: a CONNECT under http/1.1 is not MQTT.
    let mut c = RustlsConn::connect(s.port, "localhost", http()).expect("TLS");
    c.write_all(&mqtt_connect_v311("confused")).expect("send");
    let (answer, _) = c.read_until_close();
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 400);
    assert_eq!(
        s.moat
            .metric("moat_websocket_upgrades_total", "result=\"broken\""),
        1.0
    );
    // Raw MQTT on the same port, by ALPN and without it, is untouched.
    mqtt_session(s.port, rustls_client_alpn(ca, &["mqtt"]), "by-alpn").expect("MQTT by ALPN");
    mqtt_session(s.port, rustls_client(ca, None), "sniffed").expect("MQTT without ALPN");
    // An allowed Origin gets its session.
    let mut c = RustlsConn::connect(s.port, "localhost", http()).expect("TLS");
    c.write_all(upgrade_request("/mqtt", &[dash]).as_bytes())
        .expect("upgrade");
    let head = c.read_exact(12).expect("answer");
    assert_eq!(status_of(&String::from_utf8_lossy(&head)), 101);
}

/// Sends `frame` on a new WebSocket session and checks that moat answers
/// with a close frame carrying `code`, and counts `reason`.
fn closes_with(s: &Running, frame: &[u8], code: u16, reason: &str) {
    let ca = &s.ca().cert;
    let mut c = ws_session(s.port, rustls_client(ca, None), "/mqtt");
    c.write_all(frame).expect("send the frame");
    assert_eq!(
        read_frame(&mut c),
        (0x88, code.to_be_bytes().to_vec()),
        "{reason}"
    );
    assert_eq!(
        s.moat.metric_reaching(
            "moat_websocket_closed_total",
            &format!("reason=\"{reason}\""),
            1.0
        ),
        1.0,
        "{reason}"
    );
}

#[test]
fn bad_frames_end_with_their_close_codes_and_good_ones_carry_mqtt() {
    let s = open_gateway("  max_frame_size: 64");
    closes_with(&s, &client_frame(0x1, b"hello", true), 1003, "text_frame");
    closes_with(
        &s,
        &client_frame(0x2, &mqtt_connect_v311("bare"), false),
        1002,
        "unmasked",
    );
    closes_with(
        &s,
        &client_frame(0x2, &[0; 100], true),
        1009,
        "frame_too_big",
    );
    closes_with(&s, &client_frame(0x8, &[3], true), 1002, "bad_close");

    // A ping is answered, and a CONNECT split across two frames (the
    // second a continuation) gets its CONNACK in a binary frame.
    let mut c = ws_session(s.port, rustls_client(&s.ca().cert, None), "/mqtt");
    c.write_all(&client_frame(0x9, b"are you there", true))
        .expect("ping");
    assert_eq!(read_frame(&mut c), (0x8a, b"are you there".to_vec()));
    let connect = mqtt_connect_v311("split-device");
    let (a, b) = connect.split_at(5);
    let mut first = client_frame(0x2, a, true);
    first[0] &= 0x7f; // not final
    c.write_all(&first).expect("first part");
    c.write_all(&client_frame(0x0, b, true))
        .expect("continuation");
    assert_eq!(read_frame(&mut c), (0x82, vec![0x20, 0x02, 0x00, 0x00]));
    // A close is answered with a close and the session ends cleanly.
    c.write_all(&client_frame(0x8, &1000u16.to_be_bytes(), true))
        .expect("close");
    assert_eq!(read_frame(&mut c), (0x88, 1000u16.to_be_bytes().to_vec()));
}
