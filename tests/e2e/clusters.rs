//! Broker clusters: one listener in front of three real Mosquittos,
//! balanced on the verified certificate identity. Devices spread evenly,
//! always land on the same node whatever client id they claim, and when a
//! node dies only its devices move; when it comes back they return. With
//! every node down an MQTT client gets CONNACK "server unavailable".

use std::time::{Duration, Instant};

use moat_testkit::*;

/// The scene: three brokers, moat with required client certificates and
/// an MQTT-aware listener whose backend lists the three (`discovery` makes
/// its own, with nodes found in the DNS).
pub(crate) struct Cluster {
    pub(crate) s: Running,
    pub(crate) nodes: Vec<Mosquitto>,
}

fn cluster() -> Cluster {
    let dir = TestDir::new();
    let nodes: Vec<Mosquitto> = (0..3).map(|_| Mosquitto::start(dir.path())).collect();
    let mut prepared = Gateway::new()
        .in_dir(dir)
        .backend(nodes[0].port)
        .client_auth("required")
        // MQTT-aware (a bare `mqtt:`), and a short hold-down.
        .listener_yaml("mqtt:\nbackend_health:\n  hold_down: 1s")
        .prepare();
    prepared.cluster_of(&nodes.iter().map(|n| n.port).collect::<Vec<_>>());
    let moat = prepared.start_moat();
    Cluster {
        s: Running { prepared, moat },
        nodes,
    }
}

impl Cluster {
    /// Connects as `device` with client id `id`; the CONNACK's return code
    /// (0 accepted, 3 server unavailable).
    pub(crate) fn connect(&self, device: &CertFiles, id: &str) -> u8 {
        let cfg = rustls_client(
            &self.s.ca().cert,
            Some((device.cert.as_path(), device.key.as_path())),
        );
        let mut c = RustlsConn::connect(self.s.port, "localhost", cfg).expect("TLS");
        c.write_all(&mqtt_connect_v311(id)).expect("CONNECT");
        let ack = c.read_exact(4).expect("CONNACK");
        assert_eq!(ack[..3], [0x20, 0x02, 0x00], "{ack:?}");
        ack[3]
    }

    /// `moat_backend_up` of node `i`.
    pub(crate) fn up(&self, i: usize) -> f64 {
        self.s.moat.metric(
            "moat_backend_up",
            &format!("backend=\"127.0.0.1:{}\"", self.nodes[i].port),
        )
    }

    /// `n` device certificates, `device-0` .. `device-{n-1}`, from the
    /// gateway's devices CA.
    pub(crate) fn devices(&self, n: usize) -> Vec<CertFiles> {
        let dir = self.s.path().to_path_buf();
        (0..n)
            .map(|i| {
                let cn = format!("device-{i}");
                self.s.devices().issue(&dir, &cn, &Issue::client(&cn))
            })
            .collect()
    }

    /// The node whose log shows client id `id`, waiting up to 10 s.
    pub(crate) fn node_of(&self, id: &str) -> usize {
        let needle = format!(" as {id} (");
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            found = self.nodes.iter().position(|n| n.logs().contains(&needle));
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no node saw {id}"))
    }
}

#[test]
fn identity_balancing_spreads_sticks_and_moves_only_a_dead_nodes_devices() {
    let mut c = cluster();
    let devices = c.devices(300);
    // Each device connects five times, with a new client id each time: a
    // device cannot steer itself to another node by its client id.
    std::thread::scope(|scope| {
        for chunk in devices.chunks(50) {
            let c = &c;
            scope.spawn(move || {
                for d in chunk {
                    let cn = d.cert.file_stem().unwrap().to_string_lossy().to_string();
                    for k in 0..5 {
                        assert_eq!(c.connect(d, &format!("{cn}-r{k}")), 0);
                    }
                }
            });
        }
    });
    let mut home = Vec::new();
    let mut count = [0usize; 3];
    for i in 0..300 {
        let first = c.node_of(&format!("device-{i}-r0"));
        for k in 1..5 {
            assert_eq!(
                c.node_of(&format!("device-{i}-r{k}")),
                first,
                "device-{i} changed node on reconnect {k}"
            );
        }
        home.push(first);
        count[first] += 1;
    }
    // Within 15% of even (100 each). The nodes are named (`node-0..2`), so
    // the hash does not depend on their random ports and these 300
    // identities split the same way in every run.
    for n in count {
        assert!((85..=115).contains(&n), "spread {count:?}");
    }
    eprintln!("devices per node: {count:?}");
    assert_eq!(
        c.s.moat
            .metric("moat_backend_selected_total", "listener=\"mqtts\""),
        1500.0
    );

    // Node 1 dies: only its devices move, each at its first try and
    // within 5 s.
    c.nodes[1].stop();
    let mut moved = 0;
    for (i, d) in devices.iter().enumerate() {
        let id = format!("device-{i}-down");
        let started = Instant::now();
        assert_eq!(c.connect(d, &id), 0, "device-{i} found no node");
        assert!(started.elapsed() < Duration::from_secs(5));
        let now = c.node_of(&id);
        if home[i] == 1 {
            assert_ne!(now, 1);
            moved += 1;
        } else {
            assert_eq!(now, home[i], "device-{i} moved though its node is up");
        }
    }
    assert_eq!(moved, count[1]);
    assert_eq!(c.up(1), 0.0);
    assert!(c
        .s
        .moat
        .logs()
        .contains("backend node unreachable; its connections go to the next node"));

    // Node 1 is back: after its hold-down its devices return to it.
    c.nodes[1].restart();
    std::thread::sleep(Duration::from_millis(1200));
    let back: Vec<usize> = (0..300).filter(|&i| home[i] == 1).take(10).collect();
    for &i in &back {
        let id = format!("device-{i}-back");
        assert_eq!(c.connect(&devices[i], &id), 0);
        assert_eq!(c.node_of(&id), 1, "device-{i} did not return");
    }
    assert_eq!(c.up(1), 1.0);
}

#[test]
fn with_every_node_down_an_mqtt_client_gets_server_unavailable() {
    let mut c = cluster();
    let dir = c.s.path().to_path_buf();
    let d =
        c.s.devices()
            .issue(&dir, "lonely", &Issue::client("lonely"));
    assert_eq!(c.connect(&d, "lonely-1"), 0);
    for n in &mut c.nodes {
        n.stop();
    }
    assert_eq!(c.connect(&d, "lonely-2"), 3, "CONNACK server unavailable");
    assert!(
        c.s.moat
            .metric("moat_backend_connect_failures_total", "listener=\"mqtts\"")
            >= 1.0
    );
    assert!(
        c.s.moat.metric(
            "moat_backend_node_connect_failures_total",
            "listener=\"mqtts\""
        ) >= 3.0
    );
}
