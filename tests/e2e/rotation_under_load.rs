//! The reason moat exists: certificates rotate under load with no dropped
//! connection and no lost message. 50 paho-mqtt subscribers stay connected
//! through moat while a publisher sends 1,000 QoS 1 messages through moat,
//! and the certificate files are swapped 10 times meanwhile. Each swap must
//! be served to new handshakes within 2 s.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moat_testkit::*;

#[test]
fn ten_rotations_under_load_drop_nothing_and_lose_nothing() {
    require("python3", "python3");
    let dir = TestDir::new();
    let broker = Mosquitto::start(dir.path());
    let ca = Ca::new(dir.path(), "ca", "Test CA");
    std::fs::create_dir(dir.join("tls")).expect("mkdir");
    let live = ca.issue(
        &dir.join("tls"),
        "live",
        &Issue::server("localhost", &["localhost"]),
    );
    let (port, admin) = (free_port(), free_port());
    let moat = Moat::start(
        dir.path(),
        &config_yaml(
            Some(admin),
            &[listener_yaml("mqtts", port, broker.port, &[&live], "", "")],
        ),
        Some(admin),
    );

    let script = workspace_root().join("tests/python/rotation_load.py");
    let mut load = Command::new("python3")
        .arg(&script)
        .args([
            &port.to_string(),
            ca.cert.to_str().unwrap(),
            "50",
            "1000",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the paho-mqtt load (pip install paho-mqtt)");
    let stdout = load.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("load script started");
    assert_eq!(first, "ready", "load script: {first}");
    assert!(moat.metric("moat_connections_active", "") >= 50.0);

    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(400));
        let next = ca.issue(
            dir.path(),
            &format!("rot-{i}"),
            &Issue::server("localhost", &["localhost"]),
        );
        let want = norm_serial(&next.serial());
        replace_atomically(&next, &live.cert, &live.key);
        let start = Instant::now();
        let ok = wait_until(Duration::from_secs(2), || {
            norm_serial(&served_serial(port, "localhost")) == want
        });
        assert!(
            ok,
            "rotation {i}: new serial not served within 2 s; logs:\n{}",
            moat.logs()
        );
        slowest = slowest.max(start.elapsed());
    }
    eprintln!("slowest rotation to reach new handshakes: {slowest:?}");

    let summary = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("load script finished");
    let _ = load.wait();
    let v: serde_json::Value =
        serde_json::from_str(&summary).unwrap_or_else(|e| panic!("{e}: {summary}"));
    let received: Vec<u64> = v["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(received.len(), 50);
    assert!(
        received.iter().all(|&n| n == 1000),
        "messages lost: {received:?}"
    );
    assert_eq!(v["disconnects"], 0, "established connections dropped");
    assert_eq!(v["unacked"], 0, "publishes not acknowledged");
    assert_eq!(
        moat.metric("moat_certificate_reloads_total", "result=\"success\""),
        10.0
    );
    assert_eq!(
        moat.metric("moat_certificate_reloads_total", "result=\"failure\""),
        0.0
    );
}
