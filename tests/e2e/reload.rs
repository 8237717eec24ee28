//! Certificate reloads without a restart: every trigger, bad files kept out,
//! live connections untouched, tickets across rotations, client CA changes,
//! the Kubernetes Secret symlink swap, and the metrics and status endpoint.

use std::time::{Duration, Instant};

use moat_testkit::*;

/// moat with one listener serving `tls/live.pem`/`tls/live.key`
/// ([`Prepared::server`]), and the given `reload:` settings.
fn setup(reload: &str) -> Running {
    Gateway::new().cert_at("tls", "live").reload(reload).start()
}

const NO_AUTO: &str = "  watch: false\n  check_interval: 0s";

/// What the reload tests ask of a running gateway.
trait Served {
    fn issue(&self, name: &str) -> CertFiles;
    fn serial(&self) -> String;
    fn wait_serial(&self, want: &CertFiles, within: Duration) -> Duration;
}

impl Served for Running {
    fn issue(&self, name: &str) -> CertFiles {
        self.ca().issue(
            self.dir.path(),
            name,
            &Issue::server("localhost", &["localhost"]),
        )
    }

    fn serial(&self) -> String {
        norm_serial(&served_serial(self.port, "localhost"))
    }

    /// Waits until the served serial is `want`; returns how long it took.
    fn wait_serial(&self, want: &CertFiles, within: Duration) -> Duration {
        let want = norm_serial(&want.serial());
        let start = Instant::now();
        let ok = wait_until(within, || self.serial() == want);
        assert!(
            ok,
            "serial {want} not served within {within:?}; logs:\n{}",
            self.moat.logs()
        );
        start.elapsed()
    }
}

#[test]
fn sighup_and_post_reload_serve_the_new_certificate_and_keep_live_connections() {
    let s = setup(NO_AUTO);
    let old_serial = norm_serial(&s.server.serial());
    assert_eq!(s.serial(), old_serial);
    let tls = Tls::ca(&s.ca().cert);
    let mut sub = Sub::spawn(
        s.dir.path(),
        "live-sub",
        s.port,
        Some(&tls),
        "reload/t",
        1,
        30,
    );
    assert!(wait_until(Duration::from_secs(10), || s
        .broker()
        .logs()
        .contains("live-sub")));

    // Without watching, nothing happens until asked.
    let second = s.issue("second");
    replace_atomically(&second, &s.server.cert, &s.server.key);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.serial(), old_serial);

    s.moat.signal("HUP");
    s.wait_serial(&second, Duration::from_secs(5));
    assert!(
        s.moat.logs().contains("trigger=\"SIGHUP\""),
        "{}",
        s.moat.logs()
    );

    let third = s.issue("third");
    replace_atomically(&third, &s.server.cert, &s.server.key);
    let (code, body) =
        http_request(s.moat.admin.unwrap(), "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["listeners"][0]["outcome"], "reloaded");
    assert_eq!(
        norm_serial(v["listeners"][0]["serial"].as_str().unwrap()),
        norm_serial(&third.serial())
    );
    assert_eq!(s.serial(), norm_serial(&third.serial()));

    // Reloading unchanged files is a no-op, reported as such.
    let (code, body) =
        http_request(s.moat.admin.unwrap(), "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200);
    assert!(body.contains("\"unchanged\""), "{body}");

    let m = s.moat.metrics();
    assert_eq!(
        metric_value(&m, "moat_certificate_reloads_total", "result=\"success\""),
        2.0
    );
    assert_eq!(
        metric_value(&m, "moat_certificate_reloads_total", "result=\"unchanged\""),
        1.0
    );
    assert_eq!(
        metric_value(&m, "moat_certificate_reloads_total", "result=\"failure\""),
        0.0
    );
    let serial_label = format!("serial=\"{}\"", norm_serial(&third.serial()));
    assert!(
        metric_value(
            &m,
            "moat_certificate_not_after_timestamp_seconds",
            &format!("role=\"leaf\",{serial_label}")
        ) > 1.9e9
    );
    assert!(
        !m.contains(&format!("serial=\"{old_serial}\"")),
        "the old certificate's series must go:\n{m}"
    );

    // The subscriber that connected before both reloads is still there.
    let out = mosquitto_pub(
        "localhost",
        s.broker().port,
        None,
        "reload/t",
        "after-reloads",
    );
    assert!(out.status.success());
    assert_eq!(sub.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(sub.output().trim(), "after-reloads");
}

#[test]
fn file_watch_picks_up_a_rename_into_place_within_two_seconds() {
    let s = setup("  watch: true\n  check_interval: 0s");
    for i in 0..3 {
        let next = s.issue(&format!("next-{i}"));
        replace_atomically(&next, &s.server.cert, &s.server.key);
        let took = s.wait_serial(&next, Duration::from_secs(2));
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    assert!(s.moat.logs().contains("trigger=\"file change\""));
}

#[test]
fn in_place_overwrite_is_picked_up_too() {
    let s = setup("  watch: true\n  check_interval: 0s");
    let next = s.issue("next");
    // `cp` over the old files: truncate and write, no rename.
    std::fs::copy(&next.cert, &s.server.cert).expect("overwrite cert");
    std::fs::copy(&next.key, &s.server.key).expect("overwrite key");
    s.wait_serial(&next, Duration::from_secs(2));
}

#[test]
fn periodic_content_check_finds_changes_without_events() {
    let s = setup("  watch: false\n  check_interval: 1s");
    let next = s.issue("next");
    replace_atomically(&next, &s.server.cert, &s.server.key);
    s.wait_serial(&next, Duration::from_secs(4));
    assert!(s.moat.logs().contains("trigger=\"periodic check\""));
}

#[test]
fn bad_files_are_refused_the_old_certificate_stays_and_failures_are_counted() {
    let s = setup("  watch: true\n  check_interval: 0s");
    let good_serial = norm_serial(&s.server.serial());
    let original_cert = std::fs::read(&s.server.cert).expect("cert");
    let original_key = std::fs::read(&s.server.key).expect("key");
    let other = s.issue("other");
    let mut expired_opts = Issue::server("localhost", &["localhost"]);
    expired_opts.validity = Some(((2020, 1, 1), (2021, 1, 1)));
    let expired = s.ca().issue(s.dir.path(), "expired", &expired_opts);

    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not a certificate\n".to_vec(),
            original_key.clone(),
            "no PEM certificate",
        ),
        (
            "mismatched key",
            original_cert.clone(),
            std::fs::read(&other.key).expect("key"),
            "does not match",
        ),
        (
            "expired",
            std::fs::read(&expired.cert).expect("cert"),
            std::fs::read(&expired.key).expect("key"),
            "expired at 2021-01-01",
        ),
    ];
    for (i, (what, cert, key, reason)) in cases.into_iter().enumerate() {
        std::fs::write(&s.server.key, &key).expect("write key");
        std::fs::write(&s.server.cert, &cert).expect("write cert");
        let failures = (i + 1) as f64;
        assert!(
            wait_until(Duration::from_secs(5), || s
                .moat
                .metric("moat_certificate_reloads_total", "result=\"failure\"")
                >= failures),
            "{what}: no failure counted; logs:\n{}",
            s.moat.logs()
        );
        assert!(
            s.moat.logs().contains(reason),
            "{what}: reason {reason:?} not logged:\n{}",
            s.moat.logs()
        );
        assert_eq!(
            s.serial(),
            good_serial,
            "{what}: the old certificate must stay in service"
        );
        assert_eq!(s.moat.metric("moat_certificate_reload_pending", ""), 1.0);
        assert_eq!(s.moat.get("/readyz").0, 200, "{what}: stays ready");
    }
    assert!(s
        .moat
        .logs()
        .contains("still serving the previous certificates"));
    // Good files again: pending clears.
    let fixed = s.issue("fixed");
    replace_atomically(&fixed, &s.server.cert, &s.server.key);
    s.wait_serial(&fixed, Duration::from_secs(3));
    assert_eq!(s.moat.metric("moat_certificate_reload_pending", ""), 0.0);
}

#[test]
fn a_half_written_file_completed_a_moment_later_causes_no_outage() {
    let s = setup("  watch: true\n  check_interval: 0s");
    let old = norm_serial(&s.server.serial());
    let next = s.issue("next");
    let cert = std::fs::read(&next.cert).expect("cert");
    // Key first (a mismatch until the certificate lands), then half the
    // certificate, then the rest.
    std::fs::copy(&next.key, &s.server.key).expect("key");
    std::fs::write(&s.server.cert, &cert[..cert.len() / 2]).expect("half");
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut served = Vec::new();
    while Instant::now() < deadline {
        served.push(s.serial());
    }
    std::fs::write(&s.server.cert, &cert).expect("complete");
    s.wait_serial(&next, Duration::from_secs(3));
    assert!(!served.is_empty());
    for got in &served {
        assert_eq!(
            got, &old,
            "every handshake during the half-written window got the old certificate"
        );
    }
}

/// Issues a certificate into a kubelet-style timestamped directory as
/// `tls.crt` and `tls.key`.
fn secret_version(ca: &Ca, dir: &std::path::Path) -> CertFiles {
    std::fs::create_dir_all(dir).expect("mkdir");
    let c = ca.issue(dir, "tls", &Issue::server("localhost", &["localhost"]));
    let placed = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        cert_pem: c.cert_pem.clone(),
    };
    std::fs::rename(&c.cert, &placed.cert).expect("mv");
    std::fs::rename(&c.key, &placed.key).expect("mv");
    placed
}

/// The kubelet's update: a new `..data_tmp` link renamed over `..data`,
/// then the old directory removed.
fn kubelet_swap(secret: &std::path::Path, new_dir: &str, old: &std::path::Path) {
    std::os::unix::fs::symlink(new_dir, secret.join("..data_tmp")).expect("ln");
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(old).expect("rm old");
}

#[test]
fn kubernetes_secret_data_symlink_swap_is_picked_up() {
    // The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    let secret = dir.join("secret");
    let names = [
        "..2026_01_01_00_00_00.000000001",
        "..2026_02_01_00_00_00.000000002",
        "..2026_03_01_00_00_00.000000003",
    ];
    let first = secret_version(&ca, &secret.join(names[0]));
    std::os::unix::fs::symlink(names[0], secret.join("..data")).expect("ln");
    std::os::unix::fs::symlink("..data/tls.crt", secret.join("tls.crt")).expect("ln");
    std::os::unix::fs::symlink("..data/tls.key", secret.join("tls.key")).expect("ln");
    let configured = CertFiles {
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
        cert_pem: first.cert_pem.clone(),
    };
    let s = Gateway::new()
        .in_dir(dir)
        .ca(ca)
        .cert(configured)
        .no_admin()
        .start();
    let (port, moat) = (s.port, &s.moat);
    assert_eq!(
        norm_serial(&served_serial(port, "localhost")),
        norm_serial(&first.serial())
    );

    // Two rotations: the second proves the watch followed the moved target.
    for i in 1..3 {
        let next = secret_version(s.ca(), &secret.join(names[i]));
        let want = norm_serial(&next.serial());
        kubelet_swap(&secret, names[i], &secret.join(names[i - 1]));
        assert!(
            wait_until(Duration::from_secs(3), || norm_serial(&served_serial(
                port,
                "localhost"
            )) == want),
            "rotation {i}: {}",
            moat.logs()
        );
    }
}

#[test]
fn session_tickets_keep_working_across_a_certificate_reload() {
    let s = setup("  watch: true\n  check_interval: 0s");
    let cfg = rustls_client(&s.ca().cert, None);
    let c = mqtt_session(s.port, cfg.clone(), "ticket-holder").expect("handshake");
    drop(c);

    let next = s.issue("next");
    replace_atomically(&next, &s.server.cert, &s.server.key);
    s.wait_serial(&next, Duration::from_secs(3));

    let resumed_before = s.moat.metric("moat_tls_sessions_resumed_total", "");
    let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("handshake");
    assert_eq!(
        c.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    // The client is done with the handshake before moat has read its
    // Finished; a CONNACK proves moat finished too (and counted it).
    c.write_all(&mqtt_connect_v311("ticket-holder-2"))
        .expect("CONNECT");
    assert_eq!(c.read_exact(4).expect("CONNACK"), [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(
        s.moat.metric("moat_tls_sessions_resumed_total", ""),
        resumed_before + 1.0
    );
}

#[test]
fn a_changed_client_ca_bundle_takes_effect_and_old_tickets_cannot_bypass_it() {
    let dir = TestDir::new();
    let old_devices = Ca::new(dir.path(), "old-devices", "Old Device CA");
    let new_devices = Ca::new(dir.path(), "new-devices", "New Device CA");
    let bundle = dir.write("clients-ca.pem", &old_devices.cert_pem);
    let old_device = old_devices.issue(dir.path(), "old-device", &Issue::client("old-device"));
    let new_device = new_devices.issue(dir.path(), "new-device", &Issue::client("new-device"));
    let tls_extra = format!("client_auth:\n  mode: required\n  ca: {}", bundle.display());
    let s = Gateway::new()
        .in_dir(dir)
        .ca_named("ca", "Server CA")
        .tls_yaml(&tls_extra)
        .start();
    let (port, moat, ca) = (s.port, &s.moat, s.ca());

    // The old device connects and keeps a session ticket.
    let old_cfg = rustls_client(&ca.cert, Some((&old_device.cert, &old_device.key)));
    let c = mqtt_session(port, old_cfg.clone(), "old-device").expect("old device accepted");
    drop(c);

    // The bundle now trusts only the new device CA.
    let tmp = s.dir.write("clients-ca.pem.new", &new_devices.cert_pem);
    std::fs::rename(&tmp, &bundle).expect("swap bundle");
    assert!(
        moat.wait_for_log("session tickets rotated", Duration::from_secs(3)),
        "{}",
        moat.logs()
    );

    // The old device can neither resume nor handshake.
    let refused = RustlsConn::connect(port, "localhost", old_cfg).and_then(|mut c| {
        c.write_all(&mqtt_connect_v311("old-device"))?;
        c.read_exact(4)
    });
    assert!(
        refused.is_err(),
        "the old device got in after the CA change"
    );
    assert!(moat.wait_for_log("reason=\"bad_client_certificate\"", Duration::from_secs(3)));
    // The new device is accepted.
    let new_cfg = rustls_client(&ca.cert, Some((&new_device.cert, &new_device.key)));
    let _c = mqtt_session(port, new_cfg, "new-device").expect("new device accepted");
    // Client CA validity is exported too.
    assert!(
        moat.metric(
            "moat_certificate_not_after_timestamp_seconds",
            "role=\"client_ca\",subject=\"CN=New Device CA\""
        ) > 0.0
    );
    assert_eq!(
        moat.metric(
            "moat_certificate_not_after_timestamp_seconds",
            "subject=\"CN=Old Device CA\""
        ),
        0.0
    );
}

#[test]
fn certificates_endpoint_describes_what_is_served() {
    let s = setup(NO_AUTO);
    let (code, body) = s.moat.get("/certificates");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let l = &v["listeners"][0];
    assert_eq!(l["name"], "mqtts");
    assert!(l["loaded_at"].as_str().unwrap().ends_with('Z'));
    let c = &l["certificates"][0];
    assert_eq!(c["subject"], "CN=localhost");
    assert_eq!(c["sans"][0], "DNS:localhost");
    assert_eq!(
        norm_serial(c["serial"].as_str().unwrap()),
        norm_serial(&s.server.serial())
    );
    assert_eq!(c["source"], s.server.cert.display().to_string());
    assert!(c["not_after"].as_str().unwrap().starts_with("2035-01-01"));
    assert!(c["days_left"].as_i64().unwrap() > 0);
    assert_eq!(c["sha256"], s.server.sha256());
}

#[test]
fn a_busy_unrelated_file_next_to_the_certificates_does_not_delay_reloads() {
    let s = setup("  watch: true\n  check_interval: 0s");
    let busy = s.server.cert.with_file_name("busy.log");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(busy).expect("log");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = writeln!(f, "a log line every 50 ms");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let next = s.issue("next");
    replace_atomically(&next, &s.server.cert, &s.server.key);
    let took = s.wait_serial(&next, Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    assert!(took < Duration::from_secs(2), "{took:?}");
}
