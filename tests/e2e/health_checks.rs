//! Active health checks of a broker cluster (`backend_health.check`): a
//! node whose broker stops leaves rotation after `fall` failed checks, so
//! new connections never try it, and rejoins after `rise` good ones; an
//! `mqtt` check marks down a broker that refuses its CONNECT, which a
//! `tcp` check cannot see.

use std::time::Duration;

use moat_testkit::*;

/// moat in front of `nodes`, MQTT-aware, checking them with `check`
/// every 200 ms (rise 2, fall 2).
fn checked(dir: TestDir, nodes: &[&Mosquitto], check: &str) -> Running {
    let health = format!(
        "mqtt:\nbackend_health:\n  check: {check}\n  interval: 200ms\n  timeout: 150ms\n  rise: 2\n  fall: 2\n  hold_down: 1s"
    );
    let mut prepared = Gateway::new()
        .in_dir(dir)
        .backend(nodes[0].port)
        .listener_yaml(&health)
        .prepare();
    prepared.cluster_of(&nodes.iter().map(|n| n.port).collect::<Vec<_>>());
    let moat = prepared.start_moat();
    Running { prepared, moat }
}

fn node(port: u16) -> String {
    format!("backend=\"127.0.0.1:{port}\"")
}

/// Waits up to 5 s for `moat_backend_up` of the node on `port` to be `up`.
fn becomes(s: &Running, port: u16, up: f64) -> bool {
    wait_until(Duration::from_secs(5), || {
        s.moat.metric("moat_backend_up", &node(port)) == up
    })
}

#[test]
fn a_stopped_broker_leaves_after_its_checks_fail_and_rejoins_after_rise() {
    let dir = TestDir::new();
    let mut nodes: Vec<Mosquitto> = (0..3).map(|_| Mosquitto::start(dir.path())).collect();
    let s = checked(dir, &nodes.iter().collect::<Vec<_>>(), "tcp");
    let p1 = nodes[1].port;
    let ok = format!("{},result=\"ok\"", node(p1));
    assert!(
        s.moat
            .metric_reaching("moat_backend_health_checks_total", &ok, 2.0)
            >= 2.0
    );

    nodes[1].stop();
    assert!(becomes(&s, p1, 0.0), "node 1 stayed in rotation");
    assert!(
        s.moat.logs().contains("backend node down:"),
        "{}",
        s.moat.logs()
    );
    let failed = format!("{},result=\"connect_failed\"", node(p1));
    assert!(s.moat.metric("moat_backend_health_checks_total", &failed) >= 2.0);
    // Client-id balancing would send some of these to node 1 first; out of
    // rotation, it is never tried, so no connect to it fails.
    let tls = s.tls();
    for i in 0..12 {
        let out = mosquitto_pub("localhost", s.port, Some(&tls), &format!("t/{i}"), "hi");
        assert!(out.status.success(), "publish {i}: {out:?}");
    }
    assert_eq!(
        s.moat
            .metric("moat_backend_node_connect_failures_total", &node(p1)),
        0.0
    );

    nodes[1].restart();
    assert!(becomes(&s, p1, 1.0), "node 1 did not rejoin");
    assert!(s.moat.logs().contains("up again after 2 good checks"));
}

#[test]
fn an_mqtt_check_marks_down_a_broker_that_refuses_its_connect_and_a_tcp_check_does_not() {
    let dir = TestDir::new();
    let open = Mosquitto::start(dir.path());
    let locked = Mosquitto::start_with(dir.path(), "allow_anonymous false\n");
    let mqtt = checked(TestDir::new(), &[&open, &locked], "mqtt");
    let tcp = checked(TestDir::new(), &[&open, &locked], "tcp");

    assert!(becomes(&mqtt, locked.port, 0.0), "{}", mqtt.moat.logs());
    let rejected = format!("{},result=\"rejected\"", node(locked.port));
    assert!(
        mqtt.moat
            .metric("moat_backend_health_checks_total", &rejected)
            >= 2.0
    );
    assert!(
        mqtt.moat.logs().contains("return code 5"),
        "{}",
        mqtt.moat.logs()
    );
    assert_eq!(mqtt.moat.metric("moat_backend_up", &node(open.port)), 1.0);

    let ok = format!("{},result=\"ok\"", node(locked.port));
    assert!(
        tcp.moat
            .metric_reaching("moat_backend_health_checks_total", &ok, 4.0)
            >= 4.0
    );
    assert_eq!(tcp.moat.metric("moat_backend_up", &node(locked.port)), 1.0);
}
