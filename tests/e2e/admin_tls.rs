//! HTTPS and mutual TLS on the admin endpoint (`admin.tls`), the
//! `admin.health` setting, and the CLI (`moat healthcheck`,
//! `moat connections`) against it. The HTTPS client is `openssl s_client`,
//! a peer independent of moat's rustls.

use moat_testkit::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The admin PKI of a scene: the admin endpoint's certificate, the
/// operators' CA with one operator, and a stranger from another CA.
struct AdminPki {
    admin_ca: std::path::PathBuf,
    server: CertFiles,
    ops_ca: Ca,
    operator: CertFiles,
    stranger: CertFiles,
}

fn admin_pki(dir: &std::path::Path) -> AdminPki {
    let admin_ca = Ca::new(dir, "admin-ca", "Admin CA");
    let server = admin_ca.issue(
        dir,
        "admin",
        &Issue::server("localhost", &["localhost", "127.0.0.1"]),
    );
    let ops_ca = Ca::new(dir, "ops-ca", "Operators CA");
    let operator = ops_ca.issue(dir, "operator", &Issue::client("operator"));
    let other = Ca::new(dir, "other-ca", "Other CA");
    let stranger = other.issue(dir, "stranger", &Issue::client("operator"));
    AdminPki {
        admin_ca: admin_ca.cert.clone(),
        server,
        ops_ca,
        operator,
        stranger,
    }
}

/// `admin:` lines for `admin.tls`, with the operators' CA and the CLI's
/// certificate when `mtls`.
fn tls_yaml(pki: &AdminPki, mtls: bool) -> String {
    let mut y = format!(
        "  tls:\n    cert: {}\n    key: {}\n",
        pki.server.cert.display(),
        pki.server.key.display()
    );
    if mtls {
        y.push_str(&format!(
            "    client_ca: {}\n    cli_cert: {}\n    cli_key: {}\n",
            pki.ops_ca.cert.display(),
            pki.operator.cert.display(),
            pki.operator.key.display()
        ));
    }
    y
}

/// moat with the admin PKI; its `admin:` lines are `before`, then a
/// `token_file` holding [`TOKEN`] when `token`, then `admin.tls`
/// ([`tls_yaml`], mutual when `mtls`).
fn start(before: &str, token: bool, mtls: bool) -> (Running, AdminPki) {
    let dir = TestDir::new();
    let pki = admin_pki(dir.path());
    let mut yaml = before.to_string();
    if token {
        let token = dir.path().join("admin.token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        yaml.push_str(&format!("  token_file: {}\n", token.display()));
    }
    yaml.push_str(&tls_yaml(&pki, mtls));
    let s = Gateway::new().in_dir(dir).admin_yaml(&yaml).start();
    (s, pki)
}

/// One HTTPS request through `openssl s_client`, trusting the admin
/// endpoint's CA, presenting `client` when given: the status code when an
/// HTTP answer came, and everything s_client printed.
fn https(
    port: u16,
    pki: &AdminPki,
    client: Option<&CertFiles>,
    path: &str,
    token: Option<&str>,
) -> (Option<u16>, String) {
    let mut args = vec![
        "-quiet".to_string(),
        "-verify_return_error".to_string(),
        "-CAfile".to_string(),
        pki.admin_ca.display().to_string(),
    ];
    if let Some(c) = client {
        args.extend([
            "-cert".into(),
            c.cert.display().to_string(),
            "-key".into(),
            c.key.display().to_string(),
        ]);
    }
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = s_client(port, &args, &request);
    let status = out
        .lines()
        .find_map(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.split(' ').next())
        .and_then(|c| c.parse().ok());
    (status, out)
}

fn cli(args: &[&str], config: &std::path::Path) -> Finished {
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().expect("utf-8 path")]);
    moat_cmd(&all)
}

#[test]
fn mutual_tls_admin_refuses_clients_without_a_certificate_from_its_ca() {
    let (s, pki) = start("  health: authenticated\n", false, true);
    let admin = s.admin.expect("an admin port");

    // The operator's certificate opens everything, health included.
    let (status, out) = https(admin, &pki, Some(&pki.operator), "/metrics", None);
    assert_eq!(status, Some(200), "{out}");
    assert!(
        out.contains("moat_admin_tls_handshake_failures_total"),
        "{out}"
    );
    let (status, out) = https(admin, &pki, Some(&pki.operator), "/healthz", None);
    assert_eq!(status, Some(200), "{out}");

    // No certificate: the handshake is refused, even for /healthz.
    let (status, out) = https(admin, &pki, None, "/healthz", None);
    assert_eq!(status, None, "served without a client certificate:\n{out}");
    // A certificate from another CA: refused too.
    let (status, out) = https(admin, &pki, Some(&pki.stranger), "/metrics", None);
    assert_eq!(status, None, "served a stranger's certificate:\n{out}");
    // Plain HTTP gets no answer either.
    let plain = http_request(admin, "GET", "/metrics")
        .map(|r| r.0)
        .unwrap_or(0);
    assert_ne!(plain, 200);

    let counted = |reason: &str| {
        let mut last = 0.0;
        for _ in 0..50 {
            let (_, text) = https(admin, &pki, Some(&pki.operator), "/metrics", None);
            last = metric_value(
                &text,
                "moat_admin_tls_handshake_failures_total",
                &format!("reason=\"{reason}\""),
            );
            if last >= 1.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        last
    };
    assert_eq!(counted("no_client_certificate"), 1.0);
    assert_eq!(counted("bad_client_certificate"), 1.0);

    // The CLI presents admin.tls.cli_cert and trusts admin.tls.cert.
    let out = cli(&["healthcheck"], &s.moat.config);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "healthy");
    let out = cli(&["connections", "list"], &s.moat.config);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("\"connections\""), "{}", out.stdout);

    // The same CLI with a certificate the endpoint does not trust fails.
    let yaml = std::fs::read_to_string(&s.moat.config)
        .expect("config")
        .replace(
            &pki.operator.cert.display().to_string(),
            &pki.stranger.cert.display().to_string(),
        )
        .replace(
            &pki.operator.key.display().to_string(),
            &pki.stranger.key.display().to_string(),
        );
    let stranger_config = s.path().join("stranger.yaml");
    std::fs::write(&stranger_config, yaml).expect("write");
    let out = cli(&["healthcheck"], &stranger_config);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("unhealthy"), "{}", out.stderr);

    // Without cli_cert the CLI is refused, and says what is missing.
    let yaml: String = std::fs::read_to_string(&s.moat.config)
        .expect("config")
        .lines()
        .filter(|l| !l.contains("cli_cert:") && !l.contains("cli_key:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bare_config = s.path().join("bare.yaml");
    std::fs::write(&bare_config, yaml).expect("write");
    let out = cli(&["connections", "list"], &bare_config);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no client certificate to present"),
        "{}",
        out.stderr
    );
}

#[test]
fn open_health_on_a_mutual_tls_admin_serves_probes_and_nothing_else_without_credentials() {
    let (s, pki) = start("", true, true);
    let admin = s.admin.expect("an admin port");

    // Probes need nothing: no certificate, no token.
    for path in ["/healthz", "/readyz"] {
        let (status, out) = https(admin, &pki, None, path, None);
        assert_eq!(status, Some(200), "{path}: {out}");
    }
    // A stranger's certificate still fails the handshake.
    let (status, out) = https(admin, &pki, Some(&pki.stranger), "/healthz", None);
    assert_eq!(status, None, "{out}");
    // Everything else needs both the certificate and the token.
    let (status, out) = https(admin, &pki, None, "/metrics", Some(TOKEN));
    assert_eq!(status, Some(401), "no certificate:\n{out}");
    assert!(out.contains("client certificate"), "{out}");
    let (status, out) = https(admin, &pki, Some(&pki.operator), "/metrics", None);
    assert_eq!(status, Some(401), "no token:\n{out}");
    let (status, out) = https(admin, &pki, Some(&pki.operator), "/metrics", Some(TOKEN));
    assert_eq!(status, Some(200), "{out}");
    assert_eq!(
        metric_value(&out, "moat_admin_unauthorized_total", ""),
        2.0,
        "{out}"
    );

    for args in [&["healthcheck"][..], &["connections", "list"]] {
        let out = cli(args, &s.moat.config);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    }
}

#[test]
fn authenticated_health_over_https_with_a_token() {
    let (s, pki) = start("  health: authenticated\n", true, false);
    let admin = s.admin.expect("an admin port");
    // No client certificate is asked for: the handshake completes and
    // the token decides, for the health checks too.
    let (status, out) = https(admin, &pki, None, "/healthz", None);
    assert_eq!(status, Some(401), "{out}");
    let (status, out) = https(admin, &pki, None, "/healthz", Some(TOKEN));
    assert_eq!(status, Some(200), "{out}");
    let (status, out) = https(admin, &pki, None, "/connections", Some(TOKEN));
    assert_eq!(status, Some(200), "{out}");
    // The CLI sends the token and pins admin.tls.cert.
    let out = cli(&["healthcheck"], &s.moat.config);
    assert_eq!(out.code, Some(0), "{out:?}");
    // A pin that does not match what the endpoint serves is refused.
    let other = Ca::new(s.path(), "rogue-ca", "Rogue CA").issue(
        s.path(),
        "rogue",
        &Issue::server("localhost", &["localhost"]),
    );
    let yaml = std::fs::read_to_string(&s.moat.config)
        .expect("config")
        .replace(
            &format!("cert: {}", pki.server.cert.display()),
            &format!("cert: {}", other.cert.display()),
        )
        .replace(
            &format!("key: {}", pki.server.key.display()),
            &format!("key: {}", other.key.display()),
        );
    let rogue = s.path().join("rogue.yaml");
    std::fs::write(&rogue, yaml).expect("write");
    let out = cli(&["healthcheck"], &rogue);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("another certificate than admin.tls.cert"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_admin_tls_files_stop_the_start_naming_the_field() {
    let dir = TestDir::new();
    let pki = admin_pki(dir.path());
    let prepared = Gateway::new()
        .in_dir(dir)
        .admin_yaml(&tls_yaml(&pki, true))
        .prepare();
    // The operator's key does not belong to the admin certificate.
    let mismatched = prepared.yaml.replace(
        &format!("key: {}", pki.server.key.display()),
        &format!("key: {}", pki.operator.key.display()),
    );
    let out = moat_check(prepared.path(), "mismatched.yaml", &mismatched);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("admin.tls.key"), "{}", out.stderr);
    let missing = prepared.yaml.replace(
        &format!("client_ca: {}", pki.ops_ca.cert.display()),
        "client_ca: /nonexistent/ops-ca.pem",
    );
    let out = moat_check(prepared.path(), "missing.yaml", &missing);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("admin.tls.client_ca: cannot read")
            && out.stderr.contains("/nonexistent/ops-ca.pem"),
        "{}",
        out.stderr
    );
    // moat run refuses it the same way, before binding anything.
    let config = prepared.path().join("missing.yaml");
    let out = moat_cmd(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("admin.tls.client_ca"), "{}", out.stderr);
}
