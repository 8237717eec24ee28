//! Built-in ACME (issue 19) against a real pebble that really validates
//! the challenges (`PEBBLE_VA_ALWAYS_VALID=0`): first issuance over
//! HTTP-01, and over TLS-ALPN-01 on a listener that requires device
//! certificates; a restart that reuses the stored certificate; renewals at
//! 2/3 of a short lifetime while 500 mosquitto_sub sessions stay connected
//! and receive every QoS 1 message; a CA that is down at renewal time; and
//! a first start with no CA, which serves nothing on the name and is not
//! ready.

use std::time::Duration;

use moat_testkit::*;

/// One listener whose certificate is an `acme:` entry for `moat.test`;
/// `challenge` is the entry's challenge lines, `tls_extra` more lines of
/// the listener's `tls:` (indented by 6).
fn acme_yaml(
    (admin, port, backend): (u16, u16, u16),
    directory: &str,
    ca: &str,
    challenge: &str,
    state: &str,
    tls_extra: &str,
) -> String {
    format!(
        "log:\n  level: info,moat=debug\nadmin:\n  listen: 127.0.0.1:{admin}\nlisteners:\n  - name: mqtts\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:{backend}\n    tls:\n      certificates:\n        - acme:\n            directory: {directory}\n            contact: [mailto:ops@moat.test]\n            domains: [moat.test]\n            state_dir: {state}\n            ca_bundle: {ca}\n            {challenge}\n{tls_extra}"
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
    /// HTTP-01 on pebble's `http_port`.
    fn new(validity: Option<u64>) -> Self {
        Self::with(
            validity,
            |p| format!("http01_listen: 127.0.0.1:{}", p.http_port),
            "",
        )
    }

    /// `challenge` from the running pebble; pebble validates TLS-ALPN-01
    /// on moat's listener.
    fn with(validity: Option<u64>, challenge: impl Fn(&Pebble) -> String, tls_extra: &str) -> Self {
        let dir = TestDir::new();
        let (port, admin) = (free_port(), free_port());
        let pebble = Pebble::start_with(&dir, validity, port, "");
        let broker = Mosquitto::start(dir.path());
        let yaml = acme_yaml(
            (admin, port, broker.port),
            &pebble.directory(),
            &pebble.ca_bundle.display().to_string(),
            &challenge(&pebble),
            &dir.join("acme").display().to_string(),
            tls_extra,
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

    /// moat, once its certificate is obtained and it reports ready.
    fn moat(&self) -> Moat {
        let moat = Moat::start(self.dir.path(), &self.yaml, Some(self.admin));
        assert!(
            wait_until(Duration::from_secs(30), || moat.get("/readyz").0 == 200),
            "not ready: {:?}; log:\n{}",
            moat.get("/readyz"),
            moat.logs()
        );
        moat
    }

    fn stored_serial(&self) -> String {
        let files = CertFiles {
            cert: self.dir.join("acme/cert.pem"),
            key: self.dir.join("acme/key.pem"),
            cert_pem: String::new(),
        };
        norm_serial(&files.serial())
    }

    /// A handshake as `moat.test` that must verify to pebble's `root` and
    /// the name, with `more` s_client arguments; its output.
    fn verified(&self, root: &std::path::Path, more: &[&str]) -> String {
        let mut args = vec![
            "-servername",
            "moat.test",
            "-verify_hostname",
            "moat.test",
            "-verify_return_error",
        ];
        args.extend_from_slice(more);
        s_client_ok(self.port, root, &args)
    }

    /// Publishes one QoS 1 message through moat with `tls`, which must work.
    fn publishes(&self, tls: &Tls) {
        let out = mosquitto_pub("localhost", self.port, Some(tls), "acme/t", "hi");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    s.verified(&root, &[]);
    let serial = s.stored_serial();
    assert_eq!(s.served(), serial);
    // A device reaches the real broker through moat.
    s.publishes(&Tls::ca(&root).with_insecure());
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
        !moat
            .logs()
            .contains("no ACME certificate for these names yet"),
        "{}",
        moat.logs()
    );
    assert_eq!(s.served(), serial);
    assert_eq!(s.pebble.logs().matches("POST /order-plz").count(), orders);
}

#[test]
fn acme_first_issuance_over_tls_alpn_01_on_a_listener_that_requires_device_certificates() {
    let dir_ca = TestDir::new();
    let devices = Ca::new(dir_ca.path(), "devices", "Devices CA");
    let device = devices.issue(dir_ca.path(), "dev-1", &Issue::client("dev-1"));
    let s = Scene::with(
        None,
        |_| "challenge: tls-alpn-01\n            key_type: ed25519".to_string(),
        &format!(
            "      client_auth:\n        mode: required\n        ca: {}\n",
            devices.cert.display()
        ),
    );
    let moat = s.moat();
    // pebble validated on the listener itself: no HTTP listener exists.
    assert!(
        moat.metric("moat_acme_tls_alpn_validations_total", "listener=\"mqtts\"") >= 1.0,
        "{}",
        moat.metrics()
    );
    assert!(moat.logs().contains("answered a TLS-ALPN-01 validation"));
    assert!(
        !moat.logs().contains("HTTP-01 challenge listener started"),
        "{}",
        moat.logs()
    );
    let root = s.pebble.root(&s.dir);
    let (cert, key) = (
        device.cert.display().to_string(),
        device.key.display().to_string(),
    );
    let out = s.verified(&root, &["-cert", &cert, "-key", &key]);
    // key_type: ed25519, which pebble signs.
    assert!(
        out.to_ascii_lowercase()
            .contains("peer signature type: ed25519"),
        "{out}"
    );
    assert_eq!(s.served(), s.stored_serial());
    // The device requirement still holds for everything else.
    let tls = Tls::ca(&root).with_insecure();
    let out = mosquitto_pub("localhost", s.port, Some(&tls), "acme/t", "no cert");
    assert!(
        !out.status.success(),
        "a device without a certificate got in"
    );
    s.publishes(&tls.with_client(&device.cert, &device.key));
    // With no order in progress, an acme-tls/1 hello gets nothing.
    let (ok, out) = s_client(
        s.port,
        &["-servername", "moat.test", "-alpn", "acme-tls/1"],
        "",
    );
    assert!(!(ok && handshake_ok(&out)), "{out}");
    assert!(
        moat.metric_reaching(
            "moat_tls_handshakes_total",
            "reason=\"acme_no_challenge\"",
            1.0
        ) >= 1.0,
        "{}",
        moat.metrics()
    );
}

#[test]
fn acme_renews_at_two_thirds_of_the_lifetime_while_500_sessions_stay_connected_and_lose_nothing() {
    const SESSIONS: usize = 500;
    const MESSAGES: u32 = 400;
    // 30 s certificates: a renewal every 20 s, so the 24 s of publishing
    // below span at least one.
    let s = Scene::new(Some(30));
    let moat = s.moat();
    let root = s.pebble.root(&s.dir);
    let tls = Tls::ca(&root).with_insecure();
    let subs: Vec<Sub> = (0..SESSIONS)
        .map(|i| {
            Sub::spawn(
                s.dir.path(),
                &format!("acme-sub-{i}"),
                s.port,
                Some(&tls),
                "acme/load",
                MESSAGES,
                150,
            )
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || s
            .broker
            .logs()
            .matches(" as acme-sub-")
            .count()
            >= SESSIONS),
        "only {} of {SESSIONS} sessions reached the broker",
        s.broker.logs().matches(" as acme-sub-").count()
    );
    // Let the subscriptions land before the first message.
    std::thread::sleep(Duration::from_secs(2));
    let first = s.served();
    let reloads = moat.metric("moat_certificate_reloads_total", "result=\"success\"");
    let mut publisher = LinePub::spawn("acme-pub", s.port, Some(&tls), "acme/load");
    for n in 0..MESSAGES {
        publisher.send(&n.to_string());
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(publisher.finish(), Some(0), "the publisher failed");
    assert_ne!(
        s.served(),
        first,
        "no renewal while publishing; log:\n{}",
        moat.logs()
    );
    assert_eq!(s.served(), s.stored_serial());
    assert!(
        moat.metric("moat_certificate_reloads_total", "result=\"success\"") > reloads,
        "the renewal was not swapped in"
    );
    assert!(
        moat.metric(
            "moat_acme_last_success_timestamp_seconds",
            "listener=\"mqtts\""
        ) > 0.0
    );
    let want: Vec<String> = (0..MESSAGES).map(|n| n.to_string()).collect();
    for (i, mut sub) in subs.into_iter().enumerate() {
        assert_eq!(
            sub.wait(Duration::from_secs(60)),
            Some(0),
            "session {i} did not get all {MESSAGES} messages"
        );
        let got: Vec<String> = sub.output().lines().map(str::to_string).collect();
        assert_eq!(got, want, "session {i} lost or reordered messages");
    }
    // No session was dropped and came back: one connection each.
    assert_eq!(
        s.broker.logs().matches(" as acme-sub-").count(),
        SESSIONS,
        "a session reconnected"
    );
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
fn acme_with_no_certificate_yet_and_no_ca_serves_nothing_on_the_name_and_is_not_ready() {
    let dir = TestDir::new();
    let (port, admin, http01) = (free_port(), free_port(), free_port());
    let ca = Ca::new(dir.path(), "ca", "Some CA");
    let yaml = acme_yaml(
        (admin, port, free_port()),
        &format!("https://127.0.0.1:{}/dir", free_port()),
        &ca.cert.display().to_string(),
        &format!("http01_listen: 127.0.0.1:{http01}"),
        &dir.join("acme").display().to_string(),
        "",
    );
    let moat = Moat::start(dir.path(), &yaml, Some(admin));
    let failures = moat.metric_reaching_within(
        "moat_acme_failures_total",
        "reason=\"directory_unreachable\"",
        1.0,
        Duration::from_secs(20),
    );
    assert!(failures >= 1.0, "no failure counted; log:\n{}", moat.logs());
    // Still running, not ready, and saying why.
    let (code, body) = moat.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("moat.test") && body.contains("ACME"),
        "{body}"
    );
    assert_eq!(moat.metric("moat_ready", ""), 0.0);
    let (_, certs) = moat.get("/certificates");
    let certs: serde_json::Value = serde_json::from_str(&certs).expect("json");
    assert_eq!(certs["listeners"][0]["certificates"], serde_json::json!([]));
    assert_eq!(
        certs["listeners"][0]["acme_pending"][0]["domains"],
        serde_json::json!(["moat.test"])
    );
    let log = moat.logs();
    assert!(
        log.contains("listeners[0].tls.certificates[0].acme") && log.contains("ACME order failed"),
        "{log}"
    );
    assert!(log.contains("directory_unreachable"), "{log}");
    // Nothing is served on the name: no self-signed stand-in.
    let (ok, out) = s_client(port, &["-servername", "moat.test"], "");
    assert!(!(ok && handshake_ok(&out)), "{out}");
    assert!(
        moat.metric_reaching(
            "moat_tls_handshakes_total",
            "reason=\"no_certificate\"",
            1.0
        ) >= 1.0,
        "{}",
        moat.metrics()
    );
    assert!(!dir.join("acme/cert.pem").exists());
    // `moat check` says the entry is not obtained yet.
    let check = moat_cmd(&["check", "--config", dir.join("moat.yaml").to_str().unwrap()]);
    assert!(
        check.stdout.contains("not obtained yet"),
        "{}",
        check.stdout
    );
}

/// A listener block with one `acme:` entry for `domain`; `more` are more
/// lines of the entry (indented by 12).
fn acme_listener(
    name: &str,
    port: u16,
    backend: u16,
    domain: &str,
    pebble: &Pebble,
    state: &str,
    more: &str,
) -> String {
    format!(
        "  - name: {name}\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:{backend}\n    tls:\n      certificates:\n        - acme:\n            directory: {}\n            domains: [{domain}]\n            state_dir: {state}\n            ca_bundle: {}\n{more}",
        pebble.directory(),
        pebble.ca_bundle.display()
    )
}

#[test]
fn acme_refusals_from_the_ca_are_logged_with_its_problem_counted_and_nothing_is_served() {
    // pebble requires external account binding and refuses one name.
    let dir = TestDir::new();
    let good_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start_with(
        &dir,
        None,
        free_port(),
        &format!(
            r#", "externalAccountBindingRequired": true, "externalAccountMACKeys": {{"kid-1": "{good_key}"}}, "domainBlocklist": ["blocked.test"]"#
        ),
    );
    let broker = Mosquitto::start(dir.path());
    let good = dir.write("eab-good", good_key);
    let bad = dir.write(
        "eab-bad",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let eab = |f: &std::path::Path| {
        format!(
            "            eab:\n              kid: kid-1\n              hmac_key_file: {}\n",
            f.display()
        )
    };
    let http01 = format!(
        "            http01_listen: 127.0.0.1:{}\n",
        pebble.http_port
    );
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let state = |n: &str| dir.join(n).display().to_string();
    let admin = free_port();
    let listeners = [
        // Good EAB, an RSA key: obtained.
        acme_listener(
            "good",
            ports[0],
            broker.port,
            "moat.test",
            &pebble,
            &state("good"),
            &format!("{http01}            key_type: rsa2048\n{}", eab(&good)),
        ),
        // A wrong HMAC key: the account is refused.
        acme_listener(
            "bad_eab",
            ports[1],
            broker.port,
            "eab.test",
            &pebble,
            &state("bad_eab"),
            &eab(&bad),
        )
        .replace(
            "domains: [eab.test]\n",
            &format!("domains: [eab.test]\n{http01}"),
        ),
        // A name the CA will not issue for: the order is refused.
        acme_listener(
            "blocked",
            ports[2],
            broker.port,
            "blocked.test",
            &pebble,
            &state("blocked"),
            &format!("{http01}{}", eab(&good)),
        ),
        // TLS-ALPN-01 where pebble finds no listener: the challenge fails.
        acme_listener(
            "unanswered",
            ports[3],
            broker.port,
            "fail.test",
            &pebble,
            &state("unanswered"),
            &format!("            challenge: tls-alpn-01\n{}", eab(&good)),
        ),
    ];
    let yaml = format!(
        "log:\n  level: info,moat=debug\nadmin:\n  listen: 127.0.0.1:{admin}\nlisteners:\n{}",
        listeners.concat()
    );
    let moat = Moat::start(dir.path(), &yaml, Some(admin));
    for (listener, reason) in [
        ("bad_eab", "order_refused"),
        ("blocked", "order_refused"),
        ("unanswered", "challenge_failed"),
    ] {
        let n = moat.metric_reaching_within(
            "moat_acme_failures_total",
            &format!("listener=\"{listener}\",reason=\"{reason}\""),
            1.0,
            Duration::from_secs(30),
        );
        assert!(
            n >= 1.0,
            "{listener}: no {reason} counted; log:\n{}",
            moat.logs()
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || dir
            .join("good/cert.pem")
            .exists()),
        "the good entry got nothing; log:\n{}",
        moat.logs()
    );
    let log = moat.logs();
    // Each refusal is logged with the CA's problem document.
    for (listener, problem) in [
        ("bad_eab", "urn:ietf:params:acme:error:"),
        ("blocked", "urn:ietf:params:acme:error:rejectedIdentifier"),
        ("unanswered", "urn:ietf:params:acme:error:"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("listener={listener}"))
                    && l.contains(&format!("ACME problem type {problem}"))),
            "{listener}: {problem} not logged:\n{log}"
        );
    }
    for field in [1, 2, 3] {
        assert!(
            log.contains(&format!("listeners[{field}].tls.certificates[0].acme")),
            "listeners[{field}] not named:\n{log}"
        );
    }
    // The good name is served (an RSA certificate); the others are not,
    // and /readyz names them.
    assert!(
        wait_until(Duration::from_secs(10), || !served_serial(
            ports[0],
            "moat.test"
        )
        .is_empty()),
        "{}",
        moat.logs()
    );
    let (ok, out) = s_client(ports[0], &["-servername", "moat.test"], "");
    assert!(ok && out.contains("Server public key is 2048 bit"), "{out}");
    for (i, name) in [(1, "eab.test"), (2, "blocked.test"), (3, "fail.test")] {
        assert!(served_serial(ports[i], name).is_empty(), "{name} is served");
    }
    let (code, body) = moat.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("ACME"), "{body}");
    for d in ["good", "bad_eab", "blocked", "unanswered"] {
        let stored = dir.join(d).join("cert.pem").exists();
        assert_eq!(stored, d == "good", "{d}");
    }
}

#[test]
fn acme_account_key_file_is_the_account_and_a_wrong_one_is_refused_at_start() {
    let s = Scene::new(None);
    let key = s.dir.join("account.key");
    let rsa = s.dir.join("rsa.key");
    for (path, alg) in [
        (&key, "ec_paramgen_curve:P-256"),
        (&rsa, "rsa_keygen_bits:2048"),
    ] {
        let algorithm = if alg.starts_with("ec") { "EC" } else { "RSA" };
        let st = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", algorithm, "-pkeyopt", alg, "-out"])
            .arg(path)
            .status()
            .expect("openssl");
        assert!(st.success());
    }
    let with_key = |k: &std::path::Path| {
        s.yaml.replace(
            "            http01_listen",
            &format!(
                "            account_key: {}\n            http01_listen",
                k.display()
            ),
        )
    };
    // An RSA key: refused before anything is ordered, naming the field.
    let mut moat = Moat::spawn(s.dir.path(), "rsa.yaml", &with_key(&rsa), Some(s.admin));
    let status = moat
        .wait_exit(Duration::from_secs(20))
        .expect("moat should exit");
    assert!(!status.success());
    let log = moat.logs();
    assert!(
        log.contains("listeners[0].tls.certificates[0].acme.account_key")
            && log.contains("not an ECDSA P-256 key"),
        "{log}"
    );
    assert_eq!(s.pebble.logs().matches("POST /order-plz").count(), 0);
    // The P-256 key: the order runs under its account, and moat keeps no
    // account of its own.
    let moat = Moat::start(s.dir.path(), &with_key(&key), Some(s.admin));
    assert!(
        wait_until(Duration::from_secs(30), || moat.get("/readyz").0 == 200),
        "{}",
        moat.logs()
    );
    assert!(s.dir.join("acme/cert.pem").exists());
    assert!(!s.dir.join("acme/account.json").exists());
    let check = moat_cmd(&[
        "check",
        "--config",
        s.dir.join("moat.yaml").to_str().unwrap(),
    ]);
    assert!(
        check.stdout.contains("account of the key"),
        "{}",
        check.stdout
    );
}
