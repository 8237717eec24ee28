//! TLS termination through moat to a real Mosquitto: key types and
//! encodings, TLS versions, SNI, the post-quantum group, resumption.

use std::time::Duration;

use moat_testkit::*;

#[test]
fn ecdsa_round_trip_through_moat_to_mosquitto() {
    let s = Gateway::new()
        .server_sans(&["localhost", "127.0.0.1"])
        .start();
    let (ca, port, moat) = (s.ca(), s.port, &s.moat);
    let tls = s.tls();
    // Subscribe through moat, publish through moat.
    let got = round_trip(s.path(), port, Some(&tls), port, Some(&tls));
    assert!(got.starts_with("hello-"), "got {got:?}");
    assert!(
        moat.logs().contains("tls.version=\"TLSv1_3\""),
        "{}",
        moat.logs()
    );
    // TLS 1.2 carries MQTT too (mosquitto_pub cannot be held to TLS 1.2).
    let cfg = rustls_client_with(&ca.cert, None, &[&rustls::version::TLS12]);
    let c = mqtt_session(port, cfg, "tls12-client").expect("TLS 1.2 session");
    assert_eq!(
        c.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(moat.wait_for_log("tls.version=\"TLSv1_2\"", Duration::from_secs(5)));
    assert!(
        moat.metric(
            "moat_relayed_bytes_total",
            "direction=\"client_to_backend\""
        ) > 0.0
    );
    assert!(
        moat.metric(
            "moat_relayed_bytes_total",
            "direction=\"backend_to_client\""
        ) > 0.0
    );
    assert!(moat.metric("moat_tls_handshakes_total", "result=\"success\"") >= 3.0);
}

#[test]
fn rsa_certificate_with_pkcs1_key_round_trip() {
    let s = Gateway::new()
        .ca_named("ca", "RSA CA")
        .ca_alg(KeyAlg::Rsa2048)
        .server_alg(KeyAlg::Rsa2048)
        .traditional_key()
        .no_admin()
        .start();
    let key_text = std::fs::read_to_string(&s.server.key).expect("key");
    assert!(
        key_text.contains("BEGIN RSA PRIVATE KEY"),
        "expected PKCS#1: {key_text}"
    );
    let tls = s.tls();
    let got = round_trip(s.path(), s.port, Some(&tls), s.broker().port, None);
    assert!(got.starts_with("hello-"), "got {got:?}");
    let out = s_client_ok(
        s.port,
        &s.ca().cert,
        &["-servername", "localhost", "-tls1_2"],
    );
    assert!(
        out.contains("ECDHE-RSA-AES256-GCM-SHA384")
            || out.contains("ECDHE-RSA-AES128-GCM-SHA256")
            || out.contains("ECDHE-RSA-CHACHA20-POLY1305"),
        "{out}"
    );
}

#[test]
fn every_key_type_and_encoding_serves() {
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    let mut certs = Vec::new();
    for (name, alg, traditional) in [
        ("p256-pkcs8", KeyAlg::EcdsaP256, false),
        ("p256-sec1", KeyAlg::EcdsaP256, true),
        ("p384", KeyAlg::EcdsaP384, false),
        ("ed25519", KeyAlg::Ed25519, false),
        ("rsa-pkcs8", KeyAlg::Rsa2048, false),
    ] {
        let mut c = ca.issue(
            dir.path(),
            name,
            &Issue::server("localhost", &["localhost"]).alg(alg),
        );
        if traditional {
            c.key = to_traditional_key(&c.key);
            let text = std::fs::read_to_string(&c.key).expect("key");
            assert!(
                text.contains("BEGIN EC PRIVATE KEY"),
                "expected SEC1: {text}"
            );
        }
        certs.push((name, c));
    }
    let (first, rest) = certs.split_first().expect("certificates");
    let mut g = Gateway::new()
        .in_dir(dir)
        .cert(first.1.clone())
        .listener(first.0)
        .no_admin();
    for (name, c) in rest {
        g = g.also_listener(name, &[c], "");
    }
    let s = g.start();
    let ports = std::iter::once(s.port).chain(s.ports.iter().copied());
    for ((name, _), port) in certs.iter().zip(ports) {
        let (ok, out) = s_client(
            port,
            &[
                "-CAfile",
                ca.cert.to_str().unwrap(),
                "-servername",
                "localhost",
            ],
            "",
        );
        assert!(ok && handshake_ok(&out), "{name}: {out}");
    }
}

#[test]
fn sni_chooses_among_certificates_and_no_sni_gets_the_first() {
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    let a = ca.issue(
        dir.path(),
        "a",
        &Issue::server("a.example", &["a.example", "127.0.0.1"]),
    );
    let b = ca.issue(
        dir.path(),
        "b",
        &Issue::server("b.example", &["b.example"]).alg(KeyAlg::Rsa2048),
    );
    let w = ca.issue(
        dir.path(),
        "w",
        &Issue::server("wildcard", &["*.devices.example"]),
    );
    let s = Gateway::new()
        .in_dir(dir)
        .cert(a)
        .more_certs(&[&b, &w])
        .no_admin()
        .start();
    let subject = |args: &[&str]| {
        let out = s_client_ok(s.port, &ca.cert, args);
        out.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_string()
    };
    assert!(subject(&["-servername", "b.example"]).contains("b.example"));
    assert!(subject(&["-servername", "a.example"]).contains("a.example"));
    assert!(subject(&["-servername", "x7.devices.example"]).contains("wildcard"));
    // Embedded clients connect by IP and send no SNI: the first certificate.
    assert!(subject(&["-noservername"]).contains("a.example"));
    // An unknown name also gets the first.
    assert!(subject(&["-servername", "other.example"]).contains("a.example"));
    // A wildcard covers one label only.
    assert!(subject(&["-servername", "a.b.devices.example"]).contains("a.example"));
}

#[test]
fn post_quantum_hybrid_group_is_negotiated_when_offered_and_x25519_otherwise() {
    let s = Gateway::new().no_admin().start();
    let (ca, port, moat) = (s.ca(), s.port, &s.moat);
    let cfg = rustls_client(&ca.cert, None);
    let c = RustlsConn::connect(port, "localhost", cfg).expect("handshake");
    let group = c
        .conn
        .negotiated_key_exchange_group()
        .expect("group")
        .name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    assert!(moat.wait_for_log("tls.group=\"X25519MLKEM768\"", Duration::from_secs(5)));
    // OpenSSL 3.0 offers no hybrid: classic X25519.
    let out = s_client_ok(port, &ca.cert, &["-servername", "localhost"]);
    assert!(out.contains("Server Temp Key: X25519"), "{out}");
}

#[test]
fn session_tickets_resume() {
    let s = Gateway::new().start();
    let ca = s.ca();
    let port = s.port;
    let moat = &s.moat;
    let cfg = rustls_client(&ca.cert, None);
    for i in 0..3 {
        // Send a CONNECT so that the TLS 1.3 tickets (sent after the
        // handshake) are read, and get the CONNACK back.
        let c = mqtt_session(port, cfg.clone(), &format!("resume-{i}")).expect("session");
        let kind = c.conn.handshake_kind();
        if i == 0 {
            assert_eq!(kind, Some(rustls::HandshakeKind::Full));
        } else {
            assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "connection {i}");
        }
    }
    assert_eq!(moat.metric("moat_tls_sessions_resumed_total", ""), 2.0);
}

#[test]
fn shared_ticket_keys_let_a_device_resume_on_another_replica_and_rotate() {
    let dir = TestDir::new();
    let key = |seed: &str| {
        openssl(dir.path(), &["rand", "-base64", "48"])
            .trim()
            .to_string()
            + seed
    };
    let (k1, k2) = (key(""), key(""));
    let keys = dir.write("tickets/keys", format!("{k1}\n"));
    let s = Gateway::new()
        .in_dir(dir)
        .tls_yaml(&format!("session_ticket_keys: {}", keys.display()))
        .no_admin()
        .start();
    let (a, pa) = (&s.moat, s.port);
    let (b, pb) = s.replica("b");
    let ca = s.ca();
    let connect = |port: u16, cfg: &std::sync::Arc<rustls::ClientConfig>| {
        let c = mqtt_session(port, cfg.clone(), "roaming-device").expect("session");
        c.conn.handshake_kind()
    };
    let cfg = rustls_client(&ca.cert, None);
    assert_eq!(connect(pa, &cfg), Some(rustls::HandshakeKind::Full));
    // A ticket from replica A resumes on replica B.
    assert_eq!(connect(pb, &cfg), Some(rustls::HandshakeKind::Resumed));

    // Rotation step 1: a new first key; tickets under the old one still work.
    let old_ticket_client = rustls_client(&ca.cert, None);
    assert_eq!(
        connect(pa, &old_ticket_client),
        Some(rustls::HandshakeKind::Full)
    );
    std::fs::write(&keys, format!("{k2}\n{k1}\n")).expect("rotate");
    assert!(
        a.wait_for_log("session ticket keys reloaded", Duration::from_secs(5)),
        "{}",
        a.logs()
    );
    assert!(
        b.wait_for_log("session ticket keys reloaded", Duration::from_secs(5)),
        "{}",
        b.logs()
    );
    assert_eq!(
        connect(pb, &old_ticket_client),
        Some(rustls::HandshakeKind::Resumed)
    );
    // Step 2: the old key is dropped; tickets made under it no longer resume.
    let stale = rustls_client(&ca.cert, None);
    assert_eq!(connect(pa, &stale), Some(rustls::HandshakeKind::Full));
    std::fs::write(&keys, format!("{k2}\n")).expect("drop old key");
    assert!(wait_until(Duration::from_secs(5), || a
        .logs()
        .matches("session ticket keys reloaded")
        .count()
        >= 2));
    assert_eq!(
        connect(pb, &stale),
        Some(rustls::HandshakeKind::Resumed),
        "issued under k2, still valid"
    );
    let _ = k1;
}

#[test]
fn without_shared_keys_another_replica_cannot_resume() {
    let s = Gateway::new().no_admin().start();
    let (_b, pb) = s.replica("b");
    let cfg = rustls_client(&s.ca().cert, None);
    mqtt_session(s.port, cfg.clone(), "d").expect("session on A");
    let c = mqtt_session(pb, cfg, "d").expect("session on B");
    assert_eq!(c.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
}
