//! The command line: `moat check`'s report and warnings, `moat version`,
//! and the quickstart as a new user runs it.

use std::time::Duration;

use moat_testkit::*;

fn listener(port: u16, chain: &std::path::Path, key: &std::path::Path, tls_extra: &str) -> String {
    let mut y = format!(
        "listeners:\n  - name: mqtts\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:1883\n    tls:\n      certificates:\n        - cert: {}\n          key: {}\n",
        chain.display(),
        key.display()
    );
    for l in tls_extra.lines() {
        y.push_str(&format!("      {l}\n"));
    }
    y
}

#[test]
fn check_describes_each_certificate() {
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    let devices = Ca::new(dir.path(), "devices", "Device CA");
    let server = ca.issue(
        dir.path(),
        "server",
        &Issue::server("mqtt.example.com", &["mqtt.example.com", "127.0.0.1"]),
    );
    let yaml = listener(
        free_port(),
        &server.cert,
        &server.key,
        &format!(
            "client_auth: {{ mode: required, ca: {} }}",
            devices.cert.display()
        ),
    );
    let out = moat_check(dir.path(), "moat.yaml", &yaml);
    assert_eq!(out.code, Some(0), "{out:?}");
    let o = &out.stdout;
    for needle in [
        "listener \"mqtts\"",
        "subject:   CN=mqtt.example.com",
        "SANs:      DNS:mqtt.example.com, IP:127.0.0.1",
        "issuer:    CN=Test CA",
        "key:       ECDSA P-256 (256 bits)",
        "signature: ecdsa-with-SHA256",
        "days left",
        "client certificates: required",
        "client CA bundle",
        "CN=Device CA",
        "0 warning(s)",
    ] {
        assert!(o.contains(needle), "missing {needle:?} in:\n{o}");
    }
    assert!(
        o.contains(&format!("sha256:    {}", server.sha256())),
        "{o}"
    );
}

/// `moat check` resolves every backend name: `localhost` passes, a name
/// under `.invalid` (never resolvable, RFC 6761) is refused with its field;
/// `--no-resolve` skips the look-ups.
#[test]
fn check_refuses_a_backend_name_that_does_not_resolve_naming_its_field() {
    let dir = TestDir::new();
    let (_ca, server) = localhost_pki(dir.path());
    let yaml = listener(free_port(), &server.cert, &server.key, "").replace(
        "backend: 127.0.0.1:1883",
        "backend: [127.0.0.1:1883, localhost:1884, broker.moat-test.invalid:1883]",
    );
    let out = moat_check(dir.path(), "moat.yaml", &yaml);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("listeners[0].backend[2]: broker.moat-test.invalid:1883 does not resolve")
            && out.stderr.contains("--no-resolve"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("localhost:1884"),
        "localhost resolves: {}",
        out.stderr
    );
    let path = dir.join("moat.yaml");
    let skipped = moat_cmd(&[
        "check",
        "--no-resolve",
        "--config",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(skipped.code, Some(0), "{skipped:?}");
    assert!(
        skipped.stdout.contains("broker.moat-test.invalid:1883"),
        "{}",
        skipped.stdout
    );
}

#[test]
fn check_warns_about_expiry_weak_chains_sha1_and_uncovered_names() {
    let dir = TestDir::new();
    let d = dir.path();
    let root = openssl_issue(
        d,
        "root",
        None,
        &OpensslIssue {
            cn: "Root",
            san: "",
            days: 3650,
            ca: true,
            ..Default::default()
        },
    );
    // An intermediate with a 1024-bit RSA key, signed with SHA-1.
    let weak = openssl_issue(
        d,
        "weak-inter",
        Some((&root.cert, &root.key)),
        &OpensslIssue {
            cn: "Weak Intermediate",
            san: "",
            days: 3650,
            digest: "sha1",
            key: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            ca: true,
        },
    );
    // A leaf that expires in 10 days.
    let leaf = openssl_issue(
        d,
        "leaf",
        Some((&weak.cert, &weak.key)),
        &OpensslIssue {
            days: 10,
            ..Default::default()
        },
    );
    let chain = dir.write("chain.pem", format!("{}{}", leaf.cert_pem, weak.cert_pem));
    let yaml = listener(
        free_port(),
        &chain,
        &leaf.key,
        "server_names: [mqtt.example.com, localhost]",
    );
    let out = moat_check(d, "moat.yaml", &yaml);
    assert_eq!(out.code, Some(0), "warnings do not fail the check: {out:?}");
    let o = &out.stdout;
    assert!(
        o.contains("expires in 9 days") || o.contains("expires in 10 days"),
        "{o}"
    );
    assert!(o.contains("weak 1024-bit RSA key"), "{o}");
    // The root is ECDSA, so the intermediate's SHA-1 signature is ECDSA too.
    assert!(o.contains("signed with ecdsa-with-SHA1"), "{o}");
    assert!(
        o.contains("no certificate covers server name \"mqtt.example.com\""),
        "{o}"
    );
    assert!(
        !o.contains("server name \"localhost\""),
        "localhost is covered: {o}"
    );
    assert!(o.contains("4 warning(s)"), "{o}");
}

#[test]
fn check_warns_about_readable_private_keys() {
    let dir = TestDir::new();
    let (_ca, server) = localhost_pki(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&server.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = moat_check(
        dir.path(),
        "moat.yaml",
        &listener(free_port(), &server.cert, &server.key, ""),
    );
    assert!(
        out.stdout
            .contains("private key file is readable by other users (mode 644)"),
        "{out:?}"
    );
}

#[test]
fn version_prints_the_version() {
    let out = moat_cmd(&["version"]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout
            .starts_with(&format!("moat {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        out.stdout
    );
    let out = moat_cmd(&["--version"]);
    assert_eq!(out.code, Some(0));
}

#[test]
fn quickstart_generates_dev_certificates_and_logs_a_command_that_connects() {
    let dir = TestDir::new();
    let broker = Mosquitto::start(dir.path());
    let (port, admin) = (free_port(), free_port());
    let original = std::fs::read_to_string(workspace_root().join("config/quickstart.yaml"))
        .expect("quickstart.yaml");
    assert!(original.contains("127.0.0.1:8883") && original.contains("127.0.0.1:1883"));
    let yaml = original
        .replace("127.0.0.1:8883", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:1883", &format!("127.0.0.1:{}", broker.port))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"));
    let config = dir.write("config/quickstart.yaml", yaml);
    let mut moat = Moat::spawn_config(&config, Some(admin), &[]);
    assert!(
        moat.wait_for_log(" ready", Duration::from_secs(15)),
        "{}",
        moat.logs()
    );
    let logs = moat.logs();
    assert!(logs.contains("generated a DEVELOPMENT CA"), "{logs}");
    assert!(
        logs.contains("DEVELOPMENT CERTIFICATES ARE IN USE"),
        "{logs}"
    );
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(
            dir.join("config/dev-tls").join(f).is_file(),
            "{f} not generated"
        );
    }
    // Run the exact command moat logged (bounded, one message).
    let line = logs
        .lines()
        .find(|l| l.contains("connect with: "))
        .expect("command logged");
    let command = line
        .split("connect with: ")
        .nth(1)
        .expect("command")
        .trim()
        .to_string();
    assert!(
        command.starts_with("mosquitto_sub ") && command.contains("--cafile"),
        "{command}"
    );
    let out_file = dir.join("sub.out");
    let mut sub = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} -C 1 -W 15 > {} 2>&1",
            out_file.display()
        ))
        .spawn()
        .expect("run the logged command");
    let mut got = String::new();
    for _ in 0..40 {
        let _ = mosquitto_pub(
            "localhost",
            broker.port,
            None,
            "quickstart/hello",
            "it works",
        );
        if let Some(s) = sub.try_wait().expect("wait") {
            got = std::fs::read_to_string(&out_file).unwrap_or_default();
            assert!(s.success(), "{got}");
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(got.trim(), "quickstart/hello it works");

    // A second start reuses the certificates.
    let ca_before = std::fs::read(dir.join("config/dev-tls/ca.pem")).expect("ca");
    moat.signal("TERM");
    assert_eq!(
        moat.wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    let again = Moat::spawn_config(&config, Some(admin), &[]);
    assert!(
        again.wait_for_log(" ready", Duration::from_secs(15)),
        "{}",
        again.logs()
    );
    assert!(!again.logs().contains("generated a DEVELOPMENT CA"));
    assert!(again.logs().contains("DEVELOPMENT CERTIFICATES ARE IN USE"));
    assert_eq!(
        std::fs::read(dir.join("config/dev-tls/ca.pem")).expect("ca"),
        ca_before
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_structured_fields() {
    let mut g = Gateway::new().no_admin().prepare();
    g.yaml = g.yaml.replacen(
        "log:\n  level: debug\n",
        "log:\n  format: json\n  level: info\n",
        1,
    );
    let config = g.write_config();
    let moat = Moat::spawn_config(&config, None, &[]);
    assert!(
        moat.wait_for_log("\"ready\"", Duration::from_secs(15)),
        "{}",
        moat.logs()
    );
    round_trip(g.path(), g.port, Some(&g.tls()), g.broker().port, None);
    assert!(moat.wait_for_log("connection closed", Duration::from_secs(5)));
    let mut connected = None;
    for line in moat.logs().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["message"] == "client connected" {
            connected = Some(v);
        }
    }
    let v = connected.expect("a 'client connected' line");
    assert_eq!(v["tls.version"], "TLSv1_3");
    assert_eq!(v["span"]["listener"], "mqtts");
}

#[test]
fn import_mosquitto_translates_a_tls_guide_config_that_then_serves() {
    let dir = TestDir::new();
    let (ca, server) = localhost_pki(dir.path());
    // The configuration from a typical Mosquitto TLS guide.
    let conf = dir.write(
        "mosquitto.conf",
        format!(
            "per_listener_settings true\nlistener 8883\ncafile {}\ncertfile {}\nkeyfile {}\nciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384\nallow_anonymous true\n",
            ca.cert.display(),
            server.cert.display(),
            server.key.display()
        ),
    );
    let out = moat_cmd(&["import-mosquitto", conf.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let yaml = out.stdout;
    assert!(yaml.contains("listen: 0.0.0.0:8883"), "{yaml}");
    assert!(
        yaml.contains("cipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384"),
        "{yaml}"
    );
    assert!(
        yaml.contains("`allow_anonymous true`: an authentication setting"),
        "{yaml}"
    );
    assert!(
        yaml.contains("Checklist for switching Mosquitto to plaintext on localhost"),
        "{yaml}"
    );
    let imported = dir.write("moat.yaml", &yaml);
    let check = moat_cmd(&["check", "--config", imported.to_str().unwrap()]);
    assert_eq!(
        check.code,
        Some(0),
        "the imported configuration must pass moat check: {check:?}"
    );

    // Follow the checklist: Mosquitto plaintext on localhost, moat in front.
    let broker = Mosquitto::start(dir.path());
    let port = free_port();
    let running = yaml
        .replace("0.0.0.0:8883", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:1883", &format!("127.0.0.1:{}", broker.port));
    let _moat = Moat::start(dir.path(), &running, None);
    let got = round_trip(
        dir.path(),
        port,
        Some(&Tls::ca(&ca.cert)),
        broker.port,
        None,
    );
    assert!(got.starts_with("hello-"), "{got}");
}
