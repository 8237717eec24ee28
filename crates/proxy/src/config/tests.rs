//! The configuration loader's unit tests: accepted files, refused files
//! and what their errors say.

use super::*;
use std::net::SocketAddr;
use std::time::Duration;

const MINIMAL: &str = "
listeners:
  - name: mqtts
    listen: 127.0.0.1:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - cert: tls/server.pem
          key: tls/server.key
";

fn parse_str(text: &str) -> Result<ValidConfig, ConfigErrors> {
    parse(Path::new("/etc/moat/moat.yaml"), text)
}

fn error_text(text: &str) -> String {
    parse_str(text)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn minimal_config_gets_defaults_and_resolved_paths() {
    let c = parse_str(MINIMAL).expect("valid");
    let l = &c.config.listeners[0];
    assert_eq!(l.timeouts.handshake.0, Duration::from_secs(10));
    assert_eq!(l.timeouts.connect.0, Duration::from_secs(5));
    assert_eq!(l.max_connections, 50_000);
    assert_eq!(l.tls.client_auth.mode, ClientAuthMode::None);
    assert!(l.tls.session_tickets);
    assert_eq!(
        l.tls.certificates[0].cert,
        PathBuf::from("/etc/moat/tls/server.pem")
    );
    assert_eq!(c.config.shutdown.drain_timeout.0, Duration::from_secs(30));
    assert!(c.config.reload.watch);
    assert_eq!(c.config.reload.debounce.0, Duration::from_millis(500));
    assert_eq!(c.config.reload.check_interval.0, Duration::from_secs(60));
    assert_eq!(c.config.log.format, LogFormat::Text);
    assert!(c.config.admin.is_none());
}

#[test]
fn issue_example_parses() {
    let text = "
admin:
  listen: 127.0.0.1:9090
log:
  level: info
  format: json
listeners:
  - name: mqtts
    listen: 0.0.0.0:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - cert: tls/server-chain.pem
          key: tls/server.key
      min_version: \"1.2\"
      cipher_suites: []
      groups: []
      client_auth:
        mode: required
        ca: tls/clients-ca.pem
    timeouts: { handshake: 10s, connect: 5s }
    max_connections: 50000
";
    let c = parse_str(text).expect("valid");
    assert_eq!(c.config.log.format, LogFormat::Json);
    assert_eq!(
        c.config.listeners[0].tls.client_auth.ca.as_deref(),
        Some(Path::new("/etc/moat/tls/clients-ca.pem"))
    );
}

#[test]
fn unknown_key_suggests_the_closest() {
    let text = MINIMAL.replace("backend:", "backnd:");
    let e = error_text(&text);
    assert!(e.contains("/etc/moat/moat.yaml"), "{e}");
    assert!(e.contains("listeners[0]"), "{e}");
    assert!(e.contains("line 5"), "{e}");
    assert!(e.contains("unknown field `backnd`"), "{e}");
    assert!(e.contains("did you mean `backend`?"), "{e}");
}

#[test]
fn unknown_top_level_key_lists_valid_keys_when_nothing_is_close() {
    let e = error_text(&format!("{MINIMAL}zzzzzzzzzz: 1\n"));
    assert!(e.contains("valid keys here"), "{e}");
    assert!(e.contains("listeners"), "{e}");
}

#[test]
fn bad_duration_names_field_and_form() {
    let text = format!("{MINIMAL}    timeouts: {{ handshake: ten }}\n");
    let e = error_text(&text);
    assert!(e.contains("listeners[0].timeouts.handshake"), "{e}");
    assert!(e.contains("like 10s"), "{e}");
    let e = error_text(&format!("{MINIMAL}    timeouts: {{ connect: 5 }}\n"));
    assert!(e.contains("listeners[0].timeouts.connect"), "{e}");
    assert!(e.contains("write 5s"), "{e}");
}

#[test]
fn unquoted_version_is_accepted() {
    let text = MINIMAL.replace(
        "      certificates:",
        "      min_version: 1.3\n      certificates:",
    );
    let c = parse_str(&text).expect("valid");
    assert_eq!(c.policies[0].versions.len(), 1);
}

#[test]
fn old_version_is_refused_with_a_reason() {
    let text = MINIMAL.replace(
        "      certificates:",
        "      min_version: \"1.0\"\n      certificates:",
    );
    let e = error_text(&text);
    assert!(e.contains("listeners[0].tls.min_version"), "{e}");
    assert!(e.contains("RFC 8996"), "{e}");
}

#[test]
fn duplicate_names_and_addresses_are_refused() {
    let text = format!(
            "{MINIMAL}  - name: mqtts\n    listen: 0.0.0.0:8883\n    backend: b:1883\n    tls:\n      certificates:\n        - {{ cert: a, key: b }}\n"
        );
    let e = error_text(&text);
    assert!(e.contains("listeners[1].name"), "{e}");
    assert!(e.contains("already used by listeners[0]"), "{e}");
    assert!(e.contains("listeners[1].listen"), "{e}");
    assert!(e.contains("clashes with listeners[0]"), "{e}");
}

#[test]
fn address_clash_rules() {
    let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
    assert!(addresses_clash(a("127.0.0.1:1"), a("127.0.0.1:1")));
    assert!(addresses_clash(a("0.0.0.0:1"), a("127.0.0.1:1")));
    assert!(addresses_clash(a("[::]:1"), a("127.0.0.1:1")));
    assert!(!addresses_clash(a("0.0.0.0:1"), a("[::1]:1")));
    assert!(!addresses_clash(a("127.0.0.1:1"), a("127.0.0.2:1")));
    assert!(!addresses_clash(a("127.0.0.1:1"), a("127.0.0.1:2")));
}

#[test]
fn client_auth_needs_a_ca_and_a_ca_needs_a_mode() {
    let text = format!("{MINIMAL}      client_auth: {{ mode: required }}\n");
    let e = error_text(&text);
    assert!(e.contains("tls.client_auth.ca"), "{e}");
    assert!(e.contains("no CA bundle"), "{e}");

    let text = format!("{MINIMAL}      client_auth: {{ ca: ca.pem }}\n");
    let e = error_text(&text);
    assert!(e.contains("would be ignored"), "{e}");
}

#[test]
fn bad_client_auth_mode_lists_variants() {
    let text = format!("{MINIMAL}      client_auth: {{ mode: always, ca: x }}\n");
    let e = error_text(&text);
    assert!(e.contains("unknown variant `always`"), "{e}");
    assert!(e.contains("required"), "{e}");
}

#[test]
fn allow_lists_crls_and_proxy_protocol() {
    let text = format!(
            "{MINIMAL}      client_auth:\n        mode: required\n        ca: ca.pem\n        crl: devices.crl\n        expired_crl: allow\n        allow:\n          - common_name: \"sensor-*\"\n          - spki_sha256: \"{}\"\n    backend_proxy_protocol: v2\n",
            "ab".repeat(32)
        );
    let c = parse_str(&text).expect("valid");
    let l = &c.config.listeners[0];
    assert_eq!(
        l.tls.client_auth.crl.0,
        vec![PathBuf::from("/etc/moat/devices.crl")]
    );
    assert_eq!(l.tls.client_auth.expired_crl, ExpiredCrlPolicy::Allow);
    assert_eq!(l.tls.client_auth.allow.len(), 2);
    assert_eq!(l.backend_proxy_protocol, ProxyProtocol::V2);

    let text = format!(
        "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: [a.crl, b.crl] }}\n"
    );
    assert_eq!(
        parse_str(&text).expect("valid").config.listeners[0]
            .tls
            .client_auth
            .crl
            .0
            .len(),
        2
    );

    let text = format!("{MINIMAL}      client_auth: {{ crl: a.crl }}\n");
    assert!(error_text(&text).contains("crl is set but client_auth.mode is none"));
    let text =
        format!("{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{}}] }}\n");
    assert!(error_text(&text).contains("tls.client_auth.allow[0]"));
    let text = format!(
        "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{ cn: x }}] }}\n"
    );
    assert!(
        error_text(&text).contains("did you mean `common_name`?"),
        "{}",
        error_text(&text)
    );
    let text = format!("{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, allow: [{{ certificate_sha256: xyz }}] }}\n");
    assert!(error_text(&text).contains("64 hex digits"));
}

#[test]
fn mqtt_section() {
    let text = format!(
            "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem }}\n    mqtt:\n      client_id: equal_to_identity\n      username: identity\n      identity: uri\n      max_packet_size: 65536\n      acl:\n        - match: {{ identity: \"sensor-*\" }}\n          publish: [\"devices/%i/#\"]\n          subscribe: [\"devices/%i/commands/+\"]\n"
        );
    let c = parse_str(&text).expect("valid");
    let m = c.config.listeners[0].mqtt.as_ref().expect("mqtt");
    assert_eq!(m.client_id, ClientIdPolicy::EqualToIdentity);
    assert_eq!(m.identity, IdentitySource::Uri);
    assert_eq!(m.acl.as_ref().expect("acl").len(), 1);
    assert_eq!(m.connect_timeout.0, Duration::from_secs(10));

    let bare = parse_str(&format!("{MINIMAL}    mqtt:\n")).expect("valid");
    assert_eq!(
        bare.config.listeners[0]
            .mqtt
            .as_ref()
            .expect("on")
            .max_packet_size,
        1 << 20
    );
    assert!(parse_str(MINIMAL).expect("valid").config.listeners[0]
        .mqtt
        .is_none());
    let text = format!("{MINIMAL}    mqtt: {{ client_id: equal_to_identity }}\n");
    assert!(error_text(&text).contains("need the device's certificate"));
    let text = format!("{MINIMAL}    mqtt: {{ acl: [{{ publish: [\"a/#/b\"] }}] }}\n");
    assert!(error_text(&text).contains("listeners[0].mqtt.acl[0]"));
    let text = format!("{MINIMAL}    mqtt: {{ on_deny: drop }}\n");
    assert!(error_text(&text).contains("acknowledge"));
}

#[test]
fn ocsp_section() {
    let c = parse_str(MINIMAL).expect("valid");
    assert_eq!(c.config.listeners[0].tls.ocsp.stapling, Stapling::Auto);
    let text = format!("{MINIMAL}      ocsp: {{ stapling: true, cache_dir: ocsp-cache, refresh_fraction: 0.25 }}\n");
    let c = parse_str(&text).expect("valid");
    let o = &c.config.listeners[0].tls.ocsp;
    assert_eq!(o.stapling, Stapling::On);
    assert_eq!(
        o.cache_dir.as_deref(),
        Some(Path::new("/etc/moat/ocsp-cache"))
    );
    let e = error_text(&format!(
        "{MINIMAL}      ocsp: {{ refresh_fraction: 1.5 }}\n"
    ));
    assert!(e.contains("listeners[0].tls.ocsp.refresh_fraction"), "{e}");
    let e = error_text(&format!("{MINIMAL}      ocsp: {{ stapling: maybe }}\n"));
    assert!(e.contains("use auto, true or false"), "{e}");
    let e = error_text(&format!(
        "{MINIMAL}      ocsp: {{ responder_url: \"http://o\", static_file: r.der }}\n"
    ));
    assert!(e.contains("exclude each other"), "{e}");
    let e = error_text(&format!(
        "{MINIMAL}      ocsp: {{ stapling: false, static_file: r.der }}\n"
    ));
    assert!(e.contains("would be ignored"), "{e}");
}

#[test]
fn routes_become_listeners_of_their_own() {
    let text = format!(
            "{MINIMAL}    routes:\n      - name: tenant-b\n        server_names: [b.example, \"*.b.example\"]\n        backend: broker-b:1883\n        tls:\n          certificates: [{{ cert: b.pem, key: b.key }}]\n          client_auth: {{ mode: required, ca: b-ca.pem }}\n"
        );
    let c = parse_str(&text).expect("valid");
    assert_eq!(c.config.listeners.len(), 2);
    let r = &c.config.listeners[1];
    assert_eq!(r.name, "mqtts/tenant-b");
    assert_eq!(r.listen, c.config.listeners[0].listen);
    assert_eq!(r.backend, "broker-b:1883");
    assert_eq!(r.tls.certificates[0].cert, PathBuf::from("/etc/moat/b.pem"));
    let of = r.route.as_ref().expect("route");
    assert_eq!(of.parent, "mqtts");
    assert_eq!(of.server_names, ["b.example", "*.b.example"]);
    assert_eq!(c.policies.len(), 2);

    let bad = text.replace(
        "server_names: [b.example, \"*.b.example\"]",
        "server_names: []",
    );
    assert!(error_text(&bad).contains("listeners[0].routes[0].server_names"));
    let bad = text.replace("backend: broker-b:1883", "backend: broker-b");
    assert!(
        error_text(&bad).contains("listeners[0].routes[0].backend"),
        "{}",
        error_text(&bad)
    );
    let dup = format!(
            "{text}      - name: again\n        server_names: [b.example]\n        backend: x:1\n        tls: {{ certificates: [{{ cert: c, key: k }}] }}\n"
        );
    assert!(
        error_text(&dup).contains("already routed to \"mqtts/tenant-b\""),
        "{}",
        error_text(&dup)
    );
}

#[test]
fn tls_profiles() {
    let with = |line: &str| {
        MINIMAL.replace(
            "      certificates:",
            &format!("      {line}\n      certificates:"),
        )
    };
    let c = parse_str(&with("profile: modern")).expect("valid");
    assert_eq!(c.policies[0].versions.len(), 1, "TLS 1.3 only");
    let c = parse_str(&with("profile: intermediate")).expect("valid");
    assert_eq!(c.policies[0].versions.len(), 2);
    let e = error_text(&MINIMAL.replace(
        "      certificates:",
        "      profile: modern\n      min_version: \"1.2\"\n      certificates:",
    ));
    assert!(e.contains("profile modern means TLS 1.3 only"), "{e}");
    assert!(error_text(&with("profile: old")).contains("unknown variant `old`"));
}

#[test]
fn backend_must_have_a_port() {
    let e = error_text(&MINIMAL.replace("127.0.0.1:1883", "broker"));
    assert!(e.contains("listeners[0].backend"), "{e}");
    assert!(e.contains("has no port"), "{e}");
    let ok = parse_str(&MINIMAL.replace("127.0.0.1:1883", "mosquitto.local:1883"));
    assert!(ok.is_ok());
    let ok = parse_str(&MINIMAL.replace("127.0.0.1:1883", "\"[::1]:1883\""));
    assert!(ok.is_ok());
}

#[test]
fn several_problems_are_reported_together() {
    let text = MINIMAL
        .replace("name: mqtts", "name: \"bad name\"")
        .replace("127.0.0.1:1883", "nohost");
    let e = parse_str(&text).expect_err("refused");
    assert_eq!(e.0.len(), 2, "{e}");
}

#[test]
fn empty_listeners_and_certificates_are_refused() {
    let e = error_text("listeners: []\n");
    assert!(e.contains("no listeners"), "{e}");
    let text = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    backend: h:1\n    tls: { certificates: [] }\n";
    let e = error_text(text);
    assert!(e.contains("listeners[0].tls.certificates"), "{e}");
}

#[test]
fn log_level_field_value_filters_are_refused_without_compiling_them() {
    // Found by fuzz/fuzz_targets/config_loader.rs: compiling this value
    // takes minutes and gigabytes.
    let bomb = format!("info,[{{x=(a|b)*a{}}}]", "(a|b)".repeat(20));
    let e = error_text(&format!("{MINIMAL}log: {{ level: \"{bomb}\" }}\n"));
    assert!(e.contains("log.level"), "{e}");
    assert!(e.contains("by value"), "{e}");
    let e = error_text(&format!(
        "{MINIMAL}log: {{ level: \"[{{peer=10.0.0.1}}]\" }}\n"
    ));
    assert!(e.contains("by value"), "{e}");
    // Targets, spans and field names without values are still fine.
    let ok = format!("{MINIMAL}log: {{ level: \"info,moat=debug,moat[conn{{peer}}]=trace\" }}\n");
    parse_str(&ok).expect("valid");
}

/// A list of anchors, the first holding `leaves` short strings and each
/// next one `width` aliases of the one before.
fn alias_bomb(leaves: usize, widths: &[usize]) -> String {
    let mut out = format!("[&l0 [{}]", vec!["x"; leaves].join(","));
    for (d, width) in widths.iter().enumerate() {
        let aliases = vec![format!("*l{d}"); *width].join(",");
        out.push_str(&format!(", &l{} [{aliases}]", d + 1));
    }
    out.push(']');
    out
}

#[test]
fn alias_bombs_are_refused_before_they_expand() {
    // Found by fuzz/fuzz_targets/config_loader.rs: `crl` takes one file
    // or a list, so serde buffers its whole value, aliases expanded, and
    // these 2.5 KB (54 million strings) grew past 2 GB. serde_yaml's
    // repetition limit counts the 55,000 alias jumps, which it allows.
    let bomb = alias_bomb(1000, &[60, 60, 15]);
    assert!(bomb.len() < 2600);
    let text =
        format!("{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: {bomb} }}\n");
    let e = error_text(&text);
    assert!(e.contains("/etc/moat/moat.yaml: line "), "{e}");
    assert!(e.contains("YAML aliases expand this file"), "{e}");
    assert!(e.contains("anchor (&name)"), "{e}");
    // The classic billion laughs stops at serde_yaml's own limit.
    let text = format!(
        "{MINIMAL}      client_auth: {{ mode: required, ca: ca.pem, crl: {} }}\n",
        alias_bomb(9, &[9; 8])
    );
    assert!(parse_str(&text).is_err());
    // Lists the schema nests multiply too: 100 listeners with 100 ACL
    // rules of 100 topics each, in 2 KB.
    let topics = vec!["t"; 100].join(",");
    let rules = vec!["*r"; 99].join(",");
    let listeners = vec!["*l"; 99].join(",");
    let text = format!(
            "listeners: [&l {{ name: a, listen: \"127.0.0.1:1\", backend: \"h:1\", tls: {{ certificates: [{{ cert: c, key: k }}] }}, mqtt: {{ acl: [&r {{ publish: [{topics}] }}, {rules}] }} }}, {listeners}]\n"
        );
    assert!(text.len() < 2048);
    assert!(error_text(&text).contains("YAML aliases expand"));
    // A few aliases for shared settings are fine.
    let text = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    backend: h:1\n    tls: &tls { certificates: [{ cert: c, key: k }] }\n  - name: b\n    listen: 127.0.0.1:2\n    backend: h:1\n    tls: *tls\n";
    let c = parse_str(text).expect("valid");
    assert_eq!(
        c.config.listeners[1].tls.certificates[0].key,
        PathBuf::from("/etc/moat/k")
    );
}

#[test]
fn alias_bombs_after_a_128_bit_integer_are_refused() {
    // Found reviewing the fuzz/fuzz_targets/config_loader.rs fix:
    // serde_yaml hands integers beyond 64 bits to visit_u128/visit_i128,
    // which the expansion walk did not implement; its error ended the
    // walk unspent, so a bomb after such a value (a name is any string)
    // went uncounted to the real parse.
    for big in ["18446744073709551616", "-9223372036854775809"] {
        let text = MINIMAL.replace("name: mqtts", &format!("name: {big}"))
            + &format!(
                "      client_auth: {{ mode: required, ca: ca.pem, crl: {} }}\n",
                alias_bomb(1000, &[60, 60, 15])
            );
        let e = error_text(&text);
        assert!(e.contains("YAML aliases expand this file"), "{e}");
    }
}

#[test]
fn syntax_error_names_line() {
    let e = error_text("listeners: [\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn a_backend_list_with_weights_backups_and_a_balancing_rule() {
    let cluster = "    backend:\n      - 10.0.0.1:1883\n      - { address: 10.0.0.2:1883, weight: 2 }\n      - { address: broker-3:1883, backup: true }\n    balance: least_connections\n";
    let text = MINIMAL.replace("    backend: 127.0.0.1:1883\n", cluster);
    let c = parse_str(&text).expect("valid");
    let l = &c.config.listeners[0];
    let nodes = l.backend.nodes();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        (nodes[1].address.as_str(), nodes[1].weight),
        ("10.0.0.2:1883", 2)
    );
    assert!(nodes[2].backup && !nodes[0].backup);
    assert_eq!(l.balance, Some(Balance::LeastConnections));
    assert_eq!(nodes[0].name, None);
    let named = text.replace("weight: 2 }", "weight: 2, name: node-b }");
    assert_eq!(
        parse_str(&named).expect("valid").config.listeners[0]
            .backend
            .nodes()[1]
            .name
            .as_deref(),
        Some("node-b")
    );
    assert_eq!(
        l.backend.to_string(),
        "10.0.0.1:1883, 10.0.0.2:1883, broker-3:1883"
    );

    let refused = |from: &str, to: &str, field: &str, says: &str| {
        let e = error_text(&text.replace(from, to));
        assert!(
            e.contains(field) && e.contains(says),
            "{field} / {says}: {e}"
        );
    };
    refused(
        "- 10.0.0.1:1883",
        "- 10.0.0.2:1883",
        "listeners[0].backend[1]",
        "listed twice",
    );
    refused(
        "weight: 2",
        "weight: 0",
        "listeners[0].backend[1].weight",
        "at least 1",
    );
    refused("weight: 2", "wieght: 2", "listeners[0].backend", "wieght");
    refused(
        "weight: 2 }",
        "weight: 2, name: broker-3:1883 }",
        "listeners[0].backend[1].name",
        "names two nodes",
    );
    refused(
        "weight: 2 }",
        "weight: 2, name: \" \" }",
        "listeners[0].backend[1].name",
        "is empty",
    );
    refused(
        "- 10.0.0.1:1883",
        "- 10.0.0.1",
        "listeners[0].backend[0]",
        "no port",
    );
    refused(
        "balance: least_connections",
        "balance: identity",
        "listeners[0].balance",
        "needs client certificates",
    );
    refused(
        "balance: least_connections",
        "balance: client_id",
        "listeners[0].balance",
        "MQTT-aware",
    );
    let empty = MINIMAL.replace("backend: 127.0.0.1:1883", "backend: []");
    assert!(error_text(&empty).contains("the backend list is empty"));
    let backups = MINIMAL.replace(
        "backend: 127.0.0.1:1883",
        "backend: [{ address: 10.0.0.1:1883, backup: true }]",
    );
    assert!(error_text(&backups).contains("every backend is a backup"));
}

#[test]
fn active_health_checks_parse_and_bad_numbers_are_refused_by_field() {
    let health = "    backend_health:\n      check: mqtt\n      interval: 1s\n      timeout: 500ms\n      rise: 3\n      fall: 1\n";
    let text = MINIMAL.replace(
        "    backend: 127.0.0.1:1883\n",
        &format!("    backend: 127.0.0.1:1883\n{health}"),
    );
    let c = parse_str(&text).expect("valid");
    let h = &c.config.listeners[0].backend_health;
    assert_eq!(h.check, crate::config::HealthCheck::Mqtt);
    assert_eq!((h.rise, h.fall), (3, 1));
    assert_eq!(h.timeout.0, std::time::Duration::from_millis(500));
    let d = &parse_str(MINIMAL).expect("valid").config.listeners[0].backend_health;
    assert_eq!(d.check, crate::config::HealthCheck::Off);
    let refused = |from: &str, to: &str, field: &str, says: &str| {
        let e = error_text(&text.replace(from, to));
        assert!(
            e.contains(field) && e.contains(says),
            "{field} / {says}: {e}"
        );
    };
    let at = "listeners[0].backend_health";
    refused(
        "interval: 1s",
        "interval: 10ms",
        &format!("{at}.interval"),
        "between 100ms and 1h",
    );
    refused(
        "timeout: 500ms",
        "timeout: 2s",
        &format!("{at}.timeout"),
        "at most the interval",
    );
    refused(
        "rise: 3",
        "rise: 0",
        &format!("{at}.rise"),
        "between 1 and 100",
    );
    refused(
        "fall: 1",
        "fall: 101",
        &format!("{at}.fall"),
        "between 1 and 100",
    );
    refused(
        "check: mqtt",
        "check: http",
        &format!("{at}.check"),
        "unknown variant",
    );
    refused("rise: 3", "rize: 3", at, "rize");
}

/// `MINIMAL` with `admin` set to `admin` (YAML, indented two spaces).
fn with_admin(admin: &str) -> String {
    format!("admin:\n{admin}{MINIMAL}")
}

#[test]
fn admin_tls_parses_with_paths_anchored_and_health_open_by_default() {
    let c = parse_str(&with_admin(
        "  listen: 127.0.0.1:9090\n  tls:\n    cert: admin.pem\n    key: admin.key\n    client_ca: ops-ca.pem\n    cli_cert: cli.pem\n    cli_key: cli.key\n",
    ))
    .expect("valid");
    let admin = c.config.admin.expect("admin");
    assert_eq!(admin.health, AdminHealth::Open);
    let tls = admin.tls.expect("tls");
    assert_eq!(tls.cert, Path::new("/etc/moat/admin.pem"));
    assert_eq!(tls.key, Path::new("/etc/moat/admin.key"));
    assert_eq!(
        tls.client_ca.as_deref(),
        Some(Path::new("/etc/moat/ops-ca.pem"))
    );
    assert_eq!(
        tls.cli_cert.as_deref(),
        Some(Path::new("/etc/moat/cli.pem"))
    );
    assert_eq!(tls.cli_key.as_deref(), Some(Path::new("/etc/moat/cli.key")));
}

#[test]
fn health_authenticated_needs_credentials() {
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  health: authenticated\n",
    ));
    assert!(e.contains("admin.health"), "{e}");
    assert!(e.contains("admin.token_file or admin.tls.client_ca"), "{e}");
    for credentials in [
        "  token_file: token\n",
        "  tls: { cert: a.pem, key: a.key, client_ca: ca.pem }\n",
    ] {
        let text = with_admin(&format!(
            "  listen: 127.0.0.1:9090\n  health: authenticated\n{credentials}"
        ));
        let c = parse_str(&text).expect("valid");
        assert_eq!(c.config.admin.unwrap().health, AdminHealth::Authenticated);
    }
    let e = error_text(&with_admin("  listen: 127.0.0.1:9090\n  health: closed\n"));
    assert!(e.contains("open") && e.contains("authenticated"), "{e}");
}

#[test]
fn admin_tls_bad_combinations_name_the_field() {
    // A client CA outside `tls` is an unknown key of `admin`.
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  client_ca: ca.pem\n",
    ));
    assert!(e.contains("client_ca"), "{e}");
    // TLS needs a certificate and a key.
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  tls: { cert: a.pem }\n",
    ));
    assert!(e.contains("key"), "{e}");
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  tls: { cert: a.pem, key: a.key, client_ca: ca.pem, cli_cert: c.pem }\n",
    ));
    assert!(
        e.contains("admin.tls.cli_cert: is set without admin.tls.cli_key"),
        "{e}"
    );
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  tls: { cert: a.pem, key: a.key, client_ca: ca.pem, cli_key: c.key }\n",
    ));
    assert!(
        e.contains("admin.tls.cli_key: is set without admin.tls.cli_cert"),
        "{e}"
    );
    let e = error_text(&with_admin(
        "  listen: 127.0.0.1:9090\n  tls: { cert: a.pem, key: a.key, cli_cert: c.pem, cli_key: c.key }\n",
    ));
    assert!(
        e.contains("admin.tls.cli_cert") && e.contains("client_ca"),
        "{e}"
    );
}

const CLIENT_OCSP: &str = "
listeners:
  - name: mqtts
    listen: 127.0.0.1:8883
    backend: 127.0.0.1:1883
    tls:
      certificates:
        - cert: tls/server.pem
          key: tls/server.key
      client_auth:
        mode: MODE
        ca: tls/devices.pem
        OCSP
";

fn client_ocsp(mode: &str, ocsp: &str) -> String {
    let text = CLIENT_OCSP.replace("MODE", mode).replace("OCSP", ocsp);
    if mode == "none" {
        text.replace("        ca: tls/devices.pem\n", "")
    } else {
        text
    }
}

#[test]
fn client_ocsp_is_off_by_default_and_takes_prefer_or_require() {
    let c = parse_str(&client_ocsp("required", "")).expect("valid");
    let ca = &c.config.listeners[0].tls.client_auth;
    assert_eq!(ca.ocsp, ClientOcspMode::Off);
    assert_eq!(ca.ocsp_timeout(), Duration::from_secs(3));
    let c = parse_str(&client_ocsp(
        "required",
        "ocsp: require\n        ocsp_timeout: 2s",
    ))
    .expect("valid");
    let ca = &c.config.listeners[0].tls.client_auth;
    assert_eq!(ca.ocsp, ClientOcspMode::Require);
    assert_eq!(ca.ocsp_timeout(), Duration::from_secs(2));
    let c = parse_str(&client_ocsp("optional", "ocsp: prefer")).expect("valid");
    assert_eq!(
        c.config.listeners[0].tls.client_auth.ocsp,
        ClientOcspMode::Prefer
    );
}

#[test]
fn client_ocsp_errors_name_the_field() {
    let e = error_text(&client_ocsp("none", "ocsp: require"));
    assert!(e.contains("tls.client_auth.ocsp"), "{e}");
    assert!(e.contains("client_auth.mode is none"), "{e}");
    let e = error_text(&client_ocsp("required", "ocsp: sometimes"));
    assert!(e.contains("ocsp"), "{e}");
    assert!(e.contains("prefer"), "{e}");
    let e = error_text(&client_ocsp(
        "required",
        "ocsp: require\n        ocsp_timeout: 0s",
    ));
    assert!(e.contains("tls.client_auth.ocsp_timeout"), "{e}");
    assert!(e.contains("longer than zero"), "{e}");
    let e = error_text(&client_ocsp(
        "required",
        "ocsp: prefer\n        ocsp_timeout: 5m",
    ));
    assert!(e.contains("at most 30s"), "{e}");
    let e = error_text(&client_ocsp("required", "ocsp_timeout: 2s"));
    assert!(e.contains("ocsp is off"), "{e}");
}

#[test]
fn revocation_recheck_defaults_to_a_minute_with_an_online_check_only() {
    let c = parse_str(&client_ocsp("required", "ocsp: prefer")).expect("valid");
    let ca = &c.config.listeners[0].tls.client_auth;
    assert_eq!(ca.revocation_recheck(), Some(Duration::from_secs(60)));
    let c = parse_str(&client_ocsp("required", "")).expect("valid");
    assert_eq!(
        c.config.listeners[0].tls.client_auth.revocation_recheck(),
        None
    );
    let c = parse_str(&client_ocsp(
        "required",
        "crl_distribution_points: require\n        revocation_recheck: 0s",
    ))
    .expect("0s turns it off");
    assert_eq!(
        c.config.listeners[0].tls.client_auth.revocation_recheck(),
        None
    );
    let e = error_text(&client_ocsp("required", "revocation_recheck: 5m"));
    assert!(e.contains("tls.client_auth.revocation_recheck"), "{e}");
    assert!(e.contains("nothing to check again"), "{e}");
    let e = error_text(&client_ocsp(
        "required",
        "ocsp: prefer\n        revocation_recheck: 2d",
    ));
    assert!(
        e.contains("0s (only at connect) or 1s to 24h, not 2days"),
        "{e}"
    );
}

#[test]
fn ocsp_cache_dir_needs_ocsp() {
    let c = parse_str(&client_ocsp(
        "required",
        "ocsp: prefer\n        ocsp_cache_dir: /var/cache/moat/devices",
    ))
    .expect("valid");
    assert_eq!(
        c.config.listeners[0].tls.client_auth.ocsp_cache_dir,
        Some(std::path::PathBuf::from("/var/cache/moat/devices"))
    );
    let e = error_text(&client_ocsp("required", "ocsp_cache_dir: /tmp/x"));
    assert!(e.contains("tls.client_auth.ocsp_cache_dir"), "{e}");
    assert!(e.contains("ocsp is off"), "{e}");
}

#[test]
fn websocket_section_defaults_and_bad_values_named_by_field() {
    let on = format!("{MINIMAL}    websocket:\n");
    let c = parse_str(&on).expect("a bare websocket: is valid");
    let ws = c.config.listeners[0].websocket.as_ref().expect("on");
    assert_eq!(ws.path, "/mqtt");
    assert!(ws.origins.is_empty());
    assert!(parse_str(MINIMAL).expect("valid").config.listeners[0]
        .websocket
        .is_none());
    let refused = |section: &str, field: &str, says: &str| {
        let e = error_text(&format!("{MINIMAL}{section}"));
        assert!(
            e.contains(field) && e.contains(says),
            "{field} / {says}: {e}"
        );
    };
    let at = "listeners[0].websocket";
    refused(
        "    websocket:\n      path: mqtt\n",
        &format!("{at}.path"),
        "does not start with /",
    );
    refused(
        "    websocket:\n      origins: [\"dash.example.com\"]\n",
        &format!("{at}.origins[0]"),
        "has no scheme",
    );
    refused(
        "    websocket:\n      max_frame_size: 1\n",
        &format!("{at}.max_frame_size"),
        "at least 2",
    );
    refused(
        "    websocket:\n      max_frame_size: 4096\n      max_message_size: 1024\n",
        &format!("{at}.max_message_size"),
        "smaller than max_frame_size",
    );
    refused("    websocket:\n      paht: /x\n", "paht", "path");
    let alpn = |list: &str| {
        on.replace(
            "          key: tls/server.key\n",
            &format!("          key: tls/server.key\n      alpn: {list}\n"),
        )
    };
    assert!(error_text(&alpn("[mqtt]")).contains("does not list http/1.1"));
    assert!(error_text(&alpn("[h2, http/1.1]")).contains("lists h2"));
    assert!(parse_str(&alpn("[mqtt, http/1.1]")).is_ok());
}

#[test]
fn discovered_entries_and_backend_dns_parse_with_defaults() {
    let text = MINIMAL.replace(
        "    backend: 127.0.0.1:1883\n",
        "    backend:\n      - { address: _mqtt._tcp.mosquitto.mqtt.svc.cluster.local, discover: srv, weight: 2 }\n      - { address: spare.mqtt.svc:1883, discover: addresses, backup: true }\n    backend_dns:\n      servers: [10.96.0.10:53, '[fd00::a]:53']\n",
    );
    let c = parse_str(&text).expect("valid");
    let l = &c.config.listeners[0];
    let n = l.backend.nodes();
    assert_eq!(n[0].discover, Some(crate::config::Discover::Srv));
    assert_eq!(n[0].weight, 2);
    assert_eq!(n[1].discover, Some(crate::config::Discover::Addresses));
    assert!(l.backend.is_cluster() && l.backend.discovers());
    assert_eq!(l.backend_dns.interval.0, std::time::Duration::from_secs(10));
    assert_eq!(l.backend_dns.servers.len(), 2);
    let d = &parse_str(MINIMAL).expect("valid").config.listeners[0];
    assert!(!d.backend.discovers() && d.backend_dns.servers.is_empty());
}

#[test]
fn bad_discovery_settings_are_refused_by_field() {
    let text = MINIMAL.replace(
        "    backend: 127.0.0.1:1883\n",
        "    backend:\n      - { address: _mqtt._tcp.brokers.test, discover: srv }\n    backend_dns:\n      interval: 5s\n      servers: [127.0.0.1:53]\n",
    );
    parse_str(&text).expect("valid");
    let refused = |from: &str, to: &str, field: &str, says: &str| {
        let e = error_text(&text.replace(from, to));
        assert!(
            e.contains(&format!("{field}: ")) || e.contains(&format!("{field} (")),
            "{field}: {e}"
        );
        assert!(e.contains(says), "{field} / {says}: {e}");
    };
    let dns = "listeners[0].backend_dns";
    refused(
        "interval: 5s",
        "interval: 500ms",
        &format!("{dns}.interval"),
        "between 1s and 1h",
    );
    refused(
        "interval: 5s",
        "interval: 2h",
        &format!("{dns}.interval"),
        "between 1s and 1h",
    );
    refused(
        "127.0.0.1:53",
        "dns.example:53",
        &format!("{dns}.servers[0]"),
        "is not an ip:port",
    );
    refused(
        "127.0.0.1:53",
        "127.0.0.1",
        &format!("{dns}.servers[0]"),
        "is not an ip:port",
    );
    refused(
        "127.0.0.1:53",
        "127.0.0.1:0",
        &format!("{dns}.servers[0]"),
        "is not an ip:port",
    );
    refused(
        "discover: srv }",
        "discover: srv, name: brokers }",
        "listeners[0].backend[0].name",
        "cannot be set with discover",
    );
    let at = "listeners[0].backend[0].discover";
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "10.0.0.1, discover: srv",
        at,
        "is an IP address",
    );
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "'10.0.0.1:1883', discover: addresses",
        at,
        "is an IP address",
    );
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "'[::1]:1883', discover: addresses",
        at,
        "is an IP address",
    );
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "'brokers.test:1883', discover: srv",
        at,
        "without a port",
    );
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "'bad name!', discover: srv",
        at,
        "not a valid SRV name",
    );
    refused(
        "_mqtt._tcp.brokers.test, discover: srv",
        "brokers.test, discover: addresses",
        "listeners[0].backend[0]",
        "has no port",
    );
    refused(
        "discover: srv",
        "discover: dns",
        "listeners[0].backend[0].discover",
        "unknown variant",
    );
}
