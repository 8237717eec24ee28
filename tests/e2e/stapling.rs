//! OCSP stapling through the real binary, checked with `openssl s_client
//! -status`. Every response comes from `openssl ocsp` (offline with
//! `-respout`, or answering each request from the CA's index), served by a
//! loopback HTTP responder: never from moat's own code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_testkit::*;

struct Setup {
    /// The scene but moat: directory, broker, ports and configuration.
    g: Prepared,
    responder: Responder,
    ca: Arc<OpensslCa>,
    server: CertFiles,
    chain: std::path::PathBuf,
}

/// A CA whose certificates name `responder` as their OCSP responder, a
/// server certificate from it, and the moat configuration that serves it.
fn setup(behaviour: impl FnOnce(&Arc<OpensslCa>, &CertFiles) -> Behaviour) -> Setup {
    let dir = TestDir::new();
    let responder = Responder::start(Behaviour::Close);
    let ca = Arc::new(OpensslCa::with_options(
        dir.path(),
        "ocsp-ca",
        &CaOptions::ocsp(responder.url()),
    ));
    let server = ca.issue_server(dir.path(), "server");
    let served = ca.chain(dir.path(), "chain.pem", &server);
    let chain = served.cert.clone();
    responder.set(behaviour(&ca, &server));
    let cache = dir.join("ocsp-cache");
    let g = Gateway::new()
        .in_dir(dir)
        .cert(served)
        .tls_yaml(&format!("ocsp: {{ cache_dir: {} }}", cache.display()))
        .prepare();
    Setup {
        g,
        responder,
        ca,
        server,
        chain,
    }
}

impl Setup {
    fn start(&self) -> Moat {
        self.g.start_moat()
    }

    /// Starts moat and waits until it staples a good response.
    fn start_stapled(&self) -> Moat {
        let moat = self.start();
        assert!(
            self.wait_staple("good", Duration::from_secs(10)),
            "{}",
            moat.logs()
        );
        moat
    }

    /// What `openssl s_client -status` says about the staple.
    fn staple(&self) -> String {
        let (ok, out) = s_client(
            self.g.port,
            &[
                "-status",
                "-servername",
                "localhost",
                "-CAfile",
                self.ca.cert.to_str().unwrap(),
            ],
            "",
        );
        assert!(ok, "handshake failed: {out}");
        if out.contains("OCSP response: no response sent") {
            return "none".into();
        }
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Cert Status: "))
            .unwrap_or("unparsed")
            .to_string()
    }

    fn wait_staple(&self, want: &str, within: Duration) -> bool {
        wait_until(within, || self.staple() == want)
    }
}

#[test]
fn a_good_response_is_stapled_and_exported() {
    let s = setup(|ca, _| Behaviour::answer(ca.clone(), RespOpts::default()));
    let moat = s.start_stapled();
    let m = moat.metrics();
    let cert = format!("certificate=\"{}\"", s.chain.display());
    assert_eq!(metric_value(&m, "moat_ocsp_staple_present", &cert), 1.0);
    assert_eq!(
        metric_value(
            &m,
            "moat_ocsp_certificate_status",
            &format!("{cert},status=\"good\"")
        ),
        1.0
    );
    assert!(
        metric_value(
            &m,
            "moat_ocsp_refreshes_total",
            &format!("{cert},result=\"success\"")
        ) >= 1.0
    );
    let next = metric_value(
        &m,
        "moat_ocsp_response_next_update_timestamp_seconds",
        &cert,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        next > now + 80_000.0 && next < now + 90_000.0,
        "one day ahead: {next} vs {now}"
    );
    assert!(s.responder.hits() >= 1);
}

#[test]
fn the_cache_staples_the_first_handshake_after_a_restart_with_the_responder_down() {
    let mut s = setup(|ca, _| Behaviour::answer(ca.clone(), RespOpts::default()));
    let mut moat = s.start_stapled();
    moat.signal("TERM");
    assert!(moat.wait_exit(Duration::from_secs(10)).is_some());
    s.responder.stop();
    let hits = s.responder.hits();
    let moat = s.start();
    // The very first handshake, no waiting.
    assert_eq!(s.staple(), "good", "{}", moat.logs());
    assert_eq!(s.responder.hits(), hits, "the responder is down");
}

#[test]
fn a_down_responder_keeps_the_staple_until_it_nears_expiry_then_stapling_stops() {
    // A response valid for one minute.
    let opts = RespOpts {
        next_update: Some(Duration::from_secs(60)),
        ..RespOpts::default()
    };
    let mut s = setup(|ca, _| Behaviour::answer(ca.clone(), opts));
    let moat = s.start_stapled();
    let fetched = Instant::now();
    s.responder.stop();
    // Refreshes fail from the half-way point on, and the staple stays...
    std::thread::sleep(Duration::from_secs(40));
    assert_eq!(s.staple(), "good", "{}", moat.logs());
    // ...until shortly before nextUpdate; an expired response is never sent.
    assert!(
        s.wait_staple("none", Duration::from_secs(30)),
        "{}",
        moat.logs()
    );
    let gone = fetched.elapsed();
    assert!(
        gone > Duration::from_secs(50) && gone < Duration::from_secs(70),
        "{gone:?}"
    );
    assert_eq!(moat.metric("moat_ocsp_staple_present", ""), 0.0);
    assert_eq!(
        moat.metric("moat_ocsp_refreshes_total", "result=\"success\""),
        1.0,
        "nothing newer could be fetched"
    );
}

#[test]
fn a_response_signed_by_the_wrong_key_is_never_stapled() {
    let s = setup(|ca, server| {
        Behaviour::Serve(ca.respond(&server.cert, RespOpts::signer(Signer::Other)))
    });
    let moat = s.start();
    assert!(
        wait_until(Duration::from_secs(10), || moat.metric(
            "moat_ocsp_refreshes_total",
            "result=\"unauthorized_responder\""
        ) >= 1.0),
        "{}",
        moat.metrics()
    );
    assert_eq!(s.staple(), "none");
    assert!(
        moat.logs().contains("unauthorized_responder"),
        "the reason is logged: {}",
        moat.logs()
    );
    assert_eq!(moat.metric("moat_ocsp_staple_present", ""), 0.0);
}

#[test]
fn a_response_for_another_serial_is_never_stapled() {
    let s = setup(|ca, _| {
        let other = ca.issue_server(
            &std::env::temp_dir(),
            &format!("other-{}", std::process::id()),
        );
        Behaviour::Serve(ca.respond(&other.cert, RespOpts::default()))
    });
    let moat = s.start();
    assert!(
        wait_until(Duration::from_secs(10), || moat.metric(
            "moat_ocsp_refreshes_total",
            "result=\"wrong_certificate\""
        ) >= 1.0),
        "{}",
        moat.metrics()
    );
    assert_eq!(s.staple(), "none");
}

#[test]
fn a_revoked_response_is_stapled_and_alarms() {
    let s = setup(|ca, server| {
        ca.revoke(&server.cert);
        Behaviour::answer(ca.clone(), RespOpts::default())
    });
    let moat = s.start();
    assert!(
        s.wait_staple("revoked", Duration::from_secs(10)),
        "{}",
        moat.logs()
    );
    assert_eq!(
        moat.metric("moat_ocsp_certificate_status", "status=\"revoked\""),
        1.0
    );
    assert_eq!(
        moat.metric("moat_ocsp_certificate_status", "status=\"good\""),
        0.0
    );
    assert!(
        moat.logs().contains("ERROR"),
        "revocation is logged at error: {}",
        moat.logs()
    );
}

#[test]
fn a_reloaded_leaf_is_fetched_at_once() {
    let s = setup(|ca, _| Behaviour::answer(ca.clone(), RespOpts::default()));
    let moat = s.start_stapled();
    let hits = s.responder.hits();
    let old_serial = norm_serial(&served_serial(s.g.port, "localhost"));
    let next = s.ca.issue_server(s.g.dir.path(), "server-2");
    let chain = format!(
        "{}{}",
        next.cert_pem,
        std::fs::read_to_string(&s.ca.cert).expect("CA")
    );
    let tmp = s.g.dir.write("chain.pem.new", chain);
    std::fs::copy(&next.key, &s.server.key).expect("key");
    std::fs::rename(tmp, &s.chain).expect("chain into place");
    let new_serial = norm_serial(&next.serial());
    assert_ne!(old_serial, new_serial);
    assert!(
        wait_until(Duration::from_secs(5), || norm_serial(&served_serial(
            s.g.port,
            "localhost"
        )) == new_serial),
        "{}",
        moat.logs()
    );
    // The new leaf gets its own fresh response straight away.
    assert!(s.responder.wait_for_hits(hits + 1, Duration::from_secs(5)));
    assert!(
        s.wait_staple("good", Duration::from_secs(5)),
        "{}",
        moat.logs()
    );
}
