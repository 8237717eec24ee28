//! OCSP checks of device certificates (`tls.client_auth.ocsp`) through the
//! real binary: real `mosquitto_pub`/`mosquitto_sub` devices whose
//! certificates name a loopback OCSP responder, and every answer made by
//! `openssl ocsp` from the device CA's `index.txt` (good, revoked), or no
//! answer at all (the responder stopped, or failing).

use std::sync::Arc;
use std::time::Duration;

use moat_testkit::*;

/// Two listeners in front of one broker, checking devices with the same
/// responder: `mqtts` (the first, on `port`) and `other` (on `ports[0]`),
/// each with its own `ocsp` mode.
struct Scene {
    g: Running,
    responder: Responder,
    ca: Arc<OpensslCa>,
}

fn client_auth(ca: &OpensslCa, mode: &str) -> String {
    format!(
        "client_auth:\n  mode: required\n  ca: {}\n  ocsp: {mode}\n  ocsp_timeout: 2s\n",
        ca.cert.display()
    )
}

/// A device CA whose certificates name a loopback responder, answering
/// from its `index.txt` with `opts`.
fn devices_ca(dir: &TestDir, opts: RespOpts) -> (Responder, Arc<OpensslCa>) {
    let responder = Responder::start(Behaviour::Close);
    let ca = Arc::new(OpensslCa::with_options(
        dir.path(),
        "devices-ca",
        &CaOptions::ocsp(responder.url()),
    ));
    responder.set(Behaviour::answer(ca.clone(), opts));
    (responder, ca)
}

fn scene(first: &str, second: &str, listener_yaml: &str) -> Scene {
    let dir = TestDir::new();
    let (responder, ca) = devices_ca(&dir, RespOpts::default());
    let g = Gateway::new()
        .in_dir(dir)
        .tls_yaml(&client_auth(&ca, first))
        .listener_yaml(listener_yaml)
        .also_listener_with_its_cert("other", &client_auth(&ca, second))
        .start();
    Scene { g, responder, ca }
}

impl Scene {
    /// A device certificate naming the responder.
    fn device(&self, name: &str) -> CertFiles {
        self.ca.issue(
            self.g.path(),
            name,
            &format!("/CN={name}"),
            Profile::ClientOcsp,
        )
    }

    /// Publishes as `device` on `port`; whether the broker took it.
    fn publish(&self, device: &CertFiles, port: u16) -> bool {
        let tls = self.g.device_tls(device);
        mosquitto_pub("localhost", port, Some(&tls), "t", "hi")
            .status
            .success()
    }

    fn metric(&self, name: &str, labels: &str) -> f64 {
        self.g.moat.metric(name, labels)
    }

    /// Connections the broker has seen so far.
    fn broker_connections(&self) -> usize {
        self.g
            .broker()
            .logs()
            .matches("New connection from")
            .count()
    }
}

#[test]
fn a_good_device_round_trips_and_its_answer_is_cached() {
    let s = scene("require", "prefer", "");
    let device = s.device("device-good");
    let sub = s.g.hold(&device, "sub-good");
    s.g.until_all_receive(&device, &[&sub], "hello-good");
    assert!(
        s.metric(
            "moat_client_ocsp_checks_total",
            "listener=\"mqtts\",result=\"good\""
        ) >= 2.0
    );
    // One query: the subscriber's; the publishes used the cached answer.
    assert_eq!(
        s.metric(
            "moat_client_ocsp_queries_total",
            "listener=\"mqtts\",result=\"good\""
        ),
        1.0
    );
    assert_eq!(s.responder.hits(), 1, "{:?}", s.responder.paths());
    assert_eq!(
        s.metric("moat_client_ocsp_cache_entries", "listener=\"mqtts\""),
        1.0
    );
    // `moat check` reports each listener's setting.
    let out = moat_check(s.g.path(), "check.yaml", &s.g.yaml);
    assert_eq!(out.code, Some(0), "{out:?}");
    for needle in [
        "client OCSP: require (timeout 2s; devices without a verified answer are refused)",
        "client OCSP: prefer (timeout 2s; devices without a verified answer are admitted)",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
}

#[test]
fn a_revoked_device_is_refused_before_the_broker_hears_of_it() {
    // MQTT-aware: the CONNECT must not have been forwarded either.
    let s = scene("prefer", "prefer", "mqtt:\n  connect_timeout: 5s\n");
    let good = s.device("device-fine");
    assert!(s.publish(&good, s.g.port), "{}", s.g.moat.logs());
    let seen = s.broker_connections();
    assert!(
        seen >= 1,
        "the broker logs no connections: {}",
        s.g.broker().logs()
    );

    let revoked = s.device("device-stolen");
    s.ca.revoke(&revoked.cert);
    assert!(
        !s.publish(&revoked, s.g.port),
        "a revoked device got through"
    );
    let line =
        s.g.moat
            .log_line("refused by its OCSP check", Duration::from_secs(5));
    assert!(line.contains("CN=device-stolen"), "{line}");
    assert!(line.contains("ocsp_revoked"), "{line}");
    assert!(line.contains("client.sha256"), "{line}");
    assert_eq!(
        s.g.moat.metric_reaching(
            "moat_client_auth_denied_total",
            "listener=\"mqtts\",reason=\"ocsp_revoked\"",
            1.0
        ),
        1.0
    );
    assert_eq!(
        s.metric(
            "moat_client_ocsp_checks_total",
            "listener=\"mqtts\",result=\"revoked\""
        ),
        1.0
    );
    assert_eq!(s.broker_connections(), seen, "{}", s.g.broker().logs());
}

#[test]
fn a_responder_down_fails_open_under_prefer_and_closed_under_require() {
    let mut s = scene("require", "prefer", "");
    let device = s.device("device-offline");
    s.responder.stop();
    assert!(
        !s.publish(&device, s.g.port),
        "require let a device in without an answer"
    );
    assert!(
        s.publish(&device, s.g.ports[0]),
        "prefer refused a device whose responder is down: {}",
        s.g.moat.logs()
    );
    assert_eq!(
        s.g.moat.metric_reaching(
            "moat_client_auth_denied_total",
            "listener=\"mqtts\",reason=\"ocsp_unverified\"",
            1.0
        ),
        1.0
    );
    assert_eq!(
        s.metric(
            "moat_client_auth_denied_total",
            "listener=\"other\",reason=\"ocsp_unverified\""
        ),
        0.0
    );
    for listener in ["mqtts", "other"] {
        assert!(
            s.metric(
                "moat_client_ocsp_checks_total",
                &format!("listener=\"{listener}\",result=\"responder_error\"")
            ) >= 1.0,
            "{listener}"
        );
    }
    let line = s.g.moat.log_line(
        "admitted without a verified OCSP answer",
        Duration::from_secs(5),
    );
    assert!(line.contains("CN=device-offline"), "{line}");

    // Back up: the brief negative cache expires and require admits.
    s.responder.restart();
    assert!(
        wait_until(Duration::from_secs(15), || s.publish(&device, s.g.port)),
        "require still refuses once the responder answers: {}",
        s.g.moat.logs()
    );
}

#[test]
fn a_device_naming_no_responder_is_refused_under_require_only() {
    let s = scene("require", "prefer", "");
    let device =
        s.ca.issue(s.g.path(), "no-aia", "/CN=no-aia", Profile::Client);
    assert!(!s.publish(&device, s.g.port));
    assert!(s.publish(&device, s.g.ports[0]), "{}", s.g.moat.logs());
    let line =
        s.g.moat
            .log_line("refused by its OCSP check", Duration::from_secs(5));
    assert!(
        line.contains("CN=no-aia") && line.contains("no AIA OCSP URL"),
        "{line}"
    );
    assert!(
        s.metric(
            "moat_client_ocsp_checks_total",
            "listener=\"mqtts\",result=\"no_responder\""
        ) >= 1.0
    );
    assert_eq!(s.responder.hits(), 0);
}

/// Devices sharing one certificate connect at once: how many got through,
/// and how long the burst took.
fn burst(s: &Scene, device: &CertFiles, port: u16, n: usize) -> (usize, Duration) {
    let started = std::time::Instant::now();
    let ok = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| s.publish(device, port)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("publisher thread"))
            .filter(|ok| *ok)
            .count()
    });
    (ok, started.elapsed())
}

#[test]
fn a_reconnect_storm_makes_one_query_even_with_the_responder_failing() {
    let s = scene("require", "prefer", "");
    let n = 12;
    let device = s.device("device-storm");
    assert_eq!(burst(&s, &device, s.g.port, n).0, n, "{}", s.g.moat.logs());
    assert_eq!(s.responder.hits(), 1, "{:?}", s.responder.paths());
    assert!(
        s.metric(
            "moat_client_ocsp_checks_total",
            "listener=\"mqtts\",result=\"good\""
        ) >= n as f64
    );

    // A failing responder: the failure is remembered for 5 s, so the
    // storm costs one request per 5 s it lasts, not one per device.
    s.responder.set(Behaviour::Status(503));
    let other = s.device("device-storm-2");
    let (ok, took) = burst(&s, &other, s.g.ports[0], n);
    assert_eq!(ok, n, "prefer refused devices: {}", s.g.moat.logs());
    let bound = 1 + took.as_secs() as usize / 5;
    let failing = s.responder.hits() - 1;
    assert!(
        (1..=bound).contains(&failing),
        "{failing} requests for {n} devices in {took:?}: {:?}",
        s.responder.paths()
    );
    assert_eq!(
        s.metric(
            "moat_client_ocsp_queries_total",
            "listener=\"other\",result=\"error\""
        ),
        failing as f64
    );
}

#[test]
fn a_device_revoked_while_connected_is_closed_by_the_next_recheck_alone() {
    let dir = TestDir::new();
    // The shortest nextUpdate openssl gives (a minute): moat keeps each
    // answer until then, so the first round after it asks again.
    let fresh = RespOpts {
        next_update: Some(Duration::from_secs(60)),
        ..RespOpts::default()
    };
    let (responder, ca) = devices_ca(&dir, fresh);
    let g = Gateway::new()
        .in_dir(dir)
        .tls_yaml(&format!(
            "{}  revocation_recheck: 1s\n",
            client_auth(&ca, "prefer")
        ))
        .start();
    let s = Scene { g, responder, ca };
    let (good, stolen, publisher) = (
        s.device("device-good"),
        s.device("device-stolen"),
        s.device("device-pub"),
    );
    // Held longer than the answers live (the kit's hold is 60 s).
    let hold = |device: &CertFiles, name: &str| {
        let tls = s.g.device_tls(device);
        Sub::spawn(s.g.path(), name, s.g.port, Some(&tls), "t", 1000, 150)
    };
    let mut good_sub = hold(&good, "sub-good");
    let mut stolen_sub = hold(&stolen, "sub-stolen");
    s.g.until_all_receive(&publisher, &[&good_sub, &stolen_sub], "before");
    // Revoked at the CA only: no reload, no new connection of its own.
    s.ca.revoke(&stolen.cert);
    let closed = s.g.moat.metric_reaching_within(
        "moat_connections_closed_total",
        "reason=\"revoked\"",
        1.0,
        Duration::from_secs(90),
    );
    assert_eq!(closed, 1.0, "{}", s.g.moat.logs());
    let logs = s.g.moat.logs();
    assert!(
        logs.contains("closing live sessions whose device certificate is now revoked"),
        "{logs}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("session closed by moat"))
        .expect("the close line");
    assert!(line.contains("CN=device-stolen"), "{line}");
    assert!(
        s.metric("moat_sessions_rechecked_total", "listener=\"mqtts\"") >= 2.0,
        "both held sessions were checked again"
    );
    // The good device stays on and keeps receiving; the stolen one's
    // retries are refused at connect.
    assert!(s.g.publish_as(&publisher, "t", "after"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(good_sub.output().contains("after"), "{}", good_sub.output());
    assert_eq!(good_sub.try_exit(), None, "the good device was closed");
    assert!(
        !stolen_sub.output().contains("after"),
        "{}",
        stolen_sub.output()
    );
    let _ = stolen_sub.try_exit();
    let out = moat_check(s.g.path(), "check.yaml", &s.g.yaml);
    assert!(
        out.stdout
            .contains("live sessions re-checked for revocation every 1s"),
        "{}",
        out.stdout
    );
}

#[test]
fn answers_kept_on_disk_let_a_restarted_moat_admit_without_its_responder() {
    let dir = TestDir::new();
    let (mut responder, ca) = devices_ca(&dir, RespOpts::default());
    let cache = dir.path().join("device-ocsp");
    let g = Gateway::new()
        .in_dir(dir)
        .tls_yaml(&format!(
            "{}  ocsp_cache_dir: {}\n",
            client_auth(&ca, "require"),
            cache.display()
        ))
        .prepare();
    let device = ca.issue(
        g.path(),
        "device-kept",
        "/CN=device-kept",
        Profile::ClientOcsp,
    );
    let tls = Tls::ca(&g.ca().cert).with_client(&device.cert, &device.key);
    let publish = || {
        mosquitto_pub("localhost", g.port, Some(&tls), "t", "hi")
            .status
            .success()
    };
    {
        let moat = g.start_moat();
        assert!(publish(), "{}", moat.logs());
        assert_eq!(responder.hits(), 1);
        // The answer is written after it is handed out: wait for the file.
        let kept = wait_until(Duration::from_secs(5), || {
            std::fs::read_dir(&cache).is_ok_and(|d| d.count() == 1)
        });
        assert!(kept, "no answer kept in {}", cache.display());
    }
    // The responder is down for the restart; `require` would refuse every
    // device without the kept answer.
    responder.stop();
    let moat = g.start_moat();
    assert!(publish(), "{}", moat.logs());
    let queries: f64 = ["good", "revoked", "unknown", "error"]
        .iter()
        .map(|r| {
            moat.metric(
                "moat_client_ocsp_queries_total",
                &format!("listener=\"mqtts\",result=\"{r}\""),
            )
        })
        .sum();
    assert_eq!(queries, 0.0, "the kept answer was used, no query sent");
    let out = moat_check(g.path(), "check.yaml", &g.yaml);
    let line = format!("client OCSP answers also kept in {}", cache.display());
    assert!(out.stdout.contains(&line), "{}", out.stdout);
    assert_eq!(
        moat.metric(
            "moat_client_ocsp_checks_total",
            "listener=\"mqtts\",result=\"good\""
        ),
        1.0
    );
}
