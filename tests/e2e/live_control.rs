//! Revocation and control that reach live sessions: a reloaded CRL closes
//! the revoked device's open session and no other, a reload that would
//! close every session is refused until forced, sessions end at their
//! certificate's notAfter and at max_connection_lifetime, and the admin API
//! lists and closes sessions behind its bearer token.

use std::time::{Duration, Instant};

use moat_testkit::*;

/// moat in front of a broker, checking devices of `devices` against
/// `crl`, with `extra` under the listener and `admin` under `admin:`.
fn start(
    dir: TestDir,
    devices: &OpensslCa,
    crl: &std::path::Path,
    extra: &str,
    admin: &str,
) -> Running {
    Gateway::new()
        .in_dir(dir)
        .ca_named("server-ca", "Server CA")
        .tls_yaml(&devices.client_auth_with_crl(crl))
        .listener_yaml(extra)
        .admin_yaml(admin)
        .start()
}

#[test]
fn a_crl_that_revokes_one_device_closes_only_its_live_session() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let good = devices.issue_client(dir.path(), "good", "/CN=good-device", None);
    let stolen = devices.issue_client(dir.path(), "stolen", "/CN=stolen-device", None);
    let publisher = devices.issue_client(dir.path(), "publisher", "/CN=publisher", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = start(dir, &devices, &crl, "", "");
    let mut good_sub = s.hold(&good, "good-sub");
    let mut stolen_sub = s.hold(&stolen, "stolen-sub");
    s.until_all_receive(&publisher, &[&good_sub, &stolen_sub], "ready");

    // A steady stream across the revocation: the good device must see
    // every message of it.
    let stream: Vec<String> = (0..15).map(|i| format!("stream-{i}")).collect();
    std::thread::scope(|scope| {
        let s = &s;
        let publisher = &publisher;
        let stream = &stream;
        scope.spawn(move || {
            for m in stream {
                assert!(s.publish_as(publisher, "t", m), "publish {m}");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        devices.revoke_and_publish(&stolen.cert, &crl);
        assert!(
            s.moat.wait_for_log(
                "closing live sessions the reloaded client-auth state no longer accepts",
                Duration::from_secs(5)
            ),
            "{}",
            s.moat.logs()
        );
        let closed_at = Instant::now();
        // The revoked session is closed within 2 s of the reload.
        let mut ended = false;
        while closed_at.elapsed() < Duration::from_secs(2) {
            if s.moat.logs().contains("session closed by moat") {
                ended = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ended, "{}", s.moat.logs());
    });
    assert!(
        s.moat
            .metric_reaching("moat_connections_closed_total", "reason=\"revoked\"", 1.0)
            == 1.0
    );
    // The three live sessions (two held, perhaps a publisher) were checked.
    assert!(
        s.moat
            .metric("moat_sessions_rechecked_total", "listener=\"mqtts\"")
            >= 2.0
    );
    let logs = s.moat.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("session closed by moat"))
        .expect("the close line");
    assert!(line.contains("CN=stolen-device"), "{line}");
    assert!(line.contains("revoked"), "{line}");
    // The revoked device cannot come back: mosquitto_sub's retries are
    // refused at the handshake, so it stops receiving.
    assert!(s.publish_as(&publisher, "t", "after"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !stolen_sub.output().contains("after"),
        "{}",
        stolen_sub.output()
    );
    // The good device saw the whole stream, with no gap, and is still on.
    let out = good_sub.output();
    for m in &stream {
        assert!(out.contains(m.as_str()), "good device lost {m}: {out}");
    }
    assert!(out.contains("after"), "{out}");
    assert_eq!(good_sub.try_exit(), None, "the good device was closed");
    let _ = stolen_sub.try_exit();
}

#[test]
fn a_reload_that_would_close_every_session_is_refused_until_forced() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let a = devices.issue_client(dir.path(), "a", "/CN=device-a", None);
    let b = devices.issue_client(dir.path(), "b", "/CN=device-b", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = start(dir, &devices, &crl, "", "");
    let sub_a = s.hold(&a, "sub-a");
    let sub_b = s.hold(&b, "sub-b");
    s.until_all_receive(&a, &[&sub_a, &sub_b], "ready");

    // A CRL revoking every connected device: refused, both stay.
    devices.revoke(&a.cert);
    devices.revoke_and_publish(&b.cert, &crl);
    assert!(
        s.moat.wait_for_log(
            "would close all 2 live sessions (2 revoked)",
            Duration::from_secs(5)
        ),
        "{}",
        s.moat.logs()
    );
    assert!(s.moat.logs().contains("force=true"));
    assert_eq!(
        s.moat
            .metric_reaching("moat_certificate_reload_pending", "listener=\"mqtts\"", 1.0),
        1.0
    );
    let (code, body) = s.moat.get("/healthz");
    assert_eq!(code, 200, "{body}");
    // An explicit reload is refused too, and says how to force it.
    let admin = s.admin.expect("admin port");
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("would close all 2 live sessions"), "{body}");
    assert_eq!(
        s.moat
            .metric("moat_connections_closed_total", "reason=\"revoked\""),
        0.0
    );
    s.until_all_receive(&b, &[&sub_a, &sub_b], "still-here");
    // Without admin.token_file, the connections API is closed.
    let (code, body) = http_request(admin, "GET", "/connections").expect("GET");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("admin.token_file"), "{body}");
    let (code, _) = http_request(admin, "DELETE", "/connections/1").expect("DELETE");
    assert_eq!(code, 403);
    // Bad parameters are named, and change nothing.
    let (code, body) = http_request(admin, "POST", "/reload?force=yes").expect("POST");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("force=yes"), "{body}");

    // Forced: applied, and both sessions are closed.
    let (code, body) = http_request(admin, "POST", "/reload?force=true").expect("POST");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        s.moat
            .metric_reaching("moat_connections_closed_total", "reason=\"revoked\"", 2.0),
        2.0
    );
    assert!(
        s.moat.logs().contains("admin (forced)"),
        "{}",
        s.moat.logs()
    );
}

/// An MQTT 5 CONNECT with clean start, keep-alive 60 s and `client_id`.
fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = vec![
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00,
    ];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Connects `device` with MQTT 5 and reads the CONNACK.
fn mqtt5_session(s: &Running, device: &CertFiles, id: &str) -> RustlsConn {
    let cfg = rustls_client(&s.ca().cert, Some((&device.cert, &device.key)));
    let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("handshake");
    c.write_all(&connect_v5(id)).expect("CONNECT");
    let ack = c.read_exact(2).expect("CONNACK header");
    assert_eq!(ack[0], 0x20, "not a CONNACK: {ack:?}");
    let rest = c.read_exact(usize::from(ack[1])).expect("CONNACK body");
    assert_eq!(rest[1], 0x00, "CONNACK refused: {rest:?}");
    c
}

#[test]
fn a_session_ends_with_maximum_connect_time_at_max_connection_lifetime() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let device = devices.issue_client(dir.path(), "d", "/CN=long-lived", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = start(
        dir,
        &devices,
        &crl,
        "timeouts:\n  max_connection_lifetime: 2s\nmqtt:\n  client_id: any",
        "",
    );
    let started = Instant::now();
    let mut c = mqtt5_session(&s, &device, "long-lived");
    // The DISCONNECT: MQTT 5 reason 0xA0, maximum connect time.
    let disconnect = c.read_exact(3).expect("a DISCONNECT");
    assert_eq!(disconnect, [0xE0, 0x01, 0xA0]);
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(1700) && lived < Duration::from_secs(5),
        "closed after {lived:?}"
    );
    assert!(c.read_to_end().map(|b| b.is_empty()).unwrap_or(true));
    assert_eq!(
        s.moat.metric_reaching(
            "moat_connections_closed_total",
            "reason=\"max_lifetime\"",
            1.0
        ),
        1.0
    );
}

#[test]
fn a_session_ends_when_its_client_certificate_expires() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let device = devices.issue_client_expiring_in(dir.path(), "d", "/CN=short-lived", 4);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = start(dir, &devices, &crl, "mqtt:\n  client_id: any", "");
    let mut c = mqtt5_session(&s, &device, "short-lived");
    let disconnect = c.read_exact(3).expect("a DISCONNECT at notAfter");
    // Not authorized: the certificate no longer proves who it is.
    assert_eq!(disconnect, [0xE0, 0x01, 0x87]);
    assert_eq!(
        s.moat.metric_reaching(
            "moat_connections_closed_total",
            "reason=\"certificate_expired\"",
            1.0
        ),
        1.0
    );
    assert!(s.moat.logs().contains("CN=short-lived"));
}

const TOKEN: &str = "5f2b8c0e9a7d4c1b3e6f8a9d0c2b4e6f";

/// `GET`/`DELETE` on the admin API with the token.
fn admin(s: &Running, method: &str, path: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    http_request_with(s.admin.expect("admin"), method, path, &[&auth]).expect("admin request")
}

#[test]
fn the_admin_api_lists_and_closes_sessions_behind_its_token() {
    let dir = TestDir::new();
    let token_file = dir.write("admin.token", format!("{TOKEN}\n"));
    let devices = OpensslCa::new(dir.path(), "devices");
    let sensor = devices.issue_client(dir.path(), "sensor", "/CN=sensor-7", None);
    let camera = devices.issue_client(dir.path(), "camera", "/CN=camera-3", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let admin_yaml = format!("  token_file: {}", token_file.display());
    let s = start(dir, &devices, &crl, "mqtt:\n  client_id: any", &admin_yaml);
    let port = s.admin.expect("admin");

    // Without the token (or with a wrong one): 401, counted; the health
    // checks stay open.
    let (code, _) = http_request(port, "GET", "/connections").expect("GET");
    assert_eq!(code, 401);
    let (code, _) = http_request_with(
        port,
        "GET",
        "/metrics",
        &["Authorization: Bearer wrong-token-wrong"],
    )
    .expect("GET");
    assert_eq!(code, 401);
    assert_eq!(http_request(port, "GET", "/healthz").expect("GET").0, 200);
    assert_eq!(http_request(port, "GET", "/readyz").expect("GET").0, 200);
    let (_, metrics) = admin(&s, "GET", "/metrics");
    assert_eq!(
        metric_value(&metrics, "moat_admin_unauthorized_total", ""),
        2.0,
        "{metrics}"
    );

    let mut sensor_sub = s.hold(&sensor, "sensor-client");
    let mut camera_sub = s.hold(&camera, "camera-client");
    s.until_all_receive(&sensor, &[&sensor_sub, &camera_sub], "ready");

    // Listed, with identity and MQTT client id; filtered.
    let (code, body) = admin(&s, "GET", "/connections?identity=sensor-7");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["total"], 1, "{body}");
    let listed = &v["connections"][0];
    assert_eq!(listed["client_id"], "sensor-client");
    assert_eq!(listed["identity"]["subject"], "CN=sensor-7");
    assert_eq!(listed["listener"], "mqtts");
    let (_, body) = admin(&s, "GET", "/connections?source=127.0.0.1");
    let all: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(all["total"].as_u64().unwrap() >= 2, "{body}");

    // Bad input: named, and nothing is closed.
    let (code, body) = admin(&s, "GET", "/connections?colour=red");
    assert_eq!(code, 400);
    assert!(body.starts_with("colour: unknown parameter"), "{body}");
    let (code, body) = admin(&s, "DELETE", "/connections");
    assert_eq!(code, 400, "{body}");
    let (code, _) = admin(&s, "DELETE", "/connections/999999");
    assert_eq!(code, 404);

    // Kicked by identity: only that session ends, with a DISCONNECT line.
    let (code, body) = admin(&s, "DELETE", "/connections?identity=sensor-7");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"closed\": 1"), "{body}");
    assert!(
        s.moat
            .wait_for_log("session closed by moat", Duration::from_secs(3)),
        "{}",
        s.moat.logs()
    );
    let logs = s.moat.logs();
    let closed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("session closed by moat"))
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(
        closed[0].contains("kicked") && closed[0].contains("CN=sensor-7"),
        "{closed:?}"
    );
    assert!(closed[0].contains("sensor-client"), "{closed:?}");
    s.until_all_receive(&camera, &[&camera_sub], "camera-still-on");
    assert_eq!(camera_sub.try_exit(), None);
    let _ = sensor_sub.try_exit();

    // From the command line, with the address and token from the config:
    // listed, then kicked by id.
    let config = s.dir.join("moat.yaml");
    let config = config.to_str().expect("utf-8");
    let out = moat_cmd(&[
        "connections",
        "-c",
        config,
        "list",
        "--client-id",
        "camera-client",
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["total"], 1, "{}", out.stdout);
    let id = v["connections"][0]["id"].as_u64().expect("an id");
    // The id is the one the connection's log lines carry.
    let span = format!("conn{{listener=mqtts id={id} peer=");
    assert!(
        s.moat.logs().contains(&span),
        "{span} not in:\n{}",
        s.moat.logs()
    );
    let out = moat_cmd(&["connections", "-c", config, "kick", "--id", &id.to_string()]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"closed\": 1"), "{}", out.stdout);
    let out = moat_cmd(&["connections", "-c", config, "kick", "--id", &id.to_string()]);
    assert_eq!(
        out.code,
        Some(1),
        "a second kick finds nothing: {}",
        out.stderr
    );
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    let (_, metrics) = admin(&s, "GET", "/metrics");
    let kicked = metric_value(
        &metrics,
        "moat_connections_closed_total",
        "listener=\"mqtts\",reason=\"kicked\"",
    );
    assert!(kicked >= 1.0, "{metrics}");
}

/// A held raw-TLS MQTT session: CONNECT sent and CONNACK read.
fn raw_session(port: u16, cfg: &std::sync::Arc<rustls::ClientConfig>, id: &str) -> RustlsConn {
    let mut c = RustlsConn::connect(port, "localhost", cfg.clone()).expect("handshake");
    c.write_all(&mqtt_connect_v311(id)).expect("CONNECT");
    assert_eq!(c.read_exact(4).expect("CONNACK"), [0x20, 0x02, 0x00, 0x00]);
    c
}

/// Whether a held session still answers a PINGREQ.
fn answers_ping(c: &mut RustlsConn) -> bool {
    c.write_all(&[0xC0, 0x00]).is_ok() && c.read_exact(2).is_ok_and(|r| r == [0xD0, 0x00])
}

#[test]
fn a_thousand_live_sessions_are_rechecked_and_only_the_revoked_close() {
    raise_fd_limit();
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let fleet = devices.issue_client(dir.path(), "fleet", "/CN=fleet-device", None);
    let revoked: Vec<CertFiles> = (0..10)
        .map(|i| {
            devices.issue_client(
                dir.path(),
                &format!("bad-{i}"),
                &format!("/CN=bad-{i}"),
                None,
            )
        })
        .collect();
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let s = start(dir, &devices, &crl, "max_connections: 5000", "");
    let fleet_cfg = rustls_client(&s.ca().cert, Some((&fleet.cert, &fleet.key)));
    let mut good: Vec<RustlsConn> = (0..990)
        .map(|i| raw_session(s.port, &fleet_cfg, &format!("fleet-{i}")))
        .collect();
    let mut bad: Vec<RustlsConn> = revoked
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cfg = rustls_client(&s.ca().cert, Some((&d.cert, &d.key)));
            raw_session(s.port, &cfg, &format!("bad-{i}"))
        })
        .collect();

    for d in &revoked {
        devices.revoke(&d.cert);
    }
    devices.publish_crl(&crl);
    let line = s.moat.log_line(
        "live sessions re-checked against the new client-auth state",
        Duration::from_secs(30),
    );
    assert!(line.contains("checked=1000"), "{line}");
    assert!(line.contains("refused=10"), "{line}");
    // How long it took goes to the test output, not into an assertion.
    println!("re-check of 1000 sessions: {line}");
    assert_eq!(
        s.moat
            .metric_reaching("moat_connections_closed_total", "reason=\"revoked\"", 10.0),
        10.0
    );
    // The revoked ten are closed; every allowed session still answers.
    for c in &mut bad {
        assert!(!answers_ping(c), "a revoked session still answers");
    }
    let alive = good.iter_mut().map(answers_ping).filter(|ok| *ok).count();
    assert_eq!(alive, 990, "allowed sessions were dropped");
}

#[test]
fn bans_refuse_an_identity_a_client_id_and_a_source_until_lifted() {
    let dir = TestDir::new();
    let token_file = dir.write("admin.token", format!("{TOKEN}\n"));
    let devices = OpensslCa::new(dir.path(), "devices");
    let rogue = devices.issue_client(dir.path(), "rogue", "/CN=rogue-7", None);
    let good = devices.issue_client(dir.path(), "good", "/CN=good-1", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let admin_yaml = format!("  token_file: {}", token_file.display());
    let s = start(dir, &devices, &crl, "mqtt:\n  client_id: any", &admin_yaml);
    let good_cfg = rustls_client(&s.ca().cert, Some((&good.cert, &good.key)));

    // Without the token: 401; with it but a bad ban: 400 naming it.
    let (code, _) =
        http_request(s.admin.expect("admin"), "POST", "/bans?identity=rogue-7").expect("POST");
    assert_eq!(code, 401);
    let (code, body) = admin(&s, "POST", "/bans?identity=rogue-7&client_id=x");
    assert_eq!(code, 400);
    assert!(body.contains("one target"), "{body}");

    // An identity ban closes the live session and refuses the next one.
    let mut rogue_sub = s.hold(&rogue, "rogue-sub");
    s.until_all_receive(&good, &[&rogue_sub], "ready");
    let (code, body) = admin(&s, "POST", "/bans?identity=rogue-7&duration=1h");
    assert_eq!(code, 201, "{body}");
    let ban: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ban["closed"], 1, "{body}");
    assert_eq!(ban["kind"], "identity");
    assert!(ban["until"].is_string(), "{body}");
    let tls = Tls::ca(&s.ca().cert).with_client(&rogue.cert, &rogue.key);
    let out = mosquitto_pub("localhost", s.port, Some(&tls), "t", "let me in");
    assert!(!out.status.success(), "a banned identity got in");
    let (_, metrics) = admin(&s, "GET", "/metrics");
    assert!(
        metric_value(
            &metrics,
            "moat_connections_rejected_total",
            "reason=\"banned\""
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "moat_connections_closed_total",
            "reason=\"banned\""
        ) >= 1.0,
        "{metrics}"
    );
    let _ = rogue_sub.try_exit();
    assert!(s.publish_as(&good, "t", "others-unaffected"));

    // A client-id ban: CONNACK "not authorized" for that id only.
    let (code, _) = admin(&s, "POST", "/bans?client_id=evil-twin");
    assert_eq!(code, 201);
    let mut c = RustlsConn::connect(s.port, "localhost", good_cfg.clone()).expect("handshake");
    c.write_all(&mqtt_connect_v311("evil-twin"))
        .expect("CONNECT");
    assert_eq!(c.read_exact(4).expect("CONNACK"), [0x20, 0x02, 0x00, 0x05]);
    let _fine = raw_session(s.port, &good_cfg, "good-twin");

    // A source ban refuses before the handshake; lifting it lets it in.
    let (code, body) = admin(&s, "POST", "/bans?source=127.0.0.0/8");
    assert_eq!(code, 201, "{body}");
    let source_ban: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(source_ban["value"], "127.0.0.0/8");
    assert!(RustlsConn::connect(s.port, "localhost", good_cfg.clone()).is_err());
    let (_, body) = admin(&s, "GET", "/bans");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["bans"].as_array().map(Vec::len), Some(3), "{body}");
    let id = source_ban["id"].as_u64().expect("id");
    let (code, _) = admin(&s, "DELETE", &format!("/bans/{id}"));
    assert_eq!(code, 200);
    let (code, _) = admin(&s, "DELETE", &format!("/bans/{id}"));
    assert_eq!(code, 404);
    let _back = raw_session(s.port, &good_cfg, "back-again");
}
