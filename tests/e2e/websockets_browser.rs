//! MQTT over WebSockets from a real browser (issue 16): MQTT.js in headless
//! Chromium over `wss://`, through moat to Mosquitto on plain TCP; and the
//! same page against Mosquitto's own WebSockets TLS listener, which shows
//! the browser peer itself works and really verifies TLS.

use std::time::Duration;

use moat_testkit::*;

/// Whether Mosquitto's log shows `client` connecting with MQTT 3.1.1
/// (`p2`) or 5 (`p5`).
fn broker_saw(broker: &Mosquitto, client: &str, protocol: u8) -> bool {
    let p = if protocol == 5 { "p5" } else { "p2" };
    broker.logs().contains(&format!(" as {client} ({p}, "))
}

/// The page served from `page_port` round-tripped in MQTT 3.1.1 and 5,
/// sending its Origin, and `broker` saw both sessions
/// (`<client_id>-v4`, `<client_id>-v5`).
fn assert_both_sessions(
    report: &BrowserReport,
    page_port: u16,
    broker: &Mosquitto,
    client_id: &str,
) {
    report.assert_round_trips(&[4, 5]);
    assert_eq!(
        report.origin.as_deref(),
        Some(format!("http://127.0.0.1:{page_port}").as_str())
    );
    for protocol in [4, 5] {
        let client = format!("{client_id}-v{protocol}");
        assert!(
            broker_saw(broker, &client, protocol),
            "{client}: {}",
            broker.logs()
        );
    }
}

#[test]
fn browser_round_trips_through_moat_wss() {
    // As a 443 listener would be: ALPN picks the transport, the page's
    // Origin is the only one allowed, and the MQTT guard reads the packets.
    let page_port = free_port();
    let s = Gateway::new()
        .server_sans(&["localhost", "127.0.0.1"])
        .tls_yaml("alpn: [mqtt, http/1.1]")
        .listener_yaml(&format!(
            "mqtt:\nwebsocket:\n  path: /mqtt\n  origins: [\"http://127.0.0.1:{page_port}\"]\n"
        ))
        .start();
    let report = BrowserRun::new(&format!("wss://127.0.0.1:{}/mqtt", s.port), &s.server)
        .client_id("through-moat")
        .page_port(page_port)
        .run();
    // The broker listens on TCP alone: the sessions came through moat.
    assert_both_sessions(&report, page_port, s.broker(), "through-moat");
    assert_eq!(
        s.moat
            .metric("moat_websocket_upgrades_total", "result=\"ok\""),
        2.0
    );
    assert_eq!(
        s.moat
            .metric("moat_mqtt_connections_total", "protocol=\"5\""),
        1.0
    );
}

#[test]
fn browser_harness_self_check_against_mosquitto_wss() {
    let dir = TestDir::new();
    let ca = Ca::new(dir.path(), "ca", "Browser Test CA");
    let issue = Issue::server("127.0.0.1", &["127.0.0.1"]);
    let pinned = ca.issue(dir.path(), "pinned", &issue);
    // Same CA, same name, but its key is not the pinned one.
    let other = ca.issue(dir.path(), "other", &issue);
    let (wss, refused) = (free_port(), free_port());
    let mut conf = String::new();
    for (port, cert) in [(wss, &pinned), (refused, &other)] {
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\nprotocol websockets\ncertfile {}\nkeyfile {}\n",
            cert.cert.display(),
            cert.key.display()
        ));
    }
    let broker = Mosquitto::start_with(dir.path(), &conf);
    assert!(
        wait_until(Duration::from_secs(10), || port_open(wss)
            && port_open(refused)),
        "mosquitto's websockets listeners: {}",
        broker.logs()
    );
    let page_port = free_port();
    let report = BrowserRun::new(&format!("wss://127.0.0.1:{wss}/mqtt"), &pinned)
        .client_id("self-check")
        .page_port(page_port)
        .reject(&format!("wss://127.0.0.1:{refused}/mqtt"))
        .run();
    assert_both_sessions(&report, page_port, &broker, "self-check");
    // The pin is the only exception: a certificate from the same CA with
    // another key is refused as any browser would refuse it.
    let rejected = report.rejected.expect("the rejection was asked for");
    assert!(!rejected.connected, "{rejected:?}");
    assert!(
        rejected.console.contains("ERR_CERT_AUTHORITY_INVALID"),
        "{rejected:?}"
    );
}
