//! The default TLS policy, checked by real clients and a real scanner:
//! TLS 1.0/1.1 refused, CBC and RSA key exchange refused, only forward-secret
//! AEAD suites. Every refusal test has a control that shows the same client
//! command succeeding against `openssl s_server` configured to allow it, so
//! the refusal can only come from moat.

use moat_testkit::*;

/// Two listeners to one broker: `ecdsa` serving an ECDSA certificate
/// ([`Prepared::server`]) and `rsa` (`ports[0]`) an RSA one (returned too), both
/// from one CA.
fn setup() -> (Running, CertFiles) {
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    let rsa = ca.issue(
        dir.path(),
        "rsa",
        &Issue::server("localhost", &["localhost"]).alg(KeyAlg::Rsa2048),
    );
    let s = Gateway::new()
        .in_dir(dir)
        .ca(ca)
        .cert_at("", "ecdsa")
        .listener("ecdsa")
        .also_listener("rsa", &[&rsa], "")
        .start();
    (s, rsa)
}

/// Runs the same s_client arguments against a control s_server and moat.
fn refused_by_moat_only(
    s: &Running,
    cert: &CertFiles,
    moat_port: u16,
    server_args: &[&str],
    client_args: &[&str],
) -> String {
    let control = SServer::start(&cert.cert, &cert.key, server_args);
    let (ok, out) = s_client(control.port, client_args, "");
    assert!(
        ok && out.contains("Cipher is") && !out.contains("Cipher is (NONE)"),
        "control failed, so the test proves nothing: {out}"
    );
    let (ok, out) = s_client(moat_port, client_args, "");
    assert!(
        !ok || out.contains("Cipher is (NONE)"),
        "moat accepted {client_args:?}: {out}"
    );
    let _ = s.ca();
    out
}

#[test]
fn tls_1_0_and_1_1_are_refused() {
    let (s, _) = setup();
    for (flag, server) in [("-tls1", "-tls1"), ("-tls1_1", "-tls1_1")] {
        let out = refused_by_moat_only(
            &s,
            &s.server,
            s.port,
            &[server, "-cipher", "DEFAULT:@SECLEVEL=0"],
            &[flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
        );
        assert!(
            out.contains("SSL alert number"),
            "{flag}: moat must answer with an alert: {out}"
        );
    }
    assert!(
        s.moat.metric_reaching(
            "moat_tls_handshakes_total",
            "reason=\"protocol_version\"",
            2.0
        ) >= 2.0
    );
}

#[test]
fn cbc_suites_are_refused() {
    let (s, rsa) = setup();
    refused_by_moat_only(
        &s,
        &s.server,
        s.port,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
    );
    refused_by_moat_only(
        &s,
        &rsa,
        s.ports[0],
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA384"],
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA384"],
    );
    assert!(
        s.moat.metric_reaching(
            "moat_tls_handshakes_total",
            "reason=\"no_shared_cipher\"",
            2.0
        ) >= 2.0
    );
}

#[test]
fn rsa_key_exchange_is_refused() {
    let (s, rsa) = setup();
    refused_by_moat_only(
        &s,
        &rsa,
        s.ports[0],
        &["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
        &["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
    );
    // OpenSSL sends no supported_groups with only RSA key exchange offered,
    // so rustls reports the missing group rather than the suite.
    assert!(
        s.moat.metric(
            "moat_tls_handshakes_total",
            "listener=\"rsa\",result=\"failure\""
        ) >= 1.0,
        "{}",
        s.moat.logs()
    );
}

#[test]
fn sslyze_sees_only_tls12_and_13_with_forward_secret_aead_suites() {
    require("sslyze", "sslyze");
    let (s, _) = setup();
    for port in [s.port, s.ports[0]] {
        let dir = TestDir::new();
        let json = dir.join("sslyze.json");
        let out = std::process::Command::new("timeout")
            .args(["120", "sslyze", "--quiet", "--mozilla_config=disable"])
            .arg(format!("--certinfo_ca_file={}", s.ca().cert.display()))
            .args([
                "--certinfo",
                "--tlsv1_2",
                "--tlsv1_3",
                "--sslv2",
                "--sslv3",
                "--tlsv1",
                "--tlsv1_1",
                "--elliptic_curves",
                "--heartbleed",
                "--robot",
                "--reneg",
                "--compression",
                "--openssl_ccs",
            ])
            .arg(format!("--json_out={}", json.display()))
            .arg(format!("localhost:{port}{{127.0.0.1}}"))
            .output()
            .expect("run sslyze");
        let text = std::fs::read_to_string(&json)
            .unwrap_or_else(|_| panic!("sslyze wrote no JSON: {out:?}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("sslyze JSON");
        let r = &v["server_scan_results"][0]["scan_result"];
        assert!(r.is_object(), "sslyze could not scan: {text}");
        let accepted = |key: &str| -> Vec<String> {
            r[key]["result"]["accepted_cipher_suites"]
                .as_array()
                .unwrap_or_else(|| panic!("{key} missing: {text}"))
                .iter()
                .map(|c| c["cipher_suite"]["name"].as_str().unwrap_or("").to_string())
                .collect()
        };
        for old in [
            "ssl_2_0_cipher_suites",
            "ssl_3_0_cipher_suites",
            "tls_1_0_cipher_suites",
            "tls_1_1_cipher_suites",
        ] {
            assert!(
                accepted(old).is_empty(),
                "{old} accepted: {:?}",
                accepted(old)
            );
        }
        let tls12 = accepted("tls_1_2_cipher_suites");
        assert!(!tls12.is_empty());
        for suite in &tls12 {
            assert!(
                suite.starts_with("TLS_ECDHE_"),
                "not forward-secret: {suite}"
            );
            assert!(
                suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305"),
                "not AEAD: {suite}"
            );
        }
        let tls13 = accepted("tls_1_3_cipher_suites");
        assert!(
            tls13.iter().any(|c| c == "TLS_AES_128_GCM_SHA256"),
            "{tls13:?}"
        );
        assert_eq!(
            r["heartbleed"]["result"]["is_vulnerable_to_heartbleed"],
            false
        );
        assert_eq!(
            r["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"],
            false
        );
        assert_eq!(
            r["tls_compression"]["result"]["supports_compression"],
            false
        );
        assert_eq!(
            r["session_renegotiation"]["result"]["is_vulnerable_to_client_renegotiation_dos"],
            false
        );
        let robot = r["robot"]["result"]["robot_result"].as_str().unwrap_or("");
        assert!(robot.starts_with("NOT_VULNERABLE"), "ROBOT: {robot}");
        let curves: Vec<&str> = r["elliptic_curves"]["result"]["supported_curves"]
            .as_array()
            .expect("curves")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(curves.contains(&"X25519"), "{curves:?}");
        assert!(
            !curves
                .iter()
                .any(|c| c.contains("secp521") || c.contains("sect")),
            "{curves:?}"
        );
    }
}

#[test]
fn configured_suite_allowlist_and_tls13_only_are_enforced() {
    let s = Gateway::new()
        .no_admin()
        .listener("strict")
        .tls_yaml(
            "min_version: \"1.3\"\ncipher_suites: [TLS_CHACHA20_POLY1305_SHA256]\ngroups: [P-256]",
        )
        .start();
    let port = s.port;
    let cafile = s.ca().cert.to_str().unwrap();
    let (ok, out) = s_client(port, &["-CAfile", cafile, "-servername", "localhost"], "");
    assert!(ok && handshake_ok(&out), "{out}");
    assert!(out.contains("TLS_CHACHA20_POLY1305_SHA256"), "{out}");
    assert!(out.contains("Server Temp Key: ECDH, prime256v1"), "{out}");
    let (ok, out) = s_client(port, &["-CAfile", cafile, "-tls1_2"], "");
    assert!(
        !ok || out.contains("Cipher is (NONE)"),
        "TLS 1.2 must be refused: {out}"
    );
}

/// The suite line of an s_client transcript ("New, TLSv1.3, Cipher is X").
fn negotiated_suite(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.split_once(", Cipher is ").map(|(_, c)| c.trim()))
        .unwrap_or("")
}

#[test]
fn moat_picks_aes128_gcm_unless_the_client_puts_chacha20_first() {
    let (s, _) = setup();
    let run = |args: &[&str]| {
        let mut all = vec!["-servername", "localhost"];
        all.extend_from_slice(args);
        negotiated_suite(&s_client_ok(s.port, &s.ca().cert, &all)).to_string()
    };
    // OpenSSL's default order puts AES-256-GCM first; moat's order wins.
    assert_eq!(run(&[]), "TLS_AES_128_GCM_SHA256");
    assert_eq!(
        run(&[
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
        ]),
        "TLS_AES_128_GCM_SHA256"
    );
    // A client without AES hardware lists ChaCha20 first and gets it.
    assert_eq!(
        run(&[
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
        ]),
        "TLS_CHACHA20_POLY1305_SHA256"
    );
    // A client that offers only AES-256-GCM still gets it.
    assert_eq!(
        run(&["-ciphersuites", "TLS_AES_256_GCM_SHA384"]),
        "TLS_AES_256_GCM_SHA384"
    );
    // TLS 1.2 follows the same rule.
    assert_eq!(run(&["-tls1_2"]), "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_eq!(
        run(&[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
        ]),
        "ECDHE-ECDSA-CHACHA20-POLY1305"
    );
    drop(s.moat);
}
