//! SNI routes: one listener, one address, several tenants' brokers, each
//! with its own certificate and client-authentication settings, and a
//! default route; routes added and removed by a reloaded moat.yaml. Two
//! real Mosquittos show where each device landed.

use std::time::Duration;

use moat_testkit::*;

/// moat whose listener serves `localhost` from broker A (the gateway's)
/// and routes `b.example` and `*.tenant-b.example`, with device
/// certificates required, to broker B. Also returns B and a tenant B device.
fn setup() -> (Running, Mosquitto, CertFiles) {
    let dir = TestDir::new();
    let b = Mosquitto::start(dir.path());
    let server_ca = Ca::new(dir.path(), "server-ca", "Server CA");
    let devices = Ca::new(dir.path(), "devices", "Tenant B Devices");
    let b_cert = server_ca.issue(
        dir.path(),
        "tenant-b",
        &Issue::server("b.example", &["b.example", "*.tenant-b.example"]),
    );
    let device = devices.issue(dir.path(), "device", &Issue::client("b-device"));
    let routes = format!(
        "routes:\n  - name: tenant-b\n    server_names: [b.example, \"*.tenant-b.example\"]\n    backend: 127.0.0.1:{}\n    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n      client_auth: {{ mode: required, ca: {} }}\n",
        b.port,
        b_cert.cert.display(),
        b_cert.key.display(),
        devices.cert.display()
    );
    let s = Gateway::new()
        .in_dir(dir)
        .ca(server_ca)
        .cert_at("", "default")
        .listener_yaml(&routes)
        .start();
    (s, b, device)
}

trait Connect {
    fn connect(
        &self,
        sni: &str,
        client: Option<&CertFiles>,
        id: &str,
    ) -> std::io::Result<RustlsConn>;
}

impl Connect for Running {
    fn connect(
        &self,
        sni: &str,
        client: Option<&CertFiles>,
        id: &str,
    ) -> std::io::Result<RustlsConn> {
        let cfg = rustls_client(
            &self.ca().cert,
            client.map(|c| (c.cert.as_path(), c.key.as_path())),
        );
        let mut c = RustlsConn::connect(self.port, sni, cfg)?;
        c.write_all(&mqtt_connect_v311(id))?;
        let ack = c.read_exact(4)?;
        assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
        Ok(c)
    }
}

#[test]
fn sni_selects_the_route_and_its_broker() {
    let (s, b, device) = setup();
    let _b = s
        .connect("b.example", Some(&device), "device-on-b")
        .expect("route b");
    let _w = s
        .connect("x1.tenant-b.example", Some(&device), "wildcard-on-b")
        .expect("route b by wildcard");
    let _a = s
        .connect("localhost", None, "device-on-a")
        .expect("default route");
    assert!(wait_until(Duration::from_secs(5), || b
        .logs()
        .contains("device-on-b")
        && b.logs().contains("wildcard-on-b")));
    assert!(wait_until(Duration::from_secs(5), || s
        .broker()
        .logs()
        .contains("device-on-a")));
    assert!(
        !s.broker().logs().contains("device-on-b"),
        "route b's device reached the default broker"
    );
    assert!(
        !b.logs().contains("device-on-a"),
        "a default device reached tenant b's broker"
    );
    // Each route serves its own certificate.
    let (ok, out) = s_client(
        s.port,
        &[
            "-servername",
            "b.example",
            "-CAfile",
            s.ca().cert.to_str().unwrap(),
            "-cert",
            device.cert.to_str().unwrap(),
            "-key",
            device.key.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok && out.contains("subject=CN = b.example"), "{out}");
    let (ok, out) = s_client(
        s.port,
        &[
            "-servername",
            "other.example",
            "-CAfile",
            s.ca().cert.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        ok && out.contains("subject=CN = localhost"),
        "unknown names get the default route: {out}"
    );
    assert!(
        s.moat.metric(
            "moat_tls_handshakes_total",
            "listener=\"mqtts/tenant-b\",result=\"success\""
        ) >= 2.0
    );
}

#[test]
fn each_route_has_its_own_client_authentication() {
    let (s, b, _) = setup();
    // Route b requires a device certificate; the default route does not.
    assert!(
        s.connect("b.example", None, "anonymous-on-b").is_err(),
        "route b must refuse a device without a certificate"
    );
    assert!(s.connect("localhost", None, "anonymous-on-a").is_ok());
    assert!(wait_until(Duration::from_secs(5), || s.moat.metric(
        "moat_tls_handshakes_total",
        "listener=\"mqtts/tenant-b\",reason=\"no_client_certificate\""
    ) >= 1.0));
    assert!(!b.logs().contains("anonymous-on-b"));
}

/// `s`'s moat.yaml with every `(from, to)` replaced (each must be there),
/// written atomically.
fn rewrite(s: &Running, edits: &[(&str, &str)]) {
    let path = s.dir.join("moat.yaml");
    let mut text = std::fs::read_to_string(&path).expect("read moat.yaml");
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in:\n{text}");
        text = text.replace(from, to);
    }
    let tmp = s.dir.join("moat.yaml.new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
}

/// The subject of the certificate served for `sni` (the handshake itself
/// may then fail: route tenant-b wants a client certificate).
fn served_subject(s: &Running, sni: &str) -> String {
    let (_, out) = s_client(
        s.port,
        &["-servername", sni, "-CAfile", s.ca().cert.to_str().unwrap()],
        "",
    );
    out.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no certificate served for {sni}: {out}"))
        .to_string()
}

#[test]
fn routes_come_and_go_with_moat_yaml_while_their_live_sessions_stay() {
    let (s, b, device) = setup();
    let mut held = s
        .connect("b.example", Some(&device), "held-on-b")
        .expect("route b");
    let c = s.ca().issue(
        s.dir.path(),
        "tenant-c",
        &Issue::server("c.example", &["c.example"]),
    );
    let (c_cert, c_key) = (c.cert.display().to_string(), c.key.display().to_string());
    let (b_cert, b_key) = (
        c_cert.replace("tenant-c", "tenant-b"),
        c_key.replace("tenant-c", "tenant-b"),
    );
    // Route tenant-b goes, tenant-c comes: one edit, no restart.
    rewrite(
        &s,
        &[
            ("name: tenant-b", "name: tenant-c"),
            (
                "server_names: [b.example, \"*.tenant-b.example\"]",
                "server_names: [c.example]",
            ),
            (&b_cert, &c_cert),
            (&b_key, &c_key),
        ],
    );
    let admin = s.admin.expect("admin");
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("mqtts/tenant-c"), "{body}");
    let logs = s.moat.logs();
    assert!(logs.contains("SNI route added"), "{logs}");
    assert!(logs.contains("SNI route removed"), "{logs}");

    // The new route serves its certificate and its broker; the removed
    // one's names fall to the default route.
    assert_eq!(served_subject(&s, "c.example"), "subject=CN = c.example");
    assert_eq!(served_subject(&s, "b.example"), "subject=CN = localhost");
    let _c = s
        .connect("c.example", Some(&device), "device-on-c")
        .expect("route c");
    assert!(wait_until(Duration::from_secs(5), || b
        .logs()
        .contains("device-on-c")));
    // The session that came through the removed route goes on: broker B
    // answers its PINGREQ.
    held.write_all(&[0xc0, 0x00]).expect("PINGREQ");
    assert_eq!(held.read_exact(2).expect("PINGRESP"), [0xd0, 0x00]);
    // The removed route's certificate series left /metrics.
    let cert_series = |route: &str| {
        s.moat
            .metrics()
            .lines()
            .filter(|l| {
                l.starts_with("moat_certificate_not_after_timestamp_seconds")
                    && l.contains(&format!("listener=\"mqtts/{route}\""))
            })
            .count()
    };
    assert_eq!(cert_series("tenant-b"), 0);
    assert!(cert_series("tenant-c") >= 1);

    // A new route whose certificate cannot be read refuses the whole file,
    // naming it; what was in service stays.
    rewrite(
        &s,
        &[
            ("name: tenant-c", "name: tenant-d"),
            ("server_names: [c.example]", "server_names: [d.example]"),
            (&c_cert, "/nonexistent/tenant-d.pem"),
        ],
    );
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("configuration") && body.contains("/nonexistent/tenant-d.pem"),
        "{body}"
    );
    assert_eq!(s.moat.metric("moat_config_reload_pending", ""), 1.0);
    assert_eq!(served_subject(&s, "c.example"), "subject=CN = c.example");
    assert_eq!(served_subject(&s, "d.example"), "subject=CN = localhost");
}
