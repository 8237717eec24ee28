//! SNI routes: one listener, one address, several tenants' brokers, each
//! with its own certificate and client-authentication settings, and a
//! default route. Two real Mosquittos show where each device landed.

use std::time::Duration;

use moat_testkit::*;

struct Setup {
    _dir: TestDir,
    a: Mosquitto,
    b: Mosquitto,
    server_ca: Ca,
    device: CertFiles,
    port: u16,
    moat: Moat,
}

fn setup() -> Setup {
    let dir = TestDir::new();
    let a = Mosquitto::start(dir.path());
    let b = Mosquitto::start(dir.path());
    let server_ca = Ca::new(dir.path(), "server-ca", "Server CA");
    let devices = Ca::new(dir.path(), "devices", "Tenant B Devices");
    let default_cert = server_ca.issue(
        dir.path(),
        "default",
        &Issue::server("localhost", &["localhost"]),
    );
    let b_cert = server_ca.issue(
        dir.path(),
        "tenant-b",
        &Issue::server("b.example", &["b.example", "*.tenant-b.example"]),
    );
    let device = devices.issue(dir.path(), "device", &Issue::client("b-device"));
    let (port, admin) = (free_port(), free_port());
    let routes = format!(
        "routes:\n  - name: tenant-b\n    server_names: [b.example, \"*.tenant-b.example\"]\n    backend: 127.0.0.1:{}\n    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n      client_auth: {{ mode: required, ca: {} }}\n",
        b.port,
        b_cert.cert.display(),
        b_cert.key.display(),
        devices.cert.display()
    );
    let moat = Moat::start(
        dir.path(),
        &config_yaml(
            Some(admin),
            &[listener_yaml(
                "mqtts",
                port,
                a.port,
                &[&default_cert],
                "",
                &routes,
            )],
        ),
        Some(admin),
    );
    Setup {
        _dir: dir,
        a,
        b,
        server_ca,
        device,
        port,
        moat,
    }
}

impl Setup {
    fn connect(
        &self,
        sni: &str,
        client: Option<&CertFiles>,
        id: &str,
    ) -> std::io::Result<RustlsConn> {
        let cfg = rustls_client(
            &self.server_ca.cert,
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
    let s = setup();
    let _b = s
        .connect("b.example", Some(&s.device), "device-on-b")
        .expect("route b");
    let _w = s
        .connect("x1.tenant-b.example", Some(&s.device), "wildcard-on-b")
        .expect("route b by wildcard");
    let _a = s
        .connect("localhost", None, "device-on-a")
        .expect("default route");
    assert!(wait_until(Duration::from_secs(5), || s
        .b
        .logs()
        .contains("device-on-b")
        && s.b.logs().contains("wildcard-on-b")));
    assert!(wait_until(Duration::from_secs(5), || s
        .a
        .logs()
        .contains("device-on-a")));
    assert!(
        !s.a.logs().contains("device-on-b"),
        "route b's device reached the default broker"
    );
    assert!(
        !s.b.logs().contains("device-on-a"),
        "a default device reached tenant b's broker"
    );
    // Each route serves its own certificate.
    let (ok, out) = s_client(
        s.port,
        &[
            "-servername",
            "b.example",
            "-CAfile",
            s.server_ca.cert.to_str().unwrap(),
            "-cert",
            s.device.cert.to_str().unwrap(),
            "-key",
            s.device.key.to_str().unwrap(),
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
            s.server_ca.cert.to_str().unwrap(),
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
    let s = setup();
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
    assert!(!s.b.logs().contains("anonymous-on-b"));
}
