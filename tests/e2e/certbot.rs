//! A real ACME renewal: certbot obtains a certificate from a local pebble,
//! moat serves it, and `certbot renew --force-renewal` (which moves the
//! `live/` symlinks to new `archive/` files) reaches moat with no restart
//! and no dropped connection.

use std::process::Command;
use std::time::Duration;

use moat_testkit::*;

fn certbot(dir: &TestDir, acme: &Pebble, args: &[&str]) {
    let out = Command::new("timeout")
        .arg("120")
        .arg("certbot")
        .args(args)
        .args([
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            &acme.http_port.to_string(),
            "--server",
            &format!("https://127.0.0.1:{}/dir", acme.acme_port),
            "--register-unsafely-without-email",
            "--agree-tos",
            "--non-interactive",
            "--config-dir",
            dir.join("le/config").to_str().unwrap(),
            "--work-dir",
            dir.join("le/work").to_str().unwrap(),
            "--logs-dir",
            dir.join("le/logs").to_str().unwrap(),
        ])
        .env("REQUESTS_CA_BUNDLE", &acme.ca_bundle)
        .output()
        .expect("run certbot");
    assert!(
        out.status.success(),
        "certbot {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certbot_renewal_reaches_moat_without_restart_or_dropped_connections() {
    let dir = TestDir::new();
    require("certbot", "certbot");
    let acme = Pebble::start(&dir, None);
    certbot(&dir, &acme, &["certonly", "-d", "test.example.com"]);
    let live = dir.join("le/config/live/test.example.com");
    let served = CertFiles {
        cert: live.join("fullchain.pem"),
        key: live.join("privkey.pem"),
        cert_pem: String::new(),
    };
    let leaf = CertFiles {
        cert: live.join("cert.pem"),
        key: live.join("privkey.pem"),
        cert_pem: String::new(),
    };
    let first_serial = norm_serial(&leaf.serial());

    let s = Gateway::new()
        .in_dir(dir)
        .cert(served)
        .tls_yaml("server_names: [test.example.com]")
        .start();
    let (dir, port, moat, broker) = (&s.dir, s.port, &s.moat, s.broker());
    assert_eq!(
        norm_serial(&served_serial(port, "test.example.com")),
        first_serial
    );

    // A device stays connected across the renewal (it trusts pebble's
    // root; the name test.example.com does not resolve here, hence
    // --insecure, which skips only the host name check).
    let root = acme.root(dir);
    let sub = std::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "--cafile",
            root.to_str().unwrap(),
            "--insecure",
        ])
        .args(["-t", "renew/t", "-C", "1", "-W", "60", "-i", "renewal-sub"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    assert!(
        wait_until(Duration::from_secs(10), || broker
            .logs()
            .contains("renewal-sub")),
        "{}",
        moat.logs()
    );

    // certbot sleeps up to 8 minutes before a non-interactive renewal.
    certbot(
        dir,
        &acme,
        &["renew", "--force-renewal", "--no-random-sleep-on-renew"],
    );
    let second_serial = norm_serial(&leaf.serial());
    assert_ne!(first_serial, second_serial, "certbot did not renew");
    assert!(
        std::fs::read_link(live.join("fullchain.pem"))
            .expect("symlink")
            .to_string_lossy()
            .ends_with("fullchain2.pem"),
        "certbot renews by moving the live symlinks"
    );
    assert!(
        wait_until(Duration::from_secs(5), || norm_serial(&served_serial(
            port,
            "test.example.com"
        )) == second_serial),
        "renewed certificate not served; logs:\n{}",
        moat.logs()
    );

    let out = mosquitto_pub("localhost", broker.port, None, "renew/t", "still-connected");
    assert!(out.status.success());
    let got = sub.wait_with_output().expect("sub output");
    assert!(
        got.status.success(),
        "the connection made before the renewal was dropped"
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "still-connected"
    );
    assert_eq!(
        moat.metric("moat_certificate_reloads_total", "result=\"success\""),
        1.0
    );
}
