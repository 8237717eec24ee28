//! Built-in ACME (issue 19) against a real pebble that really validates
//! HTTP-01 (`PEBBLE_VA_ALWAYS_VALID=0`): first issuance at start-up, a
//! restart that reuses the stored certificate, a renewal at 2/3 of a
//! short lifetime with a session held across the swap, a CA that is down
//! at renewal time, and one that is unreachable at the first start.

use std::time::Duration;

use moat_testkit::*;

/// One listener whose certificate is an `acme:` entry for `moat.test`.
fn acme_yaml(
    admin: u16,
    port: u16,
    backend: u16,
    directory: &str,
    ca: &str,
    http01: u16,
    state: &str,
) -> String {
    format!(
        "log:\n  level: info,moat=debug\nadmin:\n  listen: 127.0.0.1:{admin}\nlisteners:\n  - name: mqtts\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:{backend}\n    tls:\n      certificates:\n        - acme:\n            directory: {directory}\n            contact: [mailto:ops@moat.test]\n            domains: [moat.test]\n            state_dir: {state}\n            ca_bundle: {ca}\n            http01_listen: 127.0.0.1:{http01}\n"
    )
}

struct Scene {
    dir: TestDir,
    pebble: Pebble,
    broker: Mosquitto,
    port: u16,
    admin: u16,
    yaml: String,
}

impl Scene {
    fn new(validity: Option<u64>) -> Self {
        let dir = TestDir::new();
        let pebble = Pebble::start(&dir, validity);
        let broker = Mosquitto::start(dir.path());
        let (port, admin) = (free_port(), free_port());
        let yaml = acme_yaml(
            admin,
            port,
            broker.port,
            &pebble.directory(),
            &pebble.ca_bundle.display().to_string(),
            pebble.http_port,
            &dir.join("acme").display().to_string(),
        );
        Self {
            dir,
            pebble,
            broker,
            port,
            admin,
            yaml,
        }
    }

    fn moat(&self) -> Moat {
        Moat::start(self.dir.path(), &self.yaml, Some(self.admin))
    }

    fn stored_serial(&self) -> String {
        let files = CertFiles {
            cert: self.dir.join("acme/cert.pem"),
            key: self.dir.join("acme/key.pem"),
            cert_pem: String::new(),
        };
        norm_serial(&files.serial())
    }

    fn served(&self) -> String {
        norm_serial(&served_serial(self.port, "moat.test"))
    }
}

#[test]
fn acme_first_issuance_over_http01_then_a_restart_reuses_the_stored_certificate() {
    let s = Scene::new(None);
    let moat = s.moat();
    assert!(
        moat.logs().contains("ACME certificate obtained"),
        "{}",
        moat.logs()
    );
    // The chain (leaf and pebble's intermediate) verifies to pebble's root
    // for the name asked for.
    let root = s.pebble.root(&s.dir);
    s_client_ok(
        s.port,
        &root,
        &[
            "-servername",
            "moat.test",
            "-verify_hostname",
            "moat.test",
            "-verify_return_error",
        ],
    );
    let serial = s.stored_serial();
    assert_eq!(s.served(), serial);
    // A device reaches the real broker through moat.
    let out = mosquitto_pub(
        "localhost",
        s.port,
        Some(&Tls::ca(&root).with_insecure()),
        "acme/t",
        "hi",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["account.json", "key.pem", "cert.pem"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(s.dir.join("acme").join(f))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert!(
        moat.metric(
            "moat_acme_next_renewal_timestamp_seconds",
            "listener=\"mqtts\""
        ) > 0.0
    );
    drop(moat);
    // `moat check` shows the ACME state.
    let check = moat_cmd(&[
        "check",
        "--config",
        s.dir.join("moat.yaml").to_str().unwrap(),
    ]);
    assert!(
        check.stdout.contains("ACME:") && check.stdout.contains("renewal due"),
        "{}",
        check.stdout
    );

    // A restart serves the stored certificate and orders nothing.
    let orders = s.pebble.logs().matches("POST /order-plz").count();
    assert!(orders >= 1, "pebble logs no order:\n{}", s.pebble.logs());
    let moat = s.moat();
    assert!(
        !moat.logs().contains("obtaining the first ACME certificate"),
        "{}",
        moat.logs()
    );
    assert_eq!(s.served(), serial);
    assert_eq!(s.pebble.logs().matches("POST /order-plz").count(), orders);
}

#[test]
fn acme_renews_at_two_thirds_of_the_lifetime_while_sessions_stay_connected() {
    // 30 s certificates: the renewal comes 20 s after notBefore.
    let s = Scene::new(Some(30));
    let moat = s.moat();
    let first = s.served();
    let root = s.pebble.root(&s.dir);
    let tls = Tls::ca(&root).with_insecure();
    let mut sub = Sub::spawn(s.dir.path(), "held", s.port, Some(&tls), "acme/held", 1, 60);
    assert!(wait_until(Duration::from_secs(10), || s
        .broker
        .logs()
        .contains("held")));
    assert!(
        wait_until(Duration::from_secs(40), || s.served() != first),
        "not renewed; moat log:\n{}",
        moat.logs()
    );
    assert_eq!(s.served(), s.stored_serial());
    assert!(
        moat.metric(
            "moat_acme_last_success_timestamp_seconds",
            "listener=\"mqtts\""
        ) > 0.0
    );
    assert!(moat.metric("moat_certificate_reloads_total", "result=\"success\"") >= 1.0);
    let out = mosquitto_pub(
        "localhost",
        s.broker.port,
        None,
        "acme/held",
        "still-connected",
    );
    assert!(out.status.success());
    assert_eq!(
        sub.wait(Duration::from_secs(5)),
        Some(0),
        "the held session was dropped"
    );
    assert_eq!(sub.output().trim(), "still-connected");
}

#[test]
fn acme_ca_down_at_renewal_counts_a_failure_and_keeps_serving() {
    let mut s = Scene::new(Some(30));
    let moat = s.moat();
    let first = s.served();
    s.pebble.stop();
    let failures = moat.metric_reaching_within(
        "moat_acme_failures_total",
        "reason=\"directory_unreachable\"",
        1.0,
        Duration::from_secs(35),
    );
    assert!(failures >= 1.0, "no failure counted; log:\n{}", moat.logs());
    assert!(
        moat.logs().contains("ACME renewal failed"),
        "{}",
        moat.logs()
    );
    assert_eq!(
        s.served(),
        first,
        "the current certificate must stay served"
    );
}

#[test]
fn acme_unreachable_directory_at_first_start_fails_naming_the_field() {
    let dir = TestDir::new();
    let (port, admin, http01) = (free_port(), free_port(), free_port());
    let ca = Ca::new(dir.path(), "ca", "Some CA");
    let yaml = acme_yaml(
        admin,
        port,
        free_port(),
        &format!("https://127.0.0.1:{}/dir", free_port()),
        &ca.cert.display().to_string(),
        http01,
        &dir.join("acme").display().to_string(),
    );
    let mut moat = Moat::spawn(dir.path(), "moat.yaml", &yaml, Some(admin));
    let status = moat
        .wait_exit(Duration::from_secs(30))
        .expect("moat should exit");
    assert!(!status.success());
    let log = moat.logs();
    assert!(
        log.contains("listeners[0].tls.certificates[0].acme"),
        "{log}"
    );
    assert!(log.contains("directory_unreachable"), "{log}");
    assert!(!dir.join("acme/cert.pem").exists());
}
