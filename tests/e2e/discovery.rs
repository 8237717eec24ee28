//! Backend discovery: one backend entry with `discover:` becomes one node
//! per DNS answer, looked up again every `backend_dns.interval`, against a
//! real dnsmasq. With `discover: srv` three SRV records give three real
//! Mosquittos; when a record leaves, only that node's devices move (its
//! broker still runs: the DNS moved them), its open sessions stay, and its
//! metric series leave /metrics; when it comes back it is used again.
//! With `discover: addresses`, a name with an A and an AAAA record gives
//! two nodes on the same port. `moat check` lists what it finds. A reload
//! that changes `backend_dns` finds the nodes again and moves no device.

use std::time::Duration;

use moat_testkit::*;

use crate::clusters::Cluster;

/// The SRV name the scenes look up.
const SRV: &str = "_mqtt._tcp.brokers.test";

/// dnsmasq's records: `node.test` at 127.0.0.1, and an SRV record for it
/// on each of `ports`.
fn srv_records(ports: &[u16]) -> Vec<String> {
    let mut r = vec!["--host-record=node.test,127.0.0.1".to_string()];
    r.extend(
        ports
            .iter()
            .map(|p| format!("--srv-host={SRV},node.test,{p}")),
    );
    r
}

/// moat with required client certificates and MQTT health checks in front
/// of the nodes of one backend entry `entry`, looked up at `dns` every
/// second.
fn gateway(dir: TestDir, nodes: Vec<Mosquitto>, dns: &Dnsmasq, entry: &str) -> Cluster {
    let mut prepared = Gateway::new()
        .in_dir(dir)
        .backend(nodes[0].port)
        .client_auth("required")
        .listener_yaml(&format!(
            "mqtt:\nbackend_health:\n  hold_down: 1s\n  check: mqtt\n  interval: 500ms\n  timeout: 400ms\nbackend_dns:\n  interval: 1s\n  servers: [127.0.0.1:{}]",
            dns.port
        ))
        .prepare();
    prepared.backend_list(&[entry.to_string()]);
    let moat = prepared.start_moat();
    Cluster {
        s: Running { prepared, moat },
        nodes,
    }
}

/// Three Mosquittos behind one `discover: srv` entry whose records dnsmasq
/// serves, once moat has found all three; and the nodes' ports.
fn three_srv_nodes() -> (Cluster, Vec<u16>, Dnsmasq) {
    let dir = TestDir::new();
    let nodes: Vec<Mosquitto> = (0..3).map(|_| Mosquitto::start(dir.path())).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let dns = Dnsmasq::start(dir.path(), &srv_records(&ports));
    let c = gateway(
        dir,
        nodes,
        &dns,
        &format!("{{ address: {SRV}, discover: srv }}"),
    );
    wait_nodes(&c, SRV, 3.0);
    (c, ports, dns)
}

/// Waits until the entry `name` has `n` nodes (`moat_backend_dns_nodes`).
fn wait_nodes(c: &Cluster, name: &str, n: f64) {
    let labels = format!("name=\"{name}\"");
    assert!(
        wait_until(Duration::from_secs(10), || c
            .s
            .moat
            .metric("moat_backend_dns_nodes", &labels)
            == n),
        "{name} did not reach {n} nodes; metrics:\n{}\nlog:\n{}",
        c.s.moat.metrics(),
        c.s.moat.logs()
    );
}

/// Whether /metrics has any series of the node at `address`.
fn has_series(c: &Cluster, address: &str) -> bool {
    c.s.moat
        .metrics()
        .contains(&format!("backend=\"{address}\""))
}

#[test]
fn srv_nodes_join_and_leave_with_their_records_and_only_their_devices_move() {
    let (c, ports, mut dns) = three_srv_nodes();
    // The discovered nodes are checked like written ones.
    for p in &ports {
        let ok = format!("backend=\"127.0.0.1:{p}\",result=\"ok\"");
        assert!(
            wait_until(Duration::from_secs(5), || c
                .s
                .moat
                .metric("moat_backend_health_checks_total", &ok)
                >= 1.0),
            "127.0.0.1:{p} was not checked"
        );
    }
    let devices = c.devices(90);
    let mut home = Vec::new();
    let mut count = [0usize; 3];
    for (i, d) in devices.iter().enumerate() {
        let id = format!("device-{i}-r0");
        assert_eq!(c.connect(d, &id), 0);
        let n = c.node_of(&id);
        home.push(n);
        count[n] += 1;
    }
    // About 30 each; 10 is far below chance (sd about 4.5).
    assert!(count.iter().all(|&n| n >= 10), "spread {count:?}");

    // A device of node 2 stays connected across the change.
    let stay = (0..90).find(|&i| home[i] == 2).expect("a device on node 2");
    let cfg = rustls_client(
        &c.s.ca().cert,
        Some((devices[stay].cert.as_path(), devices[stay].key.as_path())),
    );
    let mut live = RustlsConn::connect(c.s.port, "localhost", cfg).expect("TLS");
    live.write_all(&mqtt_connect_v311("live-on-2"))
        .expect("CONNECT");
    assert_eq!(live.read_exact(4).expect("CONNACK"), [0x20, 2, 0, 0]);
    assert_eq!(c.node_of("live-on-2"), 2);

    // Node 2's record leaves (its broker still runs).
    let gone = format!("127.0.0.1:{}", ports[2]);
    dns.set_records(&srv_records(&ports[..2]));
    wait_nodes(&c, SRV, 2.0);
    assert!(
        wait_until(Duration::from_secs(5), || !has_series(&c, &gone)),
        "{gone}'s series are still in /metrics"
    );
    assert!(c.s.moat.logs().contains("backend nodes changed in the DNS"));
    let mut moved = 0;
    for (i, d) in devices.iter().enumerate() {
        let id = format!("device-{i}-r1");
        assert_eq!(c.connect(d, &id), 0);
        let now = c.node_of(&id);
        if home[i] == 2 {
            assert_ne!(now, 2, "device-{i} still went to the removed node");
            moved += 1;
        } else {
            assert_eq!(now, home[i], "device-{i} moved though its node stayed");
        }
    }
    assert_eq!(moved, count[2]);
    // The open session was not closed: it still answers a PINGREQ.
    live.write_all(&[0xC0, 0]).expect("PINGREQ");
    assert_eq!(live.read_exact(2).expect("PINGRESP"), [0xD0, 0]);

    // The DNS fails: the last good nodes stay, the failures are counted.
    dns.stop();
    let failures = format!("name=\"{SRV}\"");
    assert!(wait_until(Duration::from_secs(15), || c
        .s
        .moat
        .metric("moat_backend_dns_failures_total", &failures)
        >= 1.0));
    assert_eq!(c.s.moat.metric("moat_backend_dns_nodes", &failures), 2.0);
    assert_eq!(c.connect(&devices[0], "during-outage"), 0);

    // Node 2 is back in the DNS: its devices return to it.
    dns.set_records(&srv_records(&ports));
    wait_nodes(&c, SRV, 3.0);
    assert!(c.s.moat.logs().contains("backend discovery answers again"));
    for i in (0..90).filter(|&i| home[i] == 2) {
        let id = format!("device-{i}-r2");
        assert_eq!(c.connect(&devices[i], &id), 0);
        assert_eq!(c.node_of(&id), 2, "device-{i} did not return");
    }
    assert_eq!(c.up(2), 1.0);
}

#[test]
fn addresses_gives_a_node_per_a_and_aaaa_record_on_the_entry_port() {
    let dir = TestDir::new();
    let port = free_port();
    let nodes = vec![
        Mosquitto::start_on(dir.path(), port, ""),
        Mosquitto::start_at(dir.path(), "::1", port, ""),
    ];
    let dns = Dnsmasq::start(
        dir.path(),
        &["--host-record=dual.test,127.0.0.1,::1".to_string()],
    );
    let name = format!("dual.test:{port}");
    let c = gateway(
        dir,
        nodes,
        &dns,
        &format!("{{ address: '{name}', discover: addresses }}"),
    );
    wait_nodes(&c, &name, 2.0);
    assert!(has_series(&c, &format!("127.0.0.1:{port}")));
    assert!(has_series(&c, &format!("[::1]:{port}")));
    let path = c.s.path().to_path_buf();
    let mut used = [0usize; 2];
    for i in 0..30 {
        let cn = format!("dual-{i}");
        let d = c.s.devices().issue(&path, &cn, &Issue::client(&cn));
        assert_eq!(c.connect(&d, &cn), 0);
        used[c.node_of(&cn)] += 1;
    }
    assert!(used.iter().all(|&n| n > 0), "both nodes used: {used:?}");

    // `moat check` looks the entry up too, and lists the nodes.
    let out = moat_cmd(&["check", "--config", c.s.moat.config.to_str().unwrap()]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "listeners[0].backend[0]: {name} (discover: addresses) has 2 node(s): 127.0.0.1:{port}, [::1]:{port}"
        )),
        "{text}"
    );
    // A name with no record is an error naming the entry.
    let missing = std::fs::read_to_string(&c.s.moat.config)
        .unwrap()
        .replace("dual.test", "missing.test");
    let path = c.s.path().join("missing.yaml");
    std::fs::write(&path, missing).unwrap();
    let out = moat_cmd(&["check", "--config", path.to_str().unwrap()]);
    let err = &out.stderr;
    assert_ne!(out.code, Some(0));
    assert!(
        err.contains(&format!(
            "listeners[0].backend[0]: missing.test:{port} resolves to no address"
        )),
        "{err}"
    );
}

#[test]
fn a_reload_that_changes_backend_dns_keeps_every_device_on_its_node() {
    let (c, _, _dns) = three_srv_nodes();
    let devices = c.devices(30);
    let home: Vec<usize> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let id = format!("device-{i}-before");
            assert_eq!(c.connect(d, &id), 0);
            c.node_of(&id)
        })
        .collect();

    // A new interval makes a new link, whose nodes are looked up afresh:
    // the devices that connect right after the reload wait for that
    // answer rather than fail, and land where they did.
    let file = c.s.moat.config.clone();
    let text = std::fs::read_to_string(&file).expect("read moat.yaml");
    assert!(text.contains("interval: 1s"), "{text}");
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text.replace("interval: 1s", "interval: 2s")).expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    let admin = c.s.moat.admin.expect("admin");
    let (code, body) = http_request(admin, "POST", "/reload").expect("POST /reload");
    assert_eq!(code, 200, "{body}");
    for (i, d) in devices.iter().enumerate() {
        let id = format!("device-{i}-after");
        assert_eq!(c.connect(d, &id), 0, "device-{i} after the reload");
        assert_eq!(c.node_of(&id), home[i], "device-{i} moved at the reload");
    }
    assert_eq!(
        c.s.moat.metric("moat_backend_dns_nodes", "name=\"_mqtt"),
        3.0
    );
    // The new link found its three nodes itself.
    let found =
        c.s.moat
            .logs()
            .matches("backend nodes changed in the DNS")
            .count();
    assert_eq!(found, 2, "{}", c.s.moat.logs());
}
