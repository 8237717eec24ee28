//! The life of connections and of the process: backend failures, limits,
//! timeouts, garbage input, and graceful shutdown with a drain deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use moat_testkit::*;

/// moat in front of the broker on `backend`, with `extra` under its
/// listener and `top` before the rest of the configuration.
fn setup(backend: u16, extra: &str, top: &str) -> Running {
    Gateway::new()
        .backend(backend)
        .listener_yaml(extra)
        .top_yaml(top)
        .start()
}

/// moat in front of its own broker, with `extra` under its listener and
/// `top` before the rest of the configuration.
fn with_broker(extra: &str, top: &str) -> Running {
    Gateway::new().listener_yaml(extra).top_yaml(top).start()
}

#[test]
fn backend_down_gives_a_clean_tls_close_a_log_line_and_a_metric() {
    let dead = free_port();
    let s = setup(dead, "", "");
    let cfg = rustls_client(&s.ca().cert, None);
    let mut c = RustlsConn::connect(s.port, "localhost", cfg).expect("handshake still succeeds");
    c.write_all(&mqtt_connect_v311("dev"))
        .expect("send CONNECT");
    // A clean close: close_notify then EOF, not a reset or a truncation.
    let rest = c
        .read_to_end()
        .expect("clean close_notify, not an abrupt close");
    assert!(rest.is_empty());
    assert!(
        s.moat
            .wait_for_log("cannot reach the backend broker", Duration::from_secs(5)),
        "{}",
        s.moat.logs()
    );
    assert_eq!(
        s.moat.metric("moat_backend_connect_failures_total", ""),
        1.0
    );
    // mosquitto_pub sees a failure, and moat keeps serving.
    let out = mosquitto_pub("localhost", s.port, Some(&Tls::ca(&s.ca().cert)), "t", "m");
    assert!(!out.status.success());
    assert_eq!(
        s.moat.metric("moat_backend_connect_failures_total", ""),
        2.0
    );
    assert_eq!(s.moat.get("/readyz").0, 200);
}

#[test]
fn connections_beyond_max_connections_are_refused_at_once() {
    let s = with_broker("max_connections: 2", "");
    let cfg = rustls_client(&s.ca().cert, None);
    let _a = RustlsConn::connect(s.port, "localhost", cfg.clone()).expect("first");
    let _b = RustlsConn::connect(s.port, "localhost", cfg.clone()).expect("second");
    let start = Instant::now();
    let third = RustlsConn::connect(s.port, "localhost", cfg.clone());
    assert!(third.is_err(), "a third connection must be refused");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "refused at once, not after a timeout"
    );
    assert_eq!(
        s.moat.metric(
            "moat_connections_rejected_total",
            "reason=\"max_connections\""
        ),
        1.0
    );
    assert!(s.moat.logs().contains("connection limit reached"));
    drop(_a);
    // A slot frees up when a connection ends.
    assert!(wait_until(Duration::from_secs(5), || RustlsConn::connect(
        s.port,
        "localhost",
        cfg.clone()
    )
    .is_ok()));
}

#[test]
fn silent_client_is_closed_after_the_handshake_timeout() {
    let s = with_broker("timeouts: { handshake: 1s }", "");
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "moat must close the connection");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(
        s.moat
            .metric("moat_tls_handshakes_total", "reason=\"timeout\""),
        1.0
    );
}

#[test]
fn garbage_and_plaintext_mqtt_close_only_that_connection() {
    let s = with_broker("", "");
    for (what, bytes) in [
        ("plaintext MQTT", mqtt_connect_v311("plain")),
        (
            "garbage",
            (0..600u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ] {
        let mut sock = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        sock.write_all(&bytes).expect("send");
        let mut reply = Vec::new();
        let _ = sock.read_to_end(&mut reply);
        // Whatever moat answers (at most a TLS alert), it never relays.
        assert!(reply.len() < 64, "{what}: unexpected reply {reply:?}");
        assert!(!reply.starts_with(&[0x20]), "{what}: got an MQTT CONNACK");
    }
    assert!(s
        .moat
        .wait_for_log("TLS handshake failed", Duration::from_secs(5)));
    assert!(
        s.moat
            .metric_reaching("moat_tls_handshakes_total", "reason=\"not_tls\"", 2.0)
            >= 2.0,
        "{}",
        s.moat.metrics()
    );
    assert_eq!(
        s.broker().logs().matches("New client connected").count(),
        0,
        "nothing reached the broker"
    );
    let tls = Tls::ca(&s.ca().cert);
    assert!(
        round_trip(s.dir.path(), s.port, Some(&tls), s.broker().port, None).starts_with("hello-")
    );
}

#[test]
fn sigterm_drains_live_connections_then_exits_zero() {
    let mut s = with_broker("", "shutdown:\n  drain_timeout: 20s\n");
    let tls = Tls::ca(&s.ca().cert);
    let mut sub = Sub::spawn(
        s.dir.path(),
        "drain-sub",
        s.port,
        Some(&tls),
        "drain/t",
        1,
        30,
    );
    assert!(wait_until(Duration::from_secs(10), || s
        .broker()
        .logs()
        .contains("drain-sub")));
    assert!(wait_until(Duration::from_secs(5), || s
        .moat
        .metric("moat_connections_active", "")
        == 1.0));

    s.moat.signal("TERM");
    assert!(
        s.moat
            .wait_for_log("draining live connections", Duration::from_secs(5)),
        "{}",
        s.moat.logs()
    );
    // Not ready any more, and no new connections are accepted...
    assert_eq!(s.moat.get("/readyz").0, 503);
    assert!(
        wait_until(Duration::from_secs(5), || !port_open(s.port)),
        "listener still open"
    );
    // ...but the live subscriber still gets its message.
    let out = mosquitto_pub(
        "localhost",
        s.broker().port,
        None,
        "drain/t",
        "during-drain",
    );
    assert!(out.status.success());
    assert_eq!(sub.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(sub.output().trim(), "during-drain");
    // The last connection ended, so moat exits well before the deadline.
    let status = s
        .moat
        .wait_exit(Duration::from_secs(10))
        .expect("moat exits after the drain");
    assert_eq!(status.code(), Some(0));
    assert!(
        s.moat.logs().contains("all connections finished"),
        "{}",
        s.moat.logs()
    );
}

#[test]
fn drain_deadline_closes_what_is_left_and_exits_zero() {
    let mut s = with_broker("", "shutdown:\n  drain_timeout: 1s\n");
    let tls = Tls::ca(&s.ca().cert);
    let mut sub = Sub::spawn(
        s.dir.path(),
        "stuck-sub",
        s.port,
        Some(&tls),
        "never",
        1,
        60,
    );
    assert!(wait_until(Duration::from_secs(10), || s
        .broker()
        .logs()
        .contains("stuck-sub")));
    let start = Instant::now();
    s.moat.signal("TERM");
    let status = s
        .moat
        .wait_exit(Duration::from_secs(10))
        .expect("moat exits at the deadline");
    assert_eq!(status.code(), Some(0));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        s.moat.logs().contains("drain deadline reached"),
        "{}",
        s.moat.logs()
    );
    // The subscriber lost its connection.
    assert!(sub.wait(Duration::from_secs(10)).is_some());
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut s = with_broker("", "");
    s.moat.signal("INT");
    let status = s.moat.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(s.moat.logs().contains("signal=\"SIGINT\""));
}

#[test]
fn sd_notify_reports_ready_reloading_and_stopping() {
    // The test plays systemd: a datagram socket in NOTIFY_SOCKET.
    use std::os::unix::net::UnixDatagram;
    let g = Gateway::new().no_admin().prepare();
    let sock_path = g.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = g.port;
    let config = g.write_config();
    let mut moat = Moat::spawn_config(
        &config,
        None,
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = recv();
    assert!(
        ready.contains("READY=1") && ready.contains("STATUS=serving 1 listener(s)"),
        "{ready}"
    );
    // A supervisor may reload the moment it hears READY=1 (`systemctl
    // reload` right after start): the handler must already be in place.
    moat.signal("HUP");
    assert!(port_open(port), "READY only once the listener is bound");
    let reloading = recv();
    assert!(
        reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(recv().contains("READY=1"));
    moat.signal("TERM");
    assert!(recv().contains("STOPPING=1"));
    assert_eq!(
        moat.wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}
