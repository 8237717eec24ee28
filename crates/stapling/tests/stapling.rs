//! End-to-end tests of moat-stapling against real OCSP: a PKI made with the
//! `openssl` CLI and responses made by `openssl ocsp`, served over HTTP on
//! 127.0.0.1 (both from moat-e2e, shared with the end-to-end tests).
//! Nothing here builds an OCSP response itself.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{init, Event, Recorder, TestClock};
use moat_e2e::{
    free_port, Behaviour, CaOptions, CertFiles, KeyAlg, OpensslCa, Profile, RespOpts, Responder,
    Signer,
};
use moat_stapling::{
    cache_path, leaf_facts, verify_response, CertStatus, Responder as Signed, RevocationReason,
    SpawnError, StapleSource, StapleTarget, Stapler, StaplingConfig,
};

const WAIT: Duration = Duration::from_secs(10);
const SKEW: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

/// Short delays so failures and retries happen within milliseconds.
fn fast_config() -> StaplingConfig {
    StaplingConfig {
        jitter_fraction: 0.0,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        recheck_interval: Duration::from_millis(100),
        min_refresh_interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..StaplingConfig::default()
    }
}

/// A CA (RSA, run with `openssl ca`) whose server certificates name
/// `ocsp_url` as their OCSP responder, and its server certificate
/// `server.pem` (in the CA's directory).
fn pki(ocsp_url: &str) -> (Arc<OpensslCa>, CertFiles) {
    let ca = OpensslCa::in_temp_dir(
        "Moat Test CA",
        &CaOptions {
            alg: KeyAlg::Rsa2048,
            ocsp_url: Some(ocsp_url.into()),
            crl_url: None,
        },
    );
    let server = issue(&ca, "server", Profile::Server);
    (Arc::new(ca), server)
}

/// A `CN=localhost` certificate `<stem>.pem` in the CA's directory.
fn issue(ca: &OpensslCa, stem: &str, profile: Profile) -> CertFiles {
    ca.issue(ca.dir(), stem, "/CN=localhost", profile)
}

/// The stapler's target for `leaf`, named `test/<file stem>`.
fn target(ca: &OpensslCa, leaf: &CertFiles) -> StapleTarget {
    let stem = leaf.cert.file_stem().unwrap().to_str().unwrap();
    StapleTarget {
        name: format!("test/{stem}"),
        leaf_der: leaf.der(),
        issuer_der: ca.cert_der(),
    }
}

/// A PKI whose server certificate names a responder that is already
/// listening (answering 503 until told otherwise).
fn pki_with_responder() -> (Arc<OpensslCa>, CertFiles, Responder) {
    let responder = Responder::start(Behaviour::Status(503));
    let (ca, server) = pki(&responder.url());
    (ca, server, responder)
}

fn fetched(status: &'static str) -> Event {
    Event::Changed {
        stapled: true,
        source: Some(StapleSource::Fetched),
        status: Some(status),
    }
}

fn is_dropped(e: &Event) -> bool {
    matches!(e, Event::Changed { stapled: false, .. })
}

/// Writes like an operator should: a temporary file renamed over the old.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn openssl_responses_of_every_shape_verify() {
    init();
    let (ca, server) = pki("http://127.0.0.1:9");
    let leaf = server.der();
    let issuer = ca.cert_der();
    let now = SystemTime::now();
    let cases = [
        ("delegated, SHA-1 CertID, by name", RespOpts::default()),
        (
            "delegated, by key",
            RespOpts {
                by_key: true,
                ..RespOpts::default()
            },
        ),
        (
            "delegated, SHA-256 CertID",
            RespOpts {
                sha256: true,
                ..RespOpts::default()
            },
        ),
        ("the CA itself (RSA), by name", RespOpts::signer(Signer::Ca)),
        (
            "the CA itself, by key",
            RespOpts {
                by_key: true,
                ..RespOpts::signer(Signer::Ca)
            },
        ),
    ];
    for (what, opts) in cases {
        let der = ca.respond(&server.cert, opts);
        let staple = verify_response(&der, &leaf, &issuer, now, SKEW)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", ca.describe(&der)));
        assert_eq!(staple.cert_status(), &CertStatus::Good, "{what}");
        assert_eq!(staple.der(), &der[..]);
        assert_eq!(staple.validity(), Duration::from_secs(86_400), "{what}");
        let age = now.duration_since(staple.this_update()).unwrap_or_default();
        assert!(
            age < Duration::from_secs(120),
            "{what}: thisUpdate {age:?} ago"
        );
        let expected = if opts.signer == Signer::Ca {
            Signed::Issuer
        } else {
            Signed::Delegated {
                subject: "CN=Moat OCSP Responder".into(),
            }
        };
        assert_eq!(staple.responder(), &expected, "{what}");
    }
}

#[test]
fn wrong_responses_are_refused_with_stable_reasons() {
    init();
    let (ca, server) = pki("http://127.0.0.1:9");
    let server2 = issue(&ca, "server2", Profile::Server);
    let stranger = ca.issue_unrecorded(ca.dir(), "stranger");
    let leaf = server.der();
    let issuer = ca.cert_der();
    let now = SystemTime::now();
    let good = ca.respond(&server.cert, RespOpts::default());

    // producedAt is the first GeneralizedTime: change its seconds digit, a
    // valid time that the signature no longer covers.
    let mut tampered = good.clone();
    let at = tampered
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("producedAt");
    tampered[at + 2 + 13] = if tampered[at + 2 + 13] == b'0' {
        b'1'
    } else {
        b'0'
    };

    let check = |what: &str, der: &[u8], issuer: &[u8], now: SystemTime, reason: &str| {
        let err = verify_response(der, &leaf, issuer, now, SKEW)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted\n{}", ca.describe(der)));
        assert_eq!(err.reason(), reason, "{what}: {err}");
        assert!(!err.to_string().is_empty());
    };
    check(
        "signed by an impostor CA with our CA's name",
        &ca.respond(&server.cert, RespOpts::signer(Signer::Impostor)),
        &issuer,
        now,
        "bad_signature",
    );
    check(
        "tampered producedAt",
        &tampered,
        &issuer,
        now,
        "bad_signature",
    );
    check(
        "signed by an unrelated CA",
        &ca.respond(&server.cert, RespOpts::signer(Signer::Other)),
        &issuer,
        now,
        "unauthorized_responder",
    );
    check(
        "signed by a certificate of our CA without OCSPSigning",
        &ca.respond(&server.cert, RespOpts::signer(Signer::NoEku)),
        &issuer,
        now,
        "unauthorized_responder",
    );
    check(
        "about another certificate",
        &ca.respond(&server2.cert, RespOpts::default()),
        &issuer,
        now,
        "wrong_certificate",
    );
    check(
        "checked against another issuer",
        &good,
        &ca.signer(Signer::Other).der(),
        now,
        "issuer_mismatch",
    );
    check("two days later", &good, &issuer, now + 48 * HOUR, "expired");
    // (Signed by the CA: a delegated responder issued minutes ago would
    // itself not be valid a day earlier.)
    check(
        "a day earlier",
        &ca.respond(&server.cert, RespOpts::signer(Signer::Ca)),
        &issuer,
        now - 24 * HOUR,
        "not_yet_valid",
    );
    check(
        "a day earlier, from a delegated responder not valid then",
        &good,
        &issuer,
        now - 24 * HOUR,
        "unauthorized_responder",
    );
    check(
        "truncated",
        &good[..good.len() - 10],
        &issuer,
        now,
        "malformed",
    );
    check("empty", b"", &issuer, now, "malformed");

    // "unknown" is a valid answer; the stapler is what refuses to staple it.
    let unknown = ca.respond(&stranger.cert, RespOpts::default());
    let stranger = stranger.der();
    let staple = verify_response(&unknown, &stranger, &issuer, now, SKEW).unwrap();
    assert_eq!(staple.cert_status(), &CertStatus::Unknown);
}

#[tokio::test]
async fn good_response_is_fetched_verified_and_stapled() {
    init();
    let (ca, server, responder) = pki_with_responder();
    let good = ca.respond(&server.cert, RespOpts::default());
    responder.set(Behaviour::Serve(good.clone()));
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), fast_config(), rec.clone()).unwrap();

    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    let staple = handle.current().expect("stapled");
    // ocsp-stapler re-encodes the response; the bytes survive unchanged.
    assert_eq!(staple.der(), &good[..]);
    assert_eq!(staple.cert_status(), &CertStatus::Good);
    assert_eq!(rec.count(&Event::Refresh(Ok(()))), 1);
    assert_eq!(responder.hits(), 1);

    let status = handle.status();
    assert_eq!(status.name, "test/server");
    assert_eq!(status.source, Some(StapleSource::Fetched));
    assert!(!status.must_staple && !status.must_staple_unmet());
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(
        status.serve_until,
        Some(staple.next_update() - Duration::from_secs(60))
    );
    // Refresh halfway through the validity (no jitter in this config).
    let next = status.next_refresh.unwrap();
    let halfway = staple.this_update() + 12 * HOUR;
    let off = next
        .duration_since(halfway)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(1), "next refresh off by {off:?}");
    assert!(status.last_refresh.as_ref().unwrap().result.is_ok());

    // A reader outlives nothing: it sees what the handle sees.
    let reader = handle.reader();
    assert_eq!(reader.current().unwrap().der(), &good[..]);
    handle.stop().await;
}

#[tokio::test]
async fn refused_responses_are_never_stapled_and_retried_with_backoff() {
    init();
    let (ca, server, responder) = pki_with_responder();
    responder.set(Behaviour::Serve(
        ca.respond(&server.cert, RespOpts::signer(Signer::Impostor)),
    ));
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), fast_config(), rec.clone()).unwrap();

    rec.wait_for("three refusals", WAIT, |e| {
        e.iter()
            .filter(|e| **e == Event::Refresh(Err("bad_signature")))
            .count()
            >= 3
    })
    .await;
    assert!(handle.current().is_none());
    assert!(!rec
        .events()
        .iter()
        .any(|e| matches!(e, Event::Changed { .. })));
    assert!(handle.status().consecutive_failures >= 3);

    // Another refusal reason, then the responder is fixed: it recovers.
    responder.set(Behaviour::Serve(
        ca.respond(&server.cert, RespOpts::signer(Signer::NoEku)),
    ));
    rec.wait_for("unauthorized_responder", WAIT, |e| {
        e.contains(&Event::Refresh(Err("unauthorized_responder")))
    })
    .await;
    assert!(handle.current().is_none());
    let good = ca.respond(&server.cert, RespOpts::default());
    responder.set(Behaviour::Serve(good.clone()));
    rec.wait_for("recovery", WAIT, |e| e.contains(&fetched("good")))
        .await;
    assert_eq!(handle.current().unwrap().der(), &good[..]);
    assert_eq!(handle.status().consecutive_failures, 0);
}

#[tokio::test]
async fn revoked_response_is_stapled_and_reported() {
    init();
    let (ca, server, responder) = pki_with_responder();
    ca.revoke(&server.cert);
    responder.set(Behaviour::Serve(
        ca.respond(&server.cert, RespOpts::default()),
    ));
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), fast_config(), rec.clone()).unwrap();

    rec.wait_for("a revoked staple", WAIT, |e| {
        e.contains(&fetched("revoked"))
    })
    .await;
    let staple = handle.current().expect("revoked responses are stapled");
    match staple.cert_status() {
        CertStatus::Revoked {
            reason,
            revocation_time,
        } => {
            assert_eq!(*reason, Some(RevocationReason::KeyCompromise));
            assert!(*revocation_time <= SystemTime::now());
        }
        other => panic!("expected revoked, got {other:?}"),
    }
    let status = handle.status();
    assert_eq!(
        status.staple.as_ref().unwrap().cert_status().label(),
        "revoked"
    );
}

#[tokio::test]
async fn unknown_status_is_not_stapled() {
    init();
    let (ca, _server, responder) = pki_with_responder();
    let stranger = ca.issue_unrecorded(ca.dir(), "stranger");
    responder.set(Behaviour::Serve(
        ca.respond(&stranger.cert, RespOpts::default()),
    ));
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &stranger), fast_config(), rec.clone()).unwrap();
    rec.wait_for("unknown_status", WAIT, |e| {
        e.contains(&Event::Refresh(Err("unknown_status")))
    })
    .await;
    assert!(handle.current().is_none());
}

#[tokio::test]
async fn responder_outage_keeps_the_staple_until_it_nears_expiry() {
    init();
    let (ca, server, mut responder) = pki_with_responder();
    responder.set(Behaviour::Serve(
        ca.respond(&server.cert, RespOpts::default()),
    ));
    let clock = Arc::new(TestClock::default());
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn_with_clock(
        target(&ca, &server),
        fast_config(),
        rec.clone(),
        clock.clone(),
    )
    .unwrap();
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    let staple = handle.current().unwrap();

    responder.stop();
    // Past the refresh point: queries fail, the staple stays.
    clock.set(staple.this_update() + 13 * HOUR);
    rec.wait_for("three failed refreshes", WAIT, |e| {
        e.iter()
            .filter(|e| **e == Event::Refresh(Err("fetch_failed")))
            .count()
            >= 3
    })
    .await;
    assert_eq!(handle.current().unwrap().der(), staple.der());
    let status = handle.status();
    assert!(status.consecutive_failures >= 3);
    assert!(status.next_refresh.unwrap() <= status.serve_until.unwrap());

    // Later, still within its life: still stapled.
    clock.set(staple.next_update() - 2 * Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(handle.current().is_some());
    assert!(!rec.events().iter().any(is_dropped));

    // Inside the last minute: never stapled again, even before the task
    // notices; then the task drops it and says so.
    clock.set(staple.next_update() - Duration::from_secs(30));
    assert!(handle.current().is_none());
    rec.wait_for("the staple dropped", WAIT, |e| e.iter().any(is_dropped))
        .await;
    assert!(handle.status().staple.is_none());
    // And past nextUpdate, still nothing.
    clock.set(staple.next_update() + HOUR);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(handle.current().is_none());
}

#[tokio::test]
async fn disk_cache_staples_at_once_after_a_restart_while_the_responder_is_down() {
    init();
    let (ca, server, mut responder) = pki_with_responder();
    let good = ca.respond(&server.cert, RespOpts::default());
    responder.set(Behaviour::Serve(good.clone()));
    let cache = tempfile::tempdir().unwrap();
    let config = StaplingConfig {
        cache_dir: Some(cache.path().join("ocsp")),
        ..fast_config()
    };
    let leaf = server.der();
    let file = cache_path(&cache.path().join("ocsp"), &leaf);

    let rec = Arc::new(Recorder::default());
    let first = Stapler::spawn(target(&ca, &server), config.clone(), rec.clone()).unwrap();
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    common::wait_until("the cache file", WAIT, || {
        std::fs::read(&file).ok().as_deref() == Some(&good[..])
    })
    .await;
    first.stop().await;
    let after_stop = rec.events().len();

    // "Restart" with the responder down.
    responder.stop();
    let rec2 = Arc::new(Recorder::default());
    let started = std::time::Instant::now();
    let second = Stapler::spawn(target(&ca, &server), config, rec2.clone()).unwrap();
    rec2.wait_for("the cached staple", WAIT, |e| {
        e.contains(&Event::Changed {
            stapled: true,
            source: Some(StapleSource::Cache),
            status: Some("good"),
        })
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(second.current().unwrap().der(), &good[..]);
    assert_eq!(second.status().source, Some(StapleSource::Cache));
    // Not due yet: no query at start-up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rec2.events().iter().any(|e| matches!(e, Event::Refresh(_))));
    // The stopped stapler said nothing more.
    assert_eq!(rec.events().len(), after_stop);
}

#[tokio::test]
async fn cache_write_failure_does_not_stop_stapling() {
    init();
    let (ca, server, responder) = pki_with_responder();
    responder.set(Behaviour::Serve(
        ca.respond(&server.cert, RespOpts::default()),
    ));
    let dir = tempfile::tempdir().unwrap();
    // A file where the cache directory should be: every write fails.
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let config = StaplingConfig {
        cache_dir: Some(not_a_dir),
        ..fast_config()
    };
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), config, rec.clone()).unwrap();
    rec.wait_for("the write failure", WAIT, |e| {
        e.contains(&Event::CacheWriteFailed)
    })
    .await;
    assert!(rec.events().contains(&fetched("good")));
    assert!(handle.current().is_some());
}

#[tokio::test]
async fn a_new_leaf_is_fetched_at_once() {
    init();
    let (ca, server, responder) = pki_with_responder();
    // A real responder: openssl answers each request from index.txt.
    responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));
    let cache = tempfile::tempdir().unwrap();
    let config = StaplingConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..fast_config()
    };
    let rec = Arc::new(Recorder::default());
    let old = Stapler::spawn(target(&ca, &server), config.clone(), rec.clone()).unwrap();
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    let hits = responder.hits();

    // Certificate reload: a new leaf from the same CA.
    let renewed = issue(&ca, "renewed", Profile::Server);
    let new_leaf = renewed.der();
    let issuer = ca.cert_der();
    assert!(old.serves(&server.der(), &issuer));
    assert!(!old.serves(&new_leaf, &issuer));
    old.stop().await;
    let rec2 = Arc::new(Recorder::default());
    let started = std::time::Instant::now();
    let new = Stapler::spawn(target(&ca, &renewed), config, rec2.clone()).unwrap();
    rec2.wait_for("the new leaf's staple", WAIT, |e| {
        e.contains(&fetched("good"))
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(responder.hits(), hits + 1);
    // It is about the new leaf, not the old one (whose cache was not used).
    let staple = new.current().unwrap();
    let now = SystemTime::now();
    verify_response(staple.der(), &new_leaf, &issuer, now, SKEW).unwrap();
    let err = verify_response(staple.der(), &server.der(), &issuer, now, SKEW).unwrap_err();
    assert_eq!(err.reason(), "wrong_certificate");
    assert!(!rec2.events().iter().any(|e| matches!(
        e,
        Event::Changed {
            source: Some(StapleSource::Cache),
            ..
        }
    )));
}

#[tokio::test]
async fn responder_url_override_is_queried_instead_of_the_aia_url() {
    init();
    // The certificate names a responder where nothing listens.
    let (ca, server) = pki(&format!("http://127.0.0.1:{}", free_port()));
    let responder = Responder::start(Behaviour::answer(ca.clone(), RespOpts::signer(Signer::Ca)));
    let config = StaplingConfig {
        responder_url: Some(format!("{}/ocsp", responder.url())),
        ..fast_config()
    };
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), config, rec.clone()).unwrap();
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    assert_eq!(responder.hits(), 1);
    assert!(responder.paths()[0].starts_with("/ocsp/"));
    // openssl understood the request this crate built (it answered "good"
    // for our serial rather than refusing it).
    assert!(!responder.requests()[0].is_empty());
    assert_eq!(handle.current().unwrap().responder(), &Signed::Issuer);
}

#[tokio::test]
async fn an_aia_url_with_a_path_is_queried_at_that_path() {
    init();
    // Like http://ocsp.example.com/ca1: a plain URL join would drop "ca1".
    let responder = Responder::start(Behaviour::Status(503));
    let (ca, server) = pki(&format!("{}/ca1", responder.url()));
    responder.set(Behaviour::answer(ca.clone(), RespOpts::default()));
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), fast_config(), rec.clone()).unwrap();
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    let paths = responder.paths();
    assert!(paths[0].starts_with("/ca1/"), "{paths:?}");
    assert!(handle.current().is_some());
}

#[tokio::test]
async fn static_file_is_verified_watched_and_never_served_expired() {
    init();
    let (ca, server, responder) = pki_with_responder();
    let server2 = issue(&ca, "server2", Profile::Server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.ocsp");
    let first = ca.respond(&server.cert, RespOpts::default());
    replace_file(&file, &first);
    let config = StaplingConfig {
        static_file: Some(file.clone()),
        // Only the directory watch can notice changes quickly.
        recheck_interval: Duration::from_secs(60),
        ..fast_config()
    };
    let clock = Arc::new(TestClock::default());
    let rec = Arc::new(Recorder::default());
    let handle =
        Stapler::spawn_with_clock(target(&ca, &server), config, rec.clone(), clock.clone())
            .unwrap();
    let from_file = Event::Changed {
        stapled: true,
        source: Some(StapleSource::StaticFile),
        status: Some("good"),
    };
    rec.wait_for("the file's staple", WAIT, |e| e.contains(&from_file))
        .await;
    assert_eq!(handle.current().unwrap().der(), &first[..]);
    assert_eq!(handle.status().next_refresh, None);

    // A response about another certificate is refused; the good one stays.
    replace_file(&file, &ca.respond(&server2.cert, RespOpts::default()));
    rec.wait_for("the refusal", WAIT, |e| {
        e.contains(&Event::Refresh(Err("wrong_certificate")))
    })
    .await;
    assert_eq!(handle.current().unwrap().der(), &first[..]);

    // A fresh good file replaces it.
    let second = ca.respond(&server.cert, RespOpts::signer(Signer::Ca));
    replace_file(&file, &second);
    common::wait_until("the new file's staple", WAIT, || {
        handle.current().map(|s| s.der().to_vec()) == Some(second.clone())
    })
    .await;

    // The file disappears: reported, the staple is kept.
    std::fs::remove_file(&file).unwrap();
    rec.wait_for("the read error", WAIT, |e| {
        e.contains(&Event::Refresh(Err("file_error")))
    })
    .await;
    let staple = handle.current().unwrap();
    assert_eq!(staple.der(), &second[..]);

    // Its end comes: it is never served past it.
    clock.set(staple.next_update() - Duration::from_secs(10));
    assert!(handle.current().is_none());
    handle.refresh_now();
    rec.wait_for("the staple dropped", WAIT, |e| e.iter().any(is_dropped))
        .await;
    // Static mode never queries the responder.
    assert_eq!(responder.hits(), 0);
}

#[tokio::test]
async fn must_staple_without_a_staple_is_reported() {
    init();
    let (ca, server, responder) = pki_with_responder();
    let strict = issue(&ca, "strict", Profile::MustStaple);
    let facts = leaf_facts(&strict.der()).unwrap();
    assert!(facts.must_staple);
    assert_eq!(
        facts.responder_url.as_deref(),
        Some(responder.url().as_str())
    );
    assert!(!leaf_facts(&server.der()).unwrap().must_staple);

    responder.set(Behaviour::Status(500));
    let clock = Arc::new(TestClock::default());
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn_with_clock(
        target(&ca, &strict),
        fast_config(),
        rec.clone(),
        clock.clone(),
    )
    .unwrap();
    rec.wait_for("three failures", WAIT, |e| {
        e.iter()
            .filter(|e| **e == Event::Refresh(Err("http_status")))
            .count()
            >= 3
    })
    .await;
    // Reported once, not at every failure.
    assert_eq!(rec.count(&Event::MustStapleUnmet), 1);
    assert!(handle.status().must_staple_unmet());

    responder.set(Behaviour::Serve(
        ca.respond(&strict.cert, RespOpts::default()),
    ));
    rec.wait_for("a staple", WAIT, |e| e.contains(&fetched("good")))
        .await;
    assert!(!handle.status().must_staple_unmet());

    // Losing it reports again.
    responder.set(Behaviour::Status(500));
    let staple = handle.current().unwrap();
    clock.set(staple.next_update());
    rec.wait_for("a second report", WAIT, |e| {
        e.iter().filter(|e| **e == Event::MustStapleUnmet).count() == 2
    })
    .await;
    assert!(handle.status().must_staple_unmet());
}

#[tokio::test]
async fn spawn_refuses_what_cannot_work() {
    init();
    let (ca, server) = pki("http://127.0.0.1:9");
    let plain = issue(&ca, "plain", Profile::ServerNoAia);
    let observer = Arc::new(Recorder::default());

    // No AIA and nothing configured: nothing to staple.
    let err = Stapler::spawn(target(&ca, &plain), fast_config(), observer.clone()).unwrap_err();
    assert!(matches!(err, SpawnError::NoResponderUrl), "{err}");
    // With an override it can start.
    let config = StaplingConfig {
        responder_url: Some("http://127.0.0.1:9/".into()),
        ..fast_config()
    };
    drop(Stapler::spawn(target(&ca, &plain), config, observer.clone()).unwrap());

    // The wrong issuer.
    let wrong = StapleTarget {
        issuer_der: ca.signer(Signer::Other).der(),
        ..target(&ca, &server)
    };
    let err = Stapler::spawn(wrong, fast_config(), observer.clone()).unwrap_err();
    match err {
        SpawnError::Certificate(e) => assert_eq!(e.reason(), "issuer_mismatch"),
        other => panic!("{other}"),
    }

    // An invalid configuration lists its problems.
    let config = StaplingConfig {
        refresh_fraction: 2.0,
        static_file: Some("/x".into()),
        responder_url: Some("http://x/".into()),
        ..fast_config()
    };
    let err = Stapler::spawn(target(&ca, &server), config, observer).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("refresh_fraction") && text.contains("static_file"),
        "{text}"
    );
}

#[tokio::test]
async fn a_silent_responder_times_out() {
    init();
    let (ca, server, responder) = pki_with_responder();
    responder.set(Behaviour::Hang(Duration::from_secs(2)));
    let config = StaplingConfig {
        request_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let rec = Arc::new(Recorder::default());
    let handle = Stapler::spawn(target(&ca, &server), config, rec.clone()).unwrap();
    rec.wait_for("a timeout", WAIT, |e| {
        e.contains(&Event::Refresh(Err("timeout")))
    })
    .await;
    assert!(handle.current().is_none());
    let last = handle.status().last_refresh.clone().unwrap();
    assert_eq!(last.result.unwrap_err().reason(), "timeout");
}
