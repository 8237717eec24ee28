//! Certificate-side faults that must not cause an outage, each visible in
//! metrics: certificate files deleted, a CRL that cannot be read, and a
//! full disk under the OCSP cache. (A key whose permissions change is in
//! `confinement.rs`, where moat runs as a user the permissions bind.)

use std::sync::Arc;
use std::time::Duration;

use moat_testkit::*;

fn failures(moat: &Moat) -> f64 {
    moat.metric("moat_certificate_reloads_total", "result=\"failure\"")
}

/// Sends SIGHUP and waits for one more failed reload.
fn reload_fails(moat: &Moat) {
    let before = failures(moat);
    moat.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || failures(moat) > before),
        "no failed reload counted:\n{}",
        moat.logs()
    );
}

/// Sends SIGHUP and waits for the pending-reload alarm to clear.
fn reload_clears(moat: &Moat) {
    moat.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || moat
            .metric("moat_certificate_reload_pending", "")
            == 0.0),
        "{}",
        moat.logs()
    );
}

#[test]
fn deleted_certificate_files_keep_the_last_good_ones_in_service() {
    let s = Gateway::new().start();
    let ca = s.ca();
    let server = &s.server;
    let port = s.port;
    let moat = &s.moat;
    let served = norm_serial(&server.serial());
    let saved = (
        std::fs::read(&server.cert).expect("cert"),
        std::fs::read(&server.key).expect("key"),
    );
    std::fs::remove_file(&server.cert).expect("rm cert");
    std::fs::remove_file(&server.key).expect("rm key");
    reload_fails(moat);
    let logs = moat.logs();
    assert!(logs.contains(&server.cert.display().to_string()), "{logs}");
    assert!(
        logs.contains("still serving the previous certificates"),
        "{logs}"
    );
    assert_eq!(norm_serial(&served_serial(port, "localhost")), served);
    assert_eq!(moat.metric("moat_certificate_reload_pending", ""), 1.0);
    assert_eq!(moat.get("/readyz").0, 200, "stays ready");
    let out = mosquitto_pub(
        "localhost",
        port,
        Some(&Tls::ca(&ca.cert)),
        "t",
        "still here",
    );
    assert!(out.status.success(), "{out:?}");

    // Back in place: the next reload succeeds and the alarm clears.
    std::fs::write(&server.key, &saved.1).expect("key");
    std::fs::write(&server.cert, &saved.0).expect("cert");
    reload_clears(moat);
}

#[test]
fn an_unreadable_crl_keeps_the_last_good_one() {
    let dir = TestDir::new();
    let devices = OpensslCa::new(dir.path(), "devices");
    let good = devices.issue_client(dir.path(), "good", "/CN=good-device", None);
    let stolen = devices.issue_client(dir.path(), "stolen", "/CN=stolen-device", None);
    devices.revoke(&stolen.cert);
    let crl = dir.join("devices.crl.pem");
    devices.gencrl(&crl);
    let client_auth = devices.client_auth_with_crl(&crl);
    let s = Gateway::new()
        .in_dir(dir)
        .ca_named("server-ca", "Server CA")
        .tls_yaml(&client_auth)
        .start();
    let (port, moat) = (s.port, &s.moat);
    let admitted = |d: &CertFiles| {
        mosquitto_pub("localhost", port, Some(&s.device_tls(d)), "t", "x")
            .status
            .success()
    };
    assert!(admitted(&good), "{}", moat.logs());
    assert!(!admitted(&stolen), "the revoked device got in");

    // Garbage where the CRL was, then no file at all: each reload fails,
    // names the file, and the last good CRL stays in force.
    std::fs::write(&crl, "not a CRL\n").expect("garbage");
    reload_fails(moat);
    std::fs::remove_file(&crl).expect("rm CRL");
    reload_fails(moat);
    let logs = moat.logs();
    assert!(
        logs.matches(&crl.display().to_string()).count() >= 2,
        "{logs}"
    );
    assert!(admitted(&good), "{}", moat.logs());
    assert!(
        !admitted(&stolen),
        "the revoked device got in while the CRL was unreadable"
    );
    assert!(
        moat.metric_reaching("moat_client_auth_denied_total", "reason=\"revoked\"", 2.0) >= 2.0
    );
    assert_eq!(moat.metric("moat_certificate_reload_pending", ""), 1.0);

    // A good CRL again: the alarm clears.
    devices.gencrl(&crl);
    reload_clears(moat);
    assert!(!admitted(&stolen));
}

#[test]
fn a_full_disk_under_the_ocsp_cache_keeps_stapling_and_is_counted() {
    require_root("it mounts a 64 KiB tmpfs in a private mount namespace for moat");
    require("unshare", "util-linux");
    let dir = TestDir::new();
    let broker = Mosquitto::start(dir.path());
    let responder = Responder::start(Behaviour::Close);
    let ca = Arc::new(OpensslCa::with_options(
        dir.path(),
        "ocsp-ca",
        &CaOptions::ocsp(responder.url()),
    ));
    responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));
    let server = ca.issue_server(dir.path(), "server");
    let chain_text = |c: &CertFiles| {
        format!(
            "{}{}",
            c.cert_pem,
            std::fs::read_to_string(&ca.cert).expect("CA")
        )
    };
    let chain = dir.write("chain.pem", chain_text(&server));
    let served = CertFiles {
        cert: chain.clone(),
        key: server.key.clone(),
        cert_pem: server.cert_pem.clone(),
    };
    let cache = dir.join("ocsp-cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        Some(admin),
        &[listener_yaml(
            "mqtts",
            port,
            broker.port,
            &[&served],
            &format!("ocsp: {{ cache_dir: {} }}", cache.display()),
            "",
        )],
    );
    // moat sees a tiny file system at the cache directory, filled up.
    let script = "mount -t tmpfs -o size=64k moat-test \"$0\" && \
                  (dd if=/dev/zero of=\"$0/filler\" bs=4k 2>/dev/null; true) && exec \"$@\"";
    let cache_arg = cache.display().to_string();
    let moat = Moat::start_wrapped(
        dir.path(),
        &yaml,
        Some(admin),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            &cache_arg,
        ],
    );
    let staple = || {
        let (_, out) = s_client(
            port,
            &[
                "-status",
                "-servername",
                "localhost",
                "-CAfile",
                ca.cert.to_str().unwrap(),
            ],
            "",
        );
        out.contains("Cert Status: good")
    };
    assert!(
        wait_until(Duration::from_secs(10), staple),
        "{}",
        moat.logs()
    );
    let write_failures = || moat.metric("moat_ocsp_cache_write_failures_total", "");
    assert!(
        wait_until(Duration::from_secs(5), || write_failures() >= 1.0),
        "{}",
        moat.logs()
    );
    assert!(
        moat.logs().contains("No space left on device"),
        "{}",
        moat.logs()
    );
    assert_eq!(moat.get("/readyz").0, 200);

    // Space again (seen through moat's own mount namespace), and a new
    // leaf to staple: its response reaches the cache.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root{}", moat.pid(), cache.display()));
    std::fs::remove_file(inside.join("filler")).expect("free the space");
    let next = ca.issue_server(dir.path(), "server-2");
    let tmp = dir.write("chain.pem.new", chain_text(&next));
    std::fs::copy(&next.key, &server.key).expect("key");
    std::fs::rename(tmp, &chain).expect("chain into place");
    let cached = || {
        std::fs::read_dir(&inside)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            })
            .unwrap_or(false)
    };
    assert!(
        wait_until(Duration::from_secs(10), cached),
        "{}",
        moat.logs()
    );
    assert!(staple(), "{}", moat.logs());
    // The host's directory never saw any of it.
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 0);
}
