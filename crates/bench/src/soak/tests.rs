//! Unit tests of the soak's parts.

use std::time::Duration;

use crate::soak::args::*;
use crate::soak::metrics::*;
use crate::soak::plan::*;
use crate::soak::protocol::*;
use crate::soak::roles::subscriber::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert!(parse_duration("ten").is_err());
    assert!(parse_duration("5d").is_err());
}

/// Run with the e2e package in the build (`cargo test --workspace`),
/// this also proves the pipe formats survive `arbitrary_precision`.
#[test]
fn worker_messages_round_trip() {
    let spec = WorkerSpec::Devices(DeviceSpec {
        targets: vec!["127.0.0.1:8883".parse().unwrap()],
        ca: "ca.pem".into(),
        first: 2500,
        count: 2500,
        groups: 4,
        interval_s: 30.5,
        keep_alive: 61,
        ramp_concurrency: 32,
    });
    let back: WorkerSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert!(matches!(back, WorkerSpec::Devices(d) if d.interval_s == 30.5 && d.first == 2500));
    let events = [
        WEvent::Up,
        WEvent::Stats(WStats {
            published: 3,
            closes: vec![Close {
                t_ms: 1,
                who: "d1".into(),
                kind: "eof".into(),
                held_s: 2.5,
            }],
            ..WStats::default()
        }),
        WEvent::Final(Box::new(WFinal {
            flood: Some(FloodStats {
                half_open_hold_p50_s: 10.5,
                ..FloodStats::default()
            }),
            ..WFinal::default()
        })),
    ];
    for e in events {
        let line = serde_json::to_string(&e).unwrap();
        let back: WEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(format!("{back:?}"), format!("{e:?}"));
    }
}

#[test]
fn seen_counts_unique_and_gaps() {
    let mut s = Seen {
        bits: vec![Vec::new(); 3],
    };
    assert_eq!(s.record(1, 0), Some(true));
    assert_eq!(s.record(1, 2), Some(true));
    assert_eq!(s.record(1, 2), Some(false));
    assert_eq!(s.record(1, 70), Some(true));
    assert_eq!(s.record(9, 0), None);
    let f = s.final_report();
    assert_eq!(f.unique, vec![0, 3, 0]);
    assert_eq!(f.max_seq, vec![-1, 70, -1]);
    assert_eq!(f.gaps.len(), 68);
    assert_eq!(f.gaps[0], (1, 1));
}

#[test]
fn parses_metrics() {
    let text = "# HELP x\nmoat_certificate_reloads_total{listener=\"soak\",result=\"success\"} 3\nmoat_certificate_reloads_total{listener=\"soak\",result=\"failure\"} 1\nmoat_connections_active{listener=\"soak\"} 5002\nmoat_ready 1\n";
    assert_eq!(
        metric(
            text,
            "moat_certificate_reloads_total",
            &[("result", "success")]
        ),
        3.0
    );
    assert_eq!(metric(text, "moat_certificate_reloads_total", &[]), 4.0);
    assert_eq!(metric(text, "moat_connections_active", &[]), 5002.0);
    assert_eq!(metric(text, "moat_ready", &[]), 1.0);
    let by = by_label(text, "moat_certificate_reloads_total", "result", &[]);
    assert_eq!(by.get("failure"), Some(&1.0));
}

#[test]
fn plan_fits_the_descriptor_limit() {
    let args = SoakArgs {
        duration: Duration::from_secs(600),
        connections: 10_000,
        replicas: 2,
        publish_interval: Duration::from_secs(30),
        subscribers: 4,
        reload_interval: Duration::from_secs(10),
        broker_down: Duration::from_secs(5),
        flood: None,
        half_open: 5000,
        garbage_rate: 300.0,
        slowloris: 10,
        handshake_bound_ms: 250.0,
        per_worker: 2500,
        moat_bin: None,
        out: None,
        no_write: false,
        report_from: None,
    };
    let p = Plan::new(&args, 20_000).unwrap();
    assert_eq!((p.per_replica, p.workers, p.flood_s), (5000, 4, 45.0));
    assert!(p.full_size());
    let one = SoakArgs {
        replicas: 1,
        ..args
    };
    assert!(Plan::new(&one, 20_000).is_err());
}
