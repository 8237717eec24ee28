//! An MQTT-aware session: the CONNECT is read and decided on before the
//! broker is even connected (`guard::connect`), then every packet goes
//! through the guard (`relay::mqtt`). A broker that cannot be reached gets
//! the client CONNACK "server unavailable" rather than a bare close. A
//! session moat tells to stop (`registry`) gets a DISCONNECT saying why
//! (MQTT 5) before the close.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use super::finish::{close, finish, CLOSE_NOTIFY_TIMEOUT};
use super::handshake::Established;
use super::registry::CloseReason;
use crate::config::MqttConfig;
use crate::guard::acl::Subject;
use crate::guard::connect::{self, ConnectDecision, ConnectRefusal};
use crate::guard::granted::Regranted;
use crate::guard::packets::PacketGuard;
use crate::relay::throttle::Throttle;
use crate::relay::{self, mqtt};
use crate::tls::allow::DeviceFacts;
use crate::transport::ClientStream;

/// A CONNECT that was accepted: what to send the broker, and the session.
struct Accepted {
    forward: Vec<u8>,
    client_id: String,
    username: Option<String>,
    /// The certificate identity the ACL was resolved with.
    identity: Option<String>,
    guard: Box<PacketGuard>,
    /// Client bytes read after the CONNECT.
    pending: Vec<u8>,
    keep_alive: u16,
}

/// Runs an MQTT-aware session. The steps before the relay are boxed, so
/// that their state does not stay in this future for the connection's life
/// (see `conn::handle`).
pub async fn run(mut conn: Box<Established>) {
    let (ctx, live) = (conn.ctx.clone(), conn.live.clone());
    // `conn::handle` picks this session only for MQTT-aware listeners.
    let Some(mqtt) = live.config.mqtt.as_ref() else {
        return;
    };
    let m = &ctx.metrics;
    let Some(accepted) = Box::pin(connect_phase(&mut conn.tls, mqtt, m)).await else {
        return;
    };
    let version = accepted.guard.version();
    // The device's key for its limits: its identity, else its client id.
    let device = accepted
        .identity
        .clone()
        .unwrap_or_else(|| accepted.client_id.clone());
    if let Some(reply) = refusal(&conn, &accepted.client_id, &device) {
        Box::pin(close(&mut conn.tls, &reply(version))).await;
        return;
    }
    let (mut backend, _lease) =
        match Box::pin(conn.connect_backend(Some(&accepted.client_id))).await {
            Ok(b) => b,
            Err(_) => {
                m.mqtt_connect_rejected
                    .inc(ConnectRefusal::BackendUnavailable);
                Box::pin(close(&mut conn.tls, &connect::server_unavailable(version))).await;
                return;
            }
        };
    if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut backend, &accepted.forward).await {
        m.backend_failures.inc();
        warn!(error = %e, "cannot send the CONNECT to the backend");
        Box::pin(close(&mut conn.tls, &connect::server_unavailable(version))).await;
        return;
    }
    let Established {
        mut tls,
        started,
        registered,
        ..
    } = *conn;
    let Accepted {
        guard,
        pending,
        keep_alive,
        client_id,
        username,
        identity,
        ..
    } = accepted;
    m.mqtt_connected(connect::version_label(version));
    info!(
        mqtt.version = connect::version_label(version),
        mqtt.client_id = %client_id,
        mqtt.username = username.as_deref().unwrap_or(""),
        "MQTT session started"
    );
    registered.set_client_id(&client_id);
    let pump = mqtt::relay(
        &mut tls,
        &mut backend,
        *guard,
        pending,
        (m.to_backend.clone(), m.to_client.clone()),
        live.limits.limits_rates().then(|| {
            Box::new(Throttle::new(
                live.limits.clone(),
                device,
                m.throttle.clone(),
            ))
        }),
    );
    // Like a broker: 1.5 times the client's keep-alive, else the listener's.
    let idle = match keep_alive {
        0 => live.config.timeouts.idle.0,
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    let mut pump = relay::idle_timeout(pump, idle);
    let subject = Subject {
        client_id: &client_id,
        username: username.as_deref(),
        identity: identity.as_deref(),
    };
    let ended = loop {
        tokio::select! {
            result = &mut pump => break Err(result),
            reason = registered.stopped() => break Ok(reason),
            () = registered.policy_reloaded() => {
                if let Some(reason) = reload_policy(pump.get_mut(), &ctx.live.load(), &subject) {
                    break Ok(reason);
                }
            }
        }
    };
    match ended {
        Err(result) => finish(result, started, m, None),
        Ok(reason) => {
            pump.get_mut().stop(reason.disconnect_code());
            let result = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, &mut pump)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            finish(result, started, m, Some((reason, registered.session())));
        }
    }
}

/// The CONNACK refusing an accepted CONNECT whose client id is banned, or
/// whose `device` is over `mqtt.limits.connections_per_minute` (logged and
/// counted here); `None` when it may go on.
fn refusal(
    conn: &Established,
    client_id: &str,
    device: &str,
) -> Option<fn(moat_mqtt::ProtocolVersion) -> Vec<u8>> {
    let m = &conn.ctx.metrics;
    let now = std::time::SystemTime::now();
    if let Some(ban) = conn.ctx.sessions.bans.client_id(client_id, now) {
        m.mqtt_connect_rejected.inc(ConnectRefusal::Banned);
        info!(ban, mqtt.client_id = %client_id, "MQTT CONNECT refused: the client id is banned");
        return Some(connect::not_authorized);
    }
    if !conn.live.limits.admit_connection(device) {
        m.mqtt_connect_rejected.inc(ConnectRefusal::ConnectionRate);
        info!(
            device,
            "MQTT CONNECT refused: over mqtt.limits.connections_per_minute"
        );
        return Some(connect::connection_rate_exceeded);
    }
    None
}

/// Gives the session's guard its listener's reloaded MQTT settings. A
/// session the new ACL no longer allows a subscription it holds must end
/// (the broker would go on delivering on it): that reason comes back.
fn reload_policy(
    pump: &mut mqtt::MqttRelay<'_, ClientStream, tokio::net::TcpStream>,
    live: &crate::conn::context::Live,
    subject: &Subject<'_>,
) -> Option<CloseReason> {
    // MQTT awareness cannot be turned off while moat runs.
    let config = live.config.mqtt.as_ref()?;
    let acl = connect::client_acl(config, subject);
    let denied = match pump.reload_policy(acl, config.on_deny, config.max_packet_size) {
        Regranted::Allowed => return None,
        Regranted::Denied(filters) => filters,
        Regranted::Unknown => vec!["(more subscriptions than moat keeps track of)".into()],
    };
    warn!(
        filters = ?denied,
        "the reloaded topic ACL no longer allows a subscription this session holds; closing it"
    );
    Some(CloseReason::SubscriptionDenied)
}

/// Reads the CONNECT and decides on it. A refused one gets its reply (a
/// CONNACK, or nothing) and the close, and `None` comes back.
async fn connect_phase(
    tls: &mut ClientStream,
    mqtt: &MqttConfig,
    m: &super::metrics::ConnMetrics,
) -> Option<Accepted> {
    let (buf, len) = match Box::pin(read_connect(tls, mqtt)).await {
        Ok(x) => x,
        Err(reason) => {
            m.mqtt_connect_rejected.inc(reason);
            info!(
                reason = reason.as_str(),
                "MQTT connection refused before CONNECT"
            );
            Box::pin(close(tls, &[])).await;
            return None;
        }
    };
    let facts = tls
        .tls()
        .connection()
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| DeviceFacts::from_der(c));
    let identity = connect::identity(facts.as_ref(), mqtt.identity);
    match connect::decide_connect(&buf[..len], mqtt, identity.as_deref(), m.mqtt.clone()) {
        ConnectDecision::Refuse { reply, reason } => {
            m.mqtt_connect_rejected.inc(reason);
            info!(reason = reason.as_str(), "MQTT CONNECT refused");
            Box::pin(close(tls, &reply)).await;
            None
        }
        ConnectDecision::Accept {
            forward,
            session,
            client_id,
            username,
            keep_alive,
        } => Some(Accepted {
            forward,
            client_id,
            username,
            identity,
            guard: session,
            pending: buf[len..].to_vec(),
            keep_alive,
        }),
    }
}

/// Reads the first packet, which must be a CONNECT, within the MQTT
/// connect timeout. Returns the bytes read (CONNECT first) and its length.
async fn read_connect(
    tls: &mut ClientStream,
    mqtt: &MqttConfig,
) -> Result<(Vec<u8>, usize), ConnectRefusal> {
    let deadline = tokio::time::Instant::now() + mqtt.connect_timeout.0;
    // Read straight into the heap buffer: a stack chunk held across the
    // await would become part of every connection's task, for its whole
    // life, MQTT-aware or not (the future's size is the largest of its
    // states). `connect_len` has already checked the length it announces
    // against max_packet_size, so the buffer stays bounded.
    let mut buf = Vec::new();
    loop {
        let want = match connect::connect_len(&buf, mqtt.max_packet_size)? {
            Some(n) if buf.len() >= n => return Ok((buf, n)),
            Some(n) => n - buf.len(),
            None => 16,
        };
        buf.reserve(want.clamp(16, 4096));
        let read = tokio::time::timeout_at(deadline, tls.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err(ConnectRefusal::ConnectTimeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ConnectRefusal::ClientClosed),
            Ok(Ok(_)) => {}
        }
    }
}
