//! Device identity: allow-lists and pins, CRLs with hot reload and both
//! expiry policies, resumption that cannot bypass a revocation, and the
//! PROXY protocol header read back by an independent parser.

use std::process::Command;
use std::time::Duration;

use moat_testkit::*;

/// moat in front of a broker, in `dir`, with `client_auth` under its
/// listener's `tls:` and `extra` under the listener.
fn start(dir: TestDir, client_auth: &str, extra: &str) -> Running {
    Gateway::new()
        .in_dir(dir)
        .ca_named("server-ca", "Server CA")
        .tls_yaml(client_auth)
        .listener_yaml(extra)
        .start()
}

#[test]
fn allow_list_admits_by_common_name_san_and_pin_and_refuses_the_rest() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let sensor = devices.issue_client(dir.path(), "sensor", "/CN=sensor-0042/OU=fleet-a", None);
    let camera = devices.issue_client(
        dir.path(),
        "camera",
        "/CN=camera-7",
        Some("DNS:camera-7.cams.example"),
    );
    let pinned = devices.issue_client(dir.path(), "pinned", "/CN=legacy-gateway", None);
    let rogue = devices.issue_client(
        dir.path(),
        "rogue",
        "/CN=laptop",
        Some("DNS:laptop.office.example"),
    );
    let client_auth = format!(
        "client_auth:\n  mode: required\n  ca: {}\n  allow:\n    - common_name: \"sensor-*\"\n      organizational_unit: fleet-a\n    - dns: \"*.cams.example\"\n    - certificate_sha256: \"{}\"",
        devices.cert.display(),
        // openssl's own colon form, as operators paste it.
        pinned.sha256().as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect::<Vec<_>>().join(":")
    );
    let s = start(dir, &client_auth, "");
    for (name, device) in [
        ("sensor", &sensor),
        ("camera", &camera),
        ("pinned", &pinned),
    ] {
        let got = round_trip(
            s.dir.path(),
            s.broker().port,
            None,
            s.port,
            Some(&s.device_tls(device)),
        );
        assert!(got.starts_with("hello-"), "{name}: {got}");
    }
    let out = mosquitto_pub("localhost", s.port, Some(&s.device_tls(&rogue)), "t", "m");
    assert!(
        !out.status.success(),
        "a device matching no rule must be refused"
    );
    let text = s_client_alert(s.port, &s.ca().cert, Some(&rogue));
    assert!(text.contains("alert access denied"), "{text}");
    let logs = s.moat.logs();
    assert!(logs.contains("client certificate refused"), "{logs}");
    assert!(logs.contains("client.subject=CN=laptop"), "{logs}");
    assert!(
        logs.contains(&format!("client.sha256={}", rogue.sha256())),
        "{logs}"
    );
    assert!(
        s.moat.metric_reaching(
            "moat_client_auth_denied_total",
            "reason=\"not_allowed\"",
            2.0
        ) >= 2.0
    );
    assert!(!s.broker().logs().contains("laptop"));
}

#[test]
fn a_revoked_device_is_refused_once_the_new_crl_is_in_place() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let good = devices.issue_client(dir.path(), "good", "/CN=good-device", None);
    let stolen = devices.issue_client(dir.path(), "stolen", "/CN=stolen-device", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let client_auth = devices.client_auth_with_crl(&crl);
    let s = start(dir, &client_auth, "");
    assert!(
        s.moat.metric(
            "moat_crl_next_update_timestamp_seconds",
            "issuer=\"CN=devices\""
        ) > 0.0
    );
    let out = mosquitto_pub(
        "localhost",
        s.port,
        Some(&s.device_tls(&stolen)),
        "t",
        "before",
    );
    assert!(out.status.success(), "{out:?}");

    devices.revoke_and_publish(&stolen.cert, &crl);
    assert!(
        s.moat
            .wait_for_log("certificates reloaded", Duration::from_secs(5)),
        "{}",
        s.moat.logs()
    );

    let out = mosquitto_pub(
        "localhost",
        s.port,
        Some(&s.device_tls(&stolen)),
        "t",
        "after",
    );
    assert!(!out.status.success(), "the revoked device got in");
    let text = s_client_alert(s.port, &s.ca().cert, Some(&stolen));
    assert!(text.contains("alert certificate revoked"), "{text}");
    assert!(
        s.moat
            .metric_reaching("moat_client_auth_denied_total", "reason=\"revoked\"", 2.0)
            >= 2.0
    );
    let out = mosquitto_pub(
        "localhost",
        s.port,
        Some(&s.device_tls(&good)),
        "t",
        "still fine",
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_revoked_device_cannot_get_back_in_by_resuming_an_old_session() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let stolen = devices.issue_client(dir.path(), "stolen", "/CN=stolen-device", None);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let client_auth = devices.client_auth_with_crl(&crl);
    let s = start(dir, &client_auth, "");

    let cfg = rustls_client(&s.ca().cert, Some((&stolen.cert, &stolen.key)));
    let first = mqtt_session(s.port, cfg.clone(), "stolen").expect("accepted before revocation");
    drop(first);
    // Control: before the revocation, the ticket resumes.
    let again = mqtt_session(s.port, cfg.clone(), "stolen").expect("resumes");
    assert_eq!(
        again.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    drop(again);

    devices.revoke_and_publish(&stolen.cert, &crl);
    assert!(s
        .moat
        .wait_for_log("certificates reloaded", Duration::from_secs(5)));

    // The client still holds a ticket; the TLS layer resumes, and moat
    // refuses before a byte reaches the broker.
    let refused = mqtt_session(s.port, cfg, "stolen");
    assert!(refused.is_err(), "a revoked device resumed its way in");
    assert!(
        s.moat
            .wait_for_log("resumed session refused", Duration::from_secs(5)),
        "{}",
        s.moat.logs()
    );
    assert!(
        s.moat
            .metric_reaching("moat_client_auth_denied_total", "reason=\"revoked\"", 1.0)
            >= 1.0
    );
    assert_eq!(
        s.broker().logs().matches("New client connected").count(),
        2,
        "only the two connections before the revocation"
    );
}

#[test]
fn an_expired_crl_refuses_by_default_and_is_tolerated_when_allowed() {
    for (policy, admitted) in [("deny", false), ("allow", true)] {
        let dir = TestDir::new();
        let devices = OpensslCa::new(dir.path(), "devices");
        let device = devices.issue_client(dir.path(), "device", "/CN=device-1", None);
        let crl = dir.join("old.crl.pem");
        devices.gencrl_expired(&crl);
        let client_auth = format!(
            "client_auth:\n  mode: required\n  ca: {}\n  crl: [{}]\n  expired_crl: {policy}",
            devices.cert.display(),
            crl.display()
        );
        let s = start(dir, &client_auth, "");
        assert!(
            s.moat.logs().contains("expired at 2020-01-02"),
            "{policy}: the expired CRL is logged:\n{}",
            s.moat.logs()
        );
        let out = mosquitto_pub("localhost", s.port, Some(&s.device_tls(&device)), "t", "m");
        assert_eq!(
            out.status.success(),
            admitted,
            "{policy}: {out:?}\n{}",
            s.moat.logs()
        );
        if !admitted {
            assert!(
                s.moat.metric_reaching(
                    "moat_client_auth_denied_total",
                    "reason=\"crl_expired\"",
                    1.0
                ) >= 1.0
            );
        }
    }
}

/// moat (no admin port) in front of the PROXY-protocol backend on
/// `backend`, sending header version `version`.
fn proxied(dir: TestDir, backend: u16, version: &str) -> Gateway {
    Gateway::new()
        .in_dir(dir)
        .backend(backend)
        .no_admin()
        .ca_named("server-ca", "Server CA")
        .listener_yaml(&format!("backend_proxy_protocol: {version}"))
}

fn proxy_backend(dir: &TestDir) -> (u16, std::path::PathBuf, std::process::Child) {
    require("python3", "python3");
    let port = free_port();
    let out = dir.join("proxy-backend.json");
    let child = Command::new("python3")
        .arg(workspace_root().join("tests/python/proxy_backend.py"))
        .arg(port.to_string())
        .arg(&out)
        .spawn()
        .expect("start the proxy-protocol backend (pip install proxy-protocol)");
    assert!(
        wait_until(Duration::from_secs(10), || port_open_listening(port)),
        "backend did not start"
    );
    (port, out, child)
}

/// What the PROXY-protocol backend wrote to `json` once its one
/// connection ended.
fn backend_saw(child: &mut std::process::Child, json: &std::path::Path) -> serde_json::Value {
    let _ = child.wait();
    serde_json::from_str(&std::fs::read_to_string(json).expect("backend output")).expect("JSON")
}

/// Whether something listens on 127.0.0.1:`port` (without connecting: the
/// backend accepts exactly one connection).
fn port_open_listening(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines()
                .any(|l| l.contains(&hex) && l.split_whitespace().nth(3) == Some("0A"))
        })
        .unwrap_or(false)
}

#[test]
fn proxy_protocol_v2_carries_address_tls_details_and_the_device_cn() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let device = devices.issue_client(dir.path(), "device", "/CN=sensor-0042", None);
    let (backend, json_path, mut child) = proxy_backend(&dir);
    let moat = proxied(dir, backend, "v2")
        .tls_yaml(&format!(
            "alpn: [mqtt]\nclient_auth:\n  mode: required\n  ca: {}",
            devices.cert.display()
        ))
        .start();
    let port = moat.port;
    let mut cfg = (*rustls_client(&moat.ca().cert, Some((&device.cert, &device.key)))).clone();
    cfg.alpn_protocols = vec![b"mqtt".to_vec()];
    let mut c =
        RustlsConn::connect(port, "localhost", std::sync::Arc::new(cfg)).expect("handshake");
    let connect = mqtt_connect_v311("sensor-0042");
    c.write_all(&connect).expect("CONNECT");
    assert_eq!(
        c.read_exact(4).expect("CONNACK through moat"),
        [0x20, 0x02, 0x00, 0x00]
    );
    let local_port = c.sock.local_addr().expect("addr").port();
    let v = backend_saw(&mut child, &json_path);
    assert_eq!(v["source"], serde_json::json!(["127.0.0.1", local_port]));
    assert_eq!(v["dest"], serde_json::json!(["127.0.0.1", port]));
    assert_eq!(v["authority"], "localhost");
    assert_eq!(v["alpn"], "mqtt");
    let ssl = &v["ssl"];
    assert_eq!(ssl["has_ssl"], true);
    assert_eq!(ssl["has_cert_conn"], true);
    assert_eq!(ssl["has_cert_sess"], true);
    assert_eq!(ssl["verified"], true);
    assert_eq!(ssl["version"], "TLSv1.3");
    assert_eq!(ssl["cn"], "sensor-0042");
    // moat picks AES-128-GCM over the client's AES-256-GCM (tls::policy).
    assert_eq!(ssl["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(ssl["sig_alg"], "ecdsa-with-SHA256");
    assert_eq!(ssl["key_alg"], "EC256");
    // The MQTT bytes after the header are exactly what the device sent.
    let sent: String = connect.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["mqtt_hex"], sent);
    drop(moat);
}

#[test]
fn proxy_protocol_v1_carries_the_client_address() {
    let dir = TestDir::new();
    let (backend, json_path, mut child) = proxy_backend(&dir);
    let moat = proxied(dir, backend, "v1").start();
    let port = moat.port;
    let mut c = RustlsConn::connect(port, "localhost", rustls_client(&moat.ca().cert, None))
        .expect("handshake");
    c.write_all(&mqtt_connect_v311("plain-device"))
        .expect("CONNECT");
    assert_eq!(c.read_exact(4).expect("CONNACK"), [0x20, 0x02, 0x00, 0x00]);
    let local_port = c.sock.local_addr().expect("addr").port();
    let v = backend_saw(&mut child, &json_path);
    let header = format!("PROXY TCP4 127.0.0.1 127.0.0.1 {local_port} {port}\r\n");
    let hex: String = header.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["header_hex"], hex);
    assert_eq!(v["source"], serde_json::json!(["127.0.0.1", local_port]));
}
