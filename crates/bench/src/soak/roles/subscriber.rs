//! The *subscribers* role: counting unique (publisher, sequence) pairs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rustls::ClientConfig;
use tokio::sync::watch;

use crate::client;
use crate::mqtt;
use crate::soak::protocol::{
    emit, nap, spawn_reporter, Counters, Phase, SubscriberSpec, WEvent, WFinal,
};
use crate::soak::roles::device::{End, CONNECT_LIMIT};
use crate::soak::util::{close_kind, ended_kind, mqtt_session, Rng};

/// Which (device, sequence) pairs arrived: one bit set per device.
pub(crate) struct Seen {
    pub(crate) bits: Vec<Vec<u64>>,
}

impl Seen {
    /// Records a pair: `Some(true)` when new, `Some(false)` for a duplicate,
    /// `None` for a device that does not exist.
    pub(crate) fn record(&mut self, d: usize, seq: u32) -> Option<bool> {
        let set = self.bits.get_mut(d)?;
        let (w, b) = (seq as usize / 64, seq % 64);
        if set.len() <= w {
            set.resize(w + 1, 0);
        }
        let new = set[w] & (1 << b) == 0;
        set[w] |= 1 << b;
        Some(new)
    }

    pub(crate) fn final_report(&self) -> WFinal {
        let mut fin = WFinal::default();
        for (d, set) in self.bits.iter().enumerate() {
            let unique: u32 = set.iter().map(|w| w.count_ones()).sum();
            let max = set
                .iter()
                .enumerate()
                .rev()
                .find(|(_, w)| **w != 0)
                .map_or(-1, |(i, w)| {
                    (i * 64 + 63 - w.leading_zeros() as usize) as i64
                });
            fin.unique.push(unique);
            fin.max_seq.push(max);
            for seq in 0..max.max(0) as u32 {
                if set[seq as usize / 64] & (1 << (seq % 64)) == 0 && fin.gaps.len() < 1000 {
                    fin.gaps.push((d as u32, seq));
                }
            }
        }
        fin
    }
}

/// Parses a payload `device:sequence`.
pub(crate) fn parse_payload(p: &[u8]) -> Option<(usize, u32)> {
    let s = std::str::from_utf8(p).ok()?;
    let (d, seq) = s.split_once(':')?;
    Some((d.parse().ok()?, seq.parse().ok()?))
}

pub(crate) async fn subscribers(
    spec: SubscriberSpec,
    phase: watch::Receiver<Phase>,
    mut final_rx: watch::Receiver<bool>,
) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let c = Arc::new(Counters::default());
    let seen = Arc::new(Mutex::new(Seen {
        bits: vec![Vec::new(); spec.devices],
    }));
    let spec = Arc::new(spec);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..spec.groups {
        let (spec, cfg, c, seen, phase) = (
            spec.clone(),
            cfg.clone(),
            c.clone(),
            seen.clone(),
            phase.clone(),
        );
        tasks.spawn(async move { subscriber(k, spec, cfg, c, seen, phase).await });
    }
    let done = Arc::new(AtomicBool::new(false));
    let reporter = spawn_reporter(c.clone(), done.clone());
    let mut up_sent = false;
    let mut final_sent = false;
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            r = final_rx.changed(), if !final_sent => {
                if r.is_ok() && *final_rx.borrow_and_update() {
                    emit(&WEvent::Stats(c.snapshot()));
                    let fin = seen.lock().expect("lock").final_report();
                    emit(&WEvent::Final(Box::new(fin)));
                    final_sent = true;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if !up_sent => {
                if c.up.load(Ordering::Relaxed) >= spec.groups {
                    emit(&WEvent::Up);
                    up_sent = true;
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    Ok(())
}

/// One subscriber session, reconnecting until the worker quits.
pub(crate) async fn subscriber(
    k: usize,
    spec: Arc<SubscriberSpec>,
    cfg: Arc<ClientConfig>,
    c: Arc<Counters>,
    seen: Arc<Mutex<Seen>>,
    mut phase: watch::Receiver<Phase>,
) {
    let target = spec.targets[k % spec.targets.len()];
    let id = format!("soak-s{k}");
    let filter = format!("soak/{k}/#");
    let filter_base = format!("soak/{k}/");
    let mut rng = Rng::new(1_000_000 + k as u64);
    let mut first = true;
    let ping_every = Duration::from_secs(u64::from(spec.keep_alive.max(2)) / 2);
    loop {
        if *phase.borrow() == Phase::Quit {
            return;
        }
        let mut sess =
            match mqtt_session(target, &cfg, &id, spec.keep_alive, false, CONNECT_LIMIT).await {
                Ok((s, _)) => s,
                Err(e) => {
                    c.connect_failed(format!("s{k}: {e}"));
                    if nap(rng.between(0.5, 3.0), &mut phase).await {
                        return;
                    }
                    continue;
                }
            };
        // The session keeps the subscription; subscribing again is harmless.
        if let Err(e) = sess.send(&mqtt::subscribe(1, &filter, 1)).await {
            c.error(format!("s{k}: subscribe: {e}"));
            continue;
        }
        let since = c.session_up(&mut first);
        let mut last_send = tokio::time::Instant::now();
        let end = loop {
            if *phase.borrow() == Phase::Quit {
                break End::Quit;
            }
            tokio::select! {
                r = sess.fill() => {
                    if let Err(e) = r {
                        break End::Closed(ended_kind(&e));
                    }
                    let (acks, bad) = take_frames(&mut sess.buf, &filter_base, &c, &seen);
                    if let Some(b) = bad {
                        break End::Closed(b);
                    }
                    if !acks.is_empty() {
                        if let Err(e) = sess.send(&acks).await {
                            break End::Closed(close_kind(&e));
                        }
                        last_send = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep_until(last_send + ping_every) => {
                    if let Err(e) = sess.send(&mqtt::PINGREQ).await {
                        break End::Closed(close_kind(&e));
                    }
                    last_send = tokio::time::Instant::now();
                }
                r = phase.changed() => if r.is_err() { break End::Quit },
            }
        };
        c.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            End::Quit => {
                sess.goodbye().await;
                return;
            }
            End::Closed(kind) => {
                c.close(format!("s{k}"), kind, since.elapsed());
                if nap(rng.between(0.2, 1.0), &mut phase).await {
                    return;
                }
            }
        }
    }
}

/// Consumes the complete frames in `buf`: counts each PUBLISH against
/// `seen` and returns the PUBACKs to send, and why to close, if so.
fn take_frames(
    buf: &mut Vec<u8>,
    filter_base: &str,
    c: &Counters,
    seen: &Mutex<Seen>,
) -> (Vec<u8>, Option<String>) {
    let mut acks: Vec<u8> = Vec::new();
    let mut bad = None;
    loop {
        let f = match mqtt::next_frame(buf) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                bad = Some(format!("malformed frame from the broker: {e}"));
                break;
            }
        };
        match f.kind() {
            mqtt::PUBLISH => {
                let Some(p) = mqtt::parse_publish(buf, f) else {
                    bad = Some("malformed PUBLISH".into());
                    break;
                };
                c.received.fetch_add(1, Ordering::Relaxed);
                // The payload names the device; so must the topic.
                match parse_payload(p.payload)
                    .filter(|(d, _)| p.topic == format!("{filter_base}{d}").as_bytes())
                    .and_then(|(d, seq)| seen.lock().expect("lock").record(d, seq))
                {
                    Some(true) => c.unique.fetch_add(1, Ordering::Relaxed),
                    Some(false) => c.dups.fetch_add(1, Ordering::Relaxed),
                    None => c.malformed.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(pid) = p.packet_id {
                    acks.extend_from_slice(&mqtt::puback(pid));
                }
            }
            mqtt::SUBACK => {
                let rc = buf.get(f.body_start + 2).copied();
                if rc == Some(0x80) {
                    bad = Some("subscription refused".into());
                    break;
                }
            }
            _ => {}
        }
        buf.drain(..f.len);
    }
    (acks, bad)
}
