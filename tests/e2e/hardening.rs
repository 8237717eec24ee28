//! Abuse and faults: per-address limits, the handshake cap, half-open and
//! slowloris clients, idle timeouts, broker restarts and outages, and
//! running out of file descriptors. Each limit closes only the offender,
//! with a metric by reason.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use moat_testkit::*;

/// moat in front of a broker, with `extra` under its listener.
fn setup(extra: &str) -> Running {
    Gateway::new().listener_yaml(extra).start()
}

trait Client {
    fn client(&self) -> std::io::Result<RustlsConn>;
}

impl Client for Running {
    fn client(&self) -> std::io::Result<RustlsConn> {
        let mut c =
            RustlsConn::connect(self.port, "localhost", rustls_client(&self.ca().cert, None))?;
        c.write_all(&mqtt_connect_v311("c"))?;
        c.read_exact(4)?;
        Ok(c)
    }
}

#[test]
fn per_address_connection_limit_refuses_only_the_excess() {
    let s = setup("limits: { per_ip_connections: 2 }");
    let a = s.client().expect("first");
    let _b = s.client().expect("second");
    assert!(
        s.client().is_err(),
        "a third connection from the same address"
    );
    assert_eq!(
        s.moat.metric(
            "moat_connections_rejected_total",
            "reason=\"per_ip_connections\""
        ),
        1.0
    );
    drop(a);
    assert!(
        wait_until(Duration::from_secs(5), || s.client().is_ok()),
        "a slot frees when a connection ends"
    );
}

#[test]
fn per_address_rate_limit_allows_a_burst_then_refuses() {
    let s = setup("limits: { per_ip_rate: 5 }");
    let results: Vec<bool> = (0..20).map(|_| s.client().is_ok()).collect();
    let ok = results.iter().filter(|r| **r).count();
    // A burst of 10, plus whatever refilled while the 20 attempts ran.
    assert!((10..=15).contains(&ok), "{ok} admitted: {results:?}");
    assert!(
        s.moat
            .metric("moat_connections_rejected_total", "reason=\"per_ip_rate\"")
            >= 5.0
    );
}

#[test]
fn the_handshake_cap_refuses_new_handshakes_while_it_is_full() {
    let s = setup("limits: { max_handshakes: 3 }\ntimeouts: { handshake: 2s }");
    // Three connections that never say hello hold every handshake slot.
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).expect("connect"))
        .collect();
    assert!(wait_until(Duration::from_secs(5), || s
        .moat
        .metric("moat_connections_active", "")
        == 3.0));
    let start = Instant::now();
    assert!(s.client().is_err(), "the cap is full");
    assert!(start.elapsed() < Duration::from_secs(1), "refused at once");
    assert!(
        s.moat.metric(
            "moat_connections_rejected_total",
            "reason=\"handshake_limit\""
        ) >= 1.0
    );
    // The silent ones time out and free their slots.
    assert!(wait_until(Duration::from_secs(6), || s.client().is_ok()));
    drop(silent);
}

#[test]
fn half_open_and_slowloris_clients_do_not_delay_good_ones() {
    // The per-address limits would refuse most of 5,000 connections from
    // one address; this test is about the handshakes.
    let s =
        setup("timeouts: { handshake: 30s }\nlimits: { per_ip_rate: 0, per_ip_connections: 0 }");
    // 5,000 connections that never finish a handshake...
    let half_open: Vec<TcpStream> = (0..5000)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).expect("connect"))
        .collect();
    // ...and a slowloris sending its hello a byte a second.
    let slow_port = s.port;
    let slowloris = std::thread::spawn(move || {
        let mut t = TcpStream::connect(("127.0.0.1", slow_port)).expect("connect");
        for b in [0x16u8, 0x03, 0x01, 0x02, 0x00] {
            if t.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert!(wait_until(Duration::from_secs(20), || s
        .moat
        .metric("moat_connections_active", "")
        >= 5000.0));
    // Well-behaved devices still connect promptly.
    for _ in 0..10 {
        let start = Instant::now();
        s.client().expect("a good client gets through");
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "a good handshake took {took:?}"
        );
    }
    drop(half_open);
    let _ = slowloris.join();
}

#[test]
fn idle_connections_are_closed_and_mqtt_uses_the_keep_alive() {
    let s = setup("timeouts: { idle: 1s }");
    let mut c = s.client().expect("connect");
    let start = Instant::now();
    assert!(c.read_to_end().map(|b| b.is_empty()).unwrap_or(true));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || s
        .moat
        .metric("moat_idle_timeouts_total", "")
        == 1.0));

    // MQTT-aware: 1.5 x the CONNECT's keep-alive of 2 s, whatever idle says.
    let m = setup("mqtt: {}\ntimeouts: { idle: 60s }");
    let mut c = RustlsConn::connect(m.port, "localhost", rustls_client(&m.ca().cert, None))
        .expect("handshake");
    let mut connect = mqtt_connect_v311("keepalive-2s");
    connect[10] = 0x00;
    connect[11] = 0x02; // keep-alive: 2 s
    c.write_all(&connect).expect("CONNECT");
    c.read_exact(4).expect("CONNACK");
    let start = Instant::now();
    // Mosquitto itself allows 1.5 x keep-alive too; either side may close
    // first, both at about 3 s.
    assert!(c.read_to_end().map(|b| b.is_empty()).unwrap_or(true));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_broker_restart_closes_cleanly_and_new_connections_work_when_it_is_back() {
    let mut s = setup("");
    let mut c = s.client().expect("connect");
    s.broker_mut().stop();
    // The client's session ends with a clean TLS close.
    assert!(
        c.read_to_end().is_ok(),
        "expected close_notify, not a reset"
    );
    // A connection while the broker is down fails after the retries...
    let start = Instant::now();
    assert!(s.client().is_err());
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "retried for the connect timeout: {:?}",
        start.elapsed()
    );
    // ...and one that starts just before the broker returns succeeds.
    let port = s.port;
    let ca = s.ca().cert.clone();
    let pending = std::thread::spawn(move || {
        let mut c = RustlsConn::connect(port, "localhost", rustls_client(&ca, None))?;
        c.write_all(&mqtt_connect_v311("early"))?;
        c.read_exact(4)
    });
    std::thread::sleep(Duration::from_millis(800));
    s.broker_mut().restart();
    assert_eq!(
        pending
            .join()
            .expect("join")
            .expect("connected once the broker was back"),
        [0x20, 0x02, 0x00, 0x00]
    );
    assert!(s.client().is_ok());
    let _ = &s.dir;
}

#[test]
fn readiness_follows_the_backend_when_asked_to() {
    let mut s = setup("unready_after_backend_failures: 2\ntimeouts: { connect: 300ms }");
    assert_eq!(s.moat.get("/readyz").0, 200);
    s.broker_mut().stop();
    assert!(s.client().is_err());
    assert_eq!(s.moat.get("/readyz").0, 200, "one failure is not an outage");
    assert!(s.client().is_err());
    assert_eq!(s.moat.get("/readyz").0, 503, "two in a row are");
    assert_eq!(s.moat.get("/healthz").0, 200, "alive all the same");
    s.broker_mut().restart();
    assert!(s.client().is_ok());
    assert_eq!(s.moat.get("/readyz").0, 200);
}

/// CPU seconds a process has used (utime + stime).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let g = Gateway::new()
        .no_admin()
        .listener_yaml("timeouts: { handshake: 60s }")
        .prepare();
    let (dir, port) = (&g.dir, g.port);
    let config = g.write_config();
    // moat with only 64 file descriptors.
    let log = dir.join("moat.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} run --config {} 2> {}",
            moat_bin().display(),
            config.display(),
            log.display()
        ))
        .spawn()
        .expect("start moat");
    assert!(wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(" ready")
    }));
    // Fill its descriptors with silent connections, and keep knocking.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..120 {
        if let Ok(t) = TcpStream::connect(("127.0.0.1", port)) {
            held.push(t);
        }
    }
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("out of file descriptors")
    }));
    let before = cpu_seconds(child.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(child.id()) - before;
    assert!(
        used < 1.0,
        "the accept loop must back off, not spin: {used} CPU seconds in 3 s"
    );
    assert!(
        child.try_wait().expect("wait").is_none(),
        "moat must not exit"
    );
    // Free the descriptors: moat serves again.
    drop(held);
    let ok = wait_until(Duration::from_secs(15), || {
        RustlsConn::connect(port, "localhost", rustls_client(&g.ca().cert, None)).is_ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "moat recovered: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
