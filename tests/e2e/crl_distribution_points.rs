//! CRL distribution points of device certificates
//! (`tls.client_auth.crl_distribution_points`) through the real binary:
//! real `mosquitto_pub`/`mosquitto_sub` devices whose certificates name a
//! loopback HTTP server that serves the CRL `openssl ca -gencrl` made, or
//! fails; one download serves every device; a revoked device is refused
//! before the broker hears of it; an unreachable CRL fails open or closed
//! as configured.

use moat_testkit::*;

/// Two listeners in front of one broker whose devices name `responder`'s
/// CRL: `mqtts` (on `port`) and `other` (on `ports[0]`), each with its own
/// mode.
struct Scene {
    g: Running,
    responder: Responder,
    ca: OpensslCa,
}

fn client_auth(ca: &OpensslCa, mode: &str) -> String {
    format!(
        "client_auth:\n  mode: required\n  ca: {}\n  crl_distribution_points: {mode}\n  crl_fetch_timeout: 2s\n",
        ca.cert.display()
    )
}

fn scene(first: &str, second: &str) -> Scene {
    let dir = TestDir::new();
    let responder = Responder::start(Behaviour::Status(503));
    let url = format!("{}/devices.crl", responder.url());
    let ca = OpensslCa::with_options(dir.path(), "devices-ca", &CaOptions::crl(url));
    let g = Gateway::new()
        .in_dir(dir)
        .tls_yaml(&client_auth(&ca, first))
        .also_listener_with_its_cert("other", &client_auth(&ca, second))
        .start();
    Scene { g, responder, ca }
}

impl Scene {
    /// Publishes as `device` on `port`; whether the broker took it.
    fn publish(&self, device: &CertFiles, port: u16) -> bool {
        let tls = self.g.device_tls(device);
        mosquitto_pub("localhost", port, Some(&tls), "t", "hi")
            .status
            .success()
    }

    /// Serves the CA's current CRL.
    fn serve_crl(&self) {
        let crl = self.g.path().join("devices.crl.pem");
        self.ca.gencrl(&crl);
        self.responder
            .set(Behaviour::Serve(std::fs::read(&crl).expect("CRL")));
    }

    fn metric(&self, name: &str, labels: &str) -> f64 {
        self.g.moat.metric(name, labels)
    }
}

#[test]
fn a_revoked_device_is_refused_and_one_download_serves_the_fleet() {
    let s = scene("prefer", "prefer");
    let dir = s.g.path();
    let good = s.ca.issue_client(dir, "good", "/CN=good-device", None);
    let other = s.ca.issue_client(dir, "other", "/CN=other-device", None);
    let stolen = s.ca.issue_client(dir, "stolen", "/CN=stolen-device", None);
    s.ca.revoke(&stolen.cert);
    s.serve_crl();
    assert!(s.publish(&good, s.g.port), "{}", s.g.moat.logs());
    assert!(s.publish(&other, s.g.port), "{}", s.g.moat.logs());
    assert!(
        !s.publish(&stolen, s.g.port),
        "a revoked device got through"
    );
    let on = |l: &str, r: &str| format!("listener=\"{l}\",result=\"{r}\"");
    assert_eq!(
        s.metric("moat_client_crl_checks_total", &on("mqtts", "good")),
        2.0
    );
    assert_eq!(
        s.metric("moat_client_crl_checks_total", &on("mqtts", "revoked")),
        1.0
    );
    assert_eq!(
        s.metric(
            "moat_client_auth_denied_total",
            "listener=\"mqtts\",reason=\"revoked\""
        ),
        1.0
    );
    // Three devices, one download (a GET of the distribution point).
    assert_eq!(
        s.metric("moat_client_crl_fetches_total", &on("mqtts", "ok")),
        1.0
    );
    assert_eq!(s.responder.hits(), 1, "{:?}", s.responder.paths());
    assert_eq!(s.responder.paths(), ["/devices.crl"]);
    let line = s.g.moat.log_line(
        "refused by the CRL it names",
        std::time::Duration::from_secs(2),
    );
    assert!(line.contains("stolen-device"), "{line}");
    // `moat check` reports each listener's setting.
    let out = moat_check(s.g.path(), "check.yaml", &s.g.yaml);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(
            "CRL distribution points: prefer (timeout 2s; devices whose CRL cannot be had are admitted)"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn an_unreachable_crl_refuses_under_require_and_admits_under_prefer() {
    let s = scene("require", "prefer");
    let device = s.ca.issue_client(s.g.path(), "d", "/CN=device-1", None);
    // The distribution point answers 503.
    assert!(
        !s.publish(&device, s.g.port),
        "require let a device in without its CRL"
    );
    assert!(s.publish(&device, s.g.ports[0]), "{}", s.g.moat.logs());
    let on = |l: &str| format!("listener=\"{l}\",result=\"unavailable\"");
    assert_eq!(s.metric("moat_client_crl_checks_total", &on("mqtts")), 1.0);
    assert_eq!(s.metric("moat_client_crl_checks_total", &on("other")), 1.0);
    assert_eq!(
        s.metric(
            "moat_client_auth_denied_total",
            "listener=\"mqtts\",reason=\"revocation_unknown\""
        ),
        1.0
    );
    assert!(s.g.moat.logs().contains("admitted without its CRL"));
    assert!(
        s.metric(
            "moat_client_crl_fetches_total",
            "listener=\"mqtts\",result=\"error\""
        ) >= 1.0
    );
}
