//! The *devices* role: persistent MQTT sessions publishing QoS 1 and
//! retransmitting what was not acknowledged.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rustls::ClientConfig;
use tokio::sync::watch;

use crate::client;
use crate::mqtt;
use crate::soak::protocol::{
    emit, nap, spawn_reporter, Counters, DeviceSpec, Phase, WEvent, WFinal,
};
use crate::soak::util::{close_kind, ended_kind, mqtt_session, Rng, Session};

/// No PUBACK for this long: the session is taken for dead.
pub(crate) const STALL: Duration = Duration::from_secs(30);
/// A whole connection attempt (TCP, TLS, CONNECT, CONNACK): longer than
/// moat's backend connect timeout (5 s) so that a device waiting for a
/// restarting broker is not the one giving up.
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_secs(20);

pub(crate) struct Device {
    /// Its number in this worker, and in the whole soak.
    pub(crate) local: usize,
    pub(crate) d: usize,
    pub(crate) target: SocketAddr,
    pub(crate) topic: String,
    pub(crate) id: String,
    pub(crate) next_seq: u32,
    pub(crate) acked: u32,
    /// (packet id, sequence, last sent).
    pub(crate) unacked: VecDeque<(u16, u32, Instant)>,
    pub(crate) next_pid: u16,
    /// When the next message is due.
    pub(crate) next_pub: tokio::time::Instant,
    /// Nothing was left to acknowledge after `stop` (reported once).
    pub(crate) flushed: bool,
}

impl Device {
    pub(crate) fn payload(&self, seq: u32) -> Vec<u8> {
        format!("{}:{seq}", self.d).into_bytes()
    }

    pub(crate) fn alloc_pid(&mut self) -> u16 {
        loop {
            let p = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.unacked.iter().any(|u| u.0 == p) {
                return p;
            }
        }
    }
}

/// How a session ended.
pub(crate) enum End {
    Quit,
    Closed(String),
}

/// Each device's accounting (published, acknowledged, sequences not
/// acknowledged), indexed by its local number; written when the device has
/// nothing left to acknowledge after `stop`, and when it ends.
pub(crate) type Book = Mutex<Vec<(u32, u32, Vec<u32>)>>;

pub(crate) fn book_device(b: &Book, dev: &Device) {
    b.lock().expect("lock")[dev.local] = (
        dev.next_seq,
        dev.acked,
        dev.unacked.iter().map(|u| u.1).collect(),
    );
}

pub(crate) fn final_of(spec: &DeviceSpec, b: &Book) -> WFinal {
    let b = b.lock().expect("lock");
    WFinal {
        first: spec.first,
        published: b.iter().map(|e| e.0).collect(),
        acked: b.iter().map(|e| e.1).collect(),
        unacked: b
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.2.iter().map(move |&s| ((spec.first + i) as u32, s)))
            .collect(),
        ..WFinal::default()
    }
}

pub(crate) async fn devices(spec: DeviceSpec, phase: watch::Receiver<Phase>) -> Result<()> {
    let ca = crate::pki::load_ca(&spec.ca)?;
    let cfg = client::config(&ca, false);
    let c = Arc::new(Counters::default());
    let book: Arc<Book> = Arc::new(Mutex::new(vec![Default::default(); spec.count]));
    let ramp = Arc::new(tokio::sync::Semaphore::new(spec.ramp_concurrency.max(1)));
    let spec = Arc::new(spec);
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for local in 0..spec.count {
        let (spec, cfg, c, book, ramp, phase) = (
            spec.clone(),
            cfg.clone(),
            c.clone(),
            book.clone(),
            ramp.clone(),
            phase.clone(),
        );
        tasks.spawn(async move { device(local, spec, cfg, c, book, ramp, phase).await });
    }
    // `up` once every device has had its first session.
    {
        let c = c.clone();
        let count = spec.count;
        let mut phase = phase.clone();
        tokio::spawn(async move {
            while c.up.load(Ordering::Relaxed) < count {
                if nap(Duration::from_millis(50), &mut phase).await {
                    return;
                }
            }
            emit(&WEvent::Up);
        });
    }
    let reporter = spawn_reporter(c.clone(), done.clone());
    // The final accounting goes out at `stop` once every device is flushed
    // (the counts are exact then), or when the devices end on quit.
    let mut reported_final = false;
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = tokio::time::sleep(Duration::from_millis(200)), if !reported_final => {
                if *phase.borrow() == Phase::Stop
                    && c.flushed.load(Ordering::Relaxed) >= spec.count
                {
                    emit(&WEvent::Stats(c.snapshot()));
                    emit(&WEvent::Final(Box::new(final_of(&spec, &book))));
                    reported_final = true;
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    if !reported_final {
        emit(&WEvent::Final(Box::new(final_of(&spec, &book))));
    }
    Ok(())
}

pub(crate) async fn device(
    local: usize,
    spec: Arc<DeviceSpec>,
    cfg: Arc<ClientConfig>,
    c: Arc<Counters>,
    book: Arc<Book>,
    ramp: Arc<tokio::sync::Semaphore>,
    mut phase: watch::Receiver<Phase>,
) {
    let d = spec.first + local;
    let groups = spec.groups.max(1);
    let mut rng = Rng::new(d as u64);
    let interval = Duration::from_secs_f64(spec.interval_s);
    let mut dev = Device {
        local,
        d,
        target: spec.targets[(d / groups) % spec.targets.len()],
        topic: format!("soak/{}/{d}", d % groups),
        id: format!("soak-d{d}"),
        next_seq: 0,
        acked: 0,
        unacked: VecDeque::new(),
        next_pid: 1,
        next_pub: tokio::time::Instant::now() + interval.mul_f64(rng.unit()),
        flushed: false,
    };
    let mut first = true;
    loop {
        if *phase.borrow() == Phase::Quit {
            break;
        }
        let permit = if first {
            ramp.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let attempt = mqtt_session(
            dev.target,
            &cfg,
            &dev.id,
            spec.keep_alive,
            false,
            CONNECT_LIMIT,
        )
        .await;
        drop(permit);
        let mut sess = match attempt {
            Ok((s, _)) => s,
            Err(e) => {
                c.connect_failed(format!("d{d}: {e}"));
                if nap(rng.between(0.5, 3.0), &mut phase).await {
                    break;
                }
                continue;
            }
        };
        let since = c.session_up(&mut first);
        let end = device_session(&mut dev, &mut sess, &spec, &c, &book, &mut phase).await;
        c.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            End::Quit => {
                sess.goodbye().await;
                break;
            }
            End::Closed(kind) => {
                c.close(format!("d{d}"), kind, since.elapsed());
                if nap(rng.between(0.2, 2.0), &mut phase).await {
                    break;
                }
            }
        }
    }
    book_device(&book, &dev);
}

/// One established session of a device, until it ends or the worker quits.
pub(crate) async fn device_session(
    dev: &mut Device,
    sess: &mut Session,
    spec: &DeviceSpec,
    c: &Counters,
    book: &Book,
    phase: &mut watch::Receiver<Phase>,
) -> End {
    let interval = Duration::from_secs_f64(spec.interval_s);
    // Whatever was not acknowledged goes again, with DUP and its packet id.
    let resend: Vec<(u16, u32)> = dev.unacked.iter().map(|u| (u.0, u.1)).collect();
    for (pid, seq) in resend {
        let f = mqtt::publish_qos1(&dev.topic, pid, &dev.payload(seq), true);
        if let Err(e) = sess.send(&f).await {
            return End::Closed(close_kind(&e));
        }
        c.retransmits.fetch_add(1, Ordering::Relaxed);
    }
    let now = Instant::now();
    for u in dev.unacked.iter_mut() {
        u.2 = now;
    }
    let ping_every = Duration::from_secs(u64::from(spec.keep_alive.max(2)) / 2);
    let mut last_send = tokio::time::Instant::now();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        let p = *phase.borrow();
        if p == Phase::Quit {
            return End::Quit;
        }
        if p == Phase::Stop && dev.unacked.is_empty() && !dev.flushed {
            dev.flushed = true;
            book_device(book, dev);
            c.flushed.fetch_add(1, Ordering::Relaxed);
        }
        let stall_at = dev
            .unacked
            .front()
            .map_or(far, |u| tokio::time::Instant::from_std(u.2 + STALL));
        let publishing = p == Phase::Run;
        tokio::select! {
            r = sess.fill() => {
                if let Err(e) = r {
                    return End::Closed(ended_kind(&e));
                }
                loop {
                    let f = match mqtt::next_frame(&sess.buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => return End::Closed(format!("malformed frame from the broker: {e}")),
                    };
                    if f.kind() == mqtt::PUBACK {
                        if let Some(pid) = mqtt::packet_id(&sess.buf, f) {
                            if let Some(i) = dev.unacked.iter().position(|u| u.0 == pid) {
                                dev.unacked.remove(i);
                                dev.acked += 1;
                                c.acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    sess.buf.drain(..f.len);
                }
            }
            _ = tokio::time::sleep_until(dev.next_pub), if publishing => {
                let seq = dev.next_seq;
                let pid = dev.alloc_pid();
                let f = mqtt::publish_qos1(&dev.topic, pid, &dev.payload(seq), false);
                dev.next_seq += 1;
                dev.unacked.push_back((pid, seq, Instant::now()));
                c.published.fetch_add(1, Ordering::Relaxed);
                dev.next_pub += interval;
                let now = tokio::time::Instant::now();
                if dev.next_pub < now {
                    dev.next_pub = now + interval;
                }
                if let Err(e) = sess.send(&f).await {
                    return End::Closed(close_kind(&e));
                }
                last_send = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(last_send + ping_every) => {
                if let Err(e) = sess.send(&mqtt::PINGREQ).await {
                    return End::Closed(close_kind(&e));
                }
                last_send = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(stall_at) => {
                return End::Closed("stalled (no PUBACK for 30 s)".into());
            }
            r = phase.changed() => {
                if r.is_err() {
                    return End::Quit;
                }
            }
        }
    }
}
