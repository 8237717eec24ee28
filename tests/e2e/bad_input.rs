//! Bad input gets a clear error and exit code 2, naming the file and the
//! key or line, and `moat run` serves nothing.

use moat_testkit::*;

/// Runs both `moat check` and `moat run` on `yaml`; both must exit 2 with
/// every `needle` in standard error. Returns the message.
fn refused(dir: &TestDir, yaml: &str, needles: &[&str]) -> String {
    let check = moat_check(dir.path(), "bad.yaml", yaml);
    assert_eq!(check.code, Some(2), "moat check: {check:?}");
    for n in needles {
        assert!(
            check.stderr.contains(n),
            "moat check stderr lacks {n:?}:\n{}",
            check.stderr
        );
    }
    let path = dir.join("bad.yaml");
    let run = moat_cmd(&["run", "--config", path.to_str().expect("path")]);
    assert_eq!(run.code, Some(2), "moat run: {run:?}");
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "moat run stderr lacks {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.stderr
}

struct Pki {
    dir: TestDir,
    ca: Ca,
    server: CertFiles,
}

fn pki() -> Pki {
    let dir = TestDir::new();
    let (ca, server) = localhost_pki(dir.path());
    Pki { dir, ca, server }
}

fn one_listener(cert: &std::path::Path, key: &std::path::Path) -> String {
    one_listener_on(free_port(), cert, key)
}

fn one_listener_on(port: u16, cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "listeners:\n  - name: mqtts\n    listen: 127.0.0.1:{port}\n    backend: 127.0.0.1:1883\n    tls:\n      certificates:\n        - cert: {}\n          key: {}\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn unknown_key_gets_did_you_mean_with_the_line() {
    let p = pki();
    let yaml = one_listener(&p.server.cert, &p.server.key).replace("backend:", "backnd:");
    refused(
        &p.dir,
        &yaml,
        &[
            "bad.yaml",
            "listeners[0]",
            "line 4",
            "unknown field `backnd`",
            "did you mean `backend`?",
        ],
    );
    let yaml = one_listener(&p.server.cert, &p.server.key).replace(
        "      certificates:",
        "      min_verison: \"1.3\"\n      certificates:",
    );
    refused(
        &p.dir,
        &yaml,
        &["listeners[0].tls", "did you mean `min_version`?"],
    );
}

#[test]
fn missing_certificate_file_is_named() {
    let p = pki();
    let missing = p.dir.join("nope/server.pem");
    let msg = refused(
        &p.dir,
        &one_listener(&missing, &p.server.key),
        &["cannot read the certificate file", "No such file"],
    );
    assert!(msg.contains(missing.to_str().unwrap()), "{msg}");
}

#[test]
fn unreadable_key_file_is_named() {
    // Tests run as root, which can read any file; a directory in place of
    // the key is unreadable for everyone.
    let p = pki();
    let dir_as_key = p.dir.join("key-dir");
    std::fs::create_dir(&dir_as_key).expect("mkdir");
    let msg = refused(
        &p.dir,
        &one_listener(&p.server.cert, &dir_as_key),
        &["cannot read the private key file"],
    );
    assert!(msg.contains(dir_as_key.to_str().unwrap()), "{msg}");
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let p = pki();
    let other =
        p.ca.issue(p.dir.path(), "other", &Issue::server("other", &["other"]));
    let msg = refused(
        &p.dir,
        &one_listener(&p.server.cert, &other.key),
        &["does not match the certificate"],
    );
    assert!(
        msg.contains(other.key.to_str().unwrap()),
        "the key file is named: {msg}"
    );
}

#[test]
fn chain_in_the_wrong_order() {
    let p = pki();
    let inter = p.ca.intermediate(p.dir.path(), "inter", "Intermediate CA");
    let leaf = inter.issue(
        p.dir.path(),
        "leaf",
        &Issue::server("localhost", &["localhost"]),
    );
    let good = p.dir.write(
        "good-chain.pem",
        format!("{}{}", leaf.cert_pem, inter.cert_pem),
    );
    let bad = p.dir.write(
        "bad-chain.pem",
        format!("{}{}", inter.cert_pem, leaf.cert_pem),
    );
    // The right order loads.
    let ok = moat_check(p.dir.path(), "good.yaml", &one_listener(&good, &leaf.key));
    assert_eq!(ok.code, Some(0), "{ok:?}");
    let msg = refused(
        &p.dir,
        &one_listener(&bad, &leaf.key),
        &["wrong order", "leaf must come first"],
    );
    assert!(msg.contains("bad-chain.pem"), "{msg}");
}

#[test]
fn expired_certificate() {
    let p = pki();
    let mut opts = Issue::server("localhost", &["localhost"]);
    opts.validity = Some(((2020, 1, 1), (2021, 1, 1)));
    let old = p.ca.issue(p.dir.path(), "old", &opts);
    let msg = refused(
        &p.dir,
        &one_listener(&old.cert, &old.key),
        &["expired at 2021-01-01", "renew"],
    );
    assert!(msg.contains("old.pem"), "{msg}");
}

#[test]
fn two_listeners_on_one_address() {
    let p = pki();
    let port = free_port();
    let l = |name: &str, host: &str| {
        format!(
            "  - name: {name}\n    listen: {host}:{port}\n    backend: 127.0.0.1:1883\n    tls:\n      certificates:\n        - cert: {}\n          key: {}\n",
            p.server.cert.display(),
            p.server.key.display()
        )
    };
    let yaml = format!("listeners:\n{}{}", l("a", "0.0.0.0"), l("b", "127.0.0.1"));
    refused(
        &p.dir,
        &yaml,
        &["listeners[1].listen", "clashes with listeners[0]"],
    );
}

#[test]
fn weak_cipher_suite_gets_the_reason_and_a_modern_equivalent() {
    let p = pki();
    let yaml = one_listener(&p.server.cert, &p.server.key).replace(
        "      certificates:",
        "      cipher_suites: [ECDHE-RSA-AES128-SHA]\n      certificates:",
    );
    refused(
        &p.dir,
        &yaml,
        &[
            "listeners[0].tls.cipher_suites[0]",
            "CBC",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ],
    );
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let p = pki();
    let yaml = one_listener(&p.server.cert, &p.server.key).replace("    tls:", "    tls: [");
    refused(&p.dir, &yaml, &["bad.yaml", "line"]);
}

#[test]
fn missing_config_file() {
    let out = moat_cmd(&["run", "--config", "/nonexistent/moat.yaml"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("/nonexistent/moat.yaml: cannot read the configuration file"),
        "{}",
        out.stderr
    );
}

#[test]
fn port_in_use_is_a_runtime_error_naming_the_listener() {
    let p = pki();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let path = p.dir.write(
        "inuse.yaml",
        one_listener_on(port, &p.server.cert, &p.server.key),
    );
    let out = moat_cmd(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("listener \"mqtts\": cannot listen on"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ss -ltnp"), "{}", out.stderr);
}

#[test]
fn an_unknown_user_or_group_is_named_with_a_hint() {
    let p = pki();
    let listener = one_listener(&p.server.cert, &p.server.key);
    refused(
        &p.dir,
        &format!("user: no-such-moat-user\n{listener}"),
        &["bad.yaml", "no such user \"no-such-moat-user\"", "useradd"],
    );
    refused(
        &p.dir,
        &format!("user: root\ngroup: no-such-moat-group\n{listener}"),
        &["bad.yaml", "no such group \"no-such-moat-group\""],
    );
    refused(
        &p.dir,
        &format!("group: root\n{listener}"),
        &["bad.yaml", "group", "is set without user"],
    );
    refused(
        &p.dir,
        &format!("sandbox:\n  landlock: yes-please\n{listener}"),
        &["bad.yaml", "sandbox.landlock", "best_effort"],
    );
}
