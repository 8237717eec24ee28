//! The metric handles a listener's connections count with, resolved once
//! per listener so that the connection path only does atomic adds. Every
//! series with a reason exists at zero from the start.

use crate::relay::throttle::ThrottleCounters;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::reasons::{
    CheckResult, CrlCheck, CrlFetch, HandshakeFailure, QueryResult, RejectReason,
};
use super::registry::CloseReason;
use crate::guard::connect::ConnectRefusal;
use crate::guard::packets::{GuardCounters, SessionClose};
use crate::metrics::labels::{
    DirectionLabels, HandshakeLabels, ListenerLabels, ProtocolLabels, ReasonLabels, ResultLabels,
    TransportLabels,
};
use crate::metrics::reason::ByReason;
use crate::metrics::Metrics;
use crate::tls::client_auth::DenialReason;
use crate::transport::{Transport, UpgradeResult, Violation};

/// Pre-resolved metric handles for one listener (or route).
#[derive(Clone)]
pub struct ConnMetrics {
    name: String,
    /// `moat_connections_active`.
    pub active: Gauge,
    /// `moat_connections_total`.
    pub accepted: Counter,
    /// `moat_connections_rejected_total`, by reason.
    pub rejected: ByReason<RejectReason>,
    /// `moat_tls_handshakes_total{result="success"}`.
    pub handshake_ok: Counter,
    /// `moat_tls_handshakes_total{result="failure"}`, by reason.
    pub handshake_failed: ByReason<HandshakeFailure>,
    /// `moat_tls_handshake_duration_seconds`.
    pub handshake_duration: Histogram,
    /// `moat_tls_sessions_resumed_total`.
    pub resumed: Counter,
    /// `moat_acme_tls_alpn_validations_total`.
    pub acme_validations: Counter,
    /// `moat_client_auth_denied_total`, by reason.
    pub client_auth_denied: ByReason<DenialReason>,
    /// `moat_client_ocsp_checks_total`, by result.
    pub client_ocsp_checks: ByReason<CheckResult>,
    /// `moat_client_ocsp_queries_total`, by result.
    pub client_ocsp_queries: ByReason<QueryResult>,
    /// `moat_client_crl_checks_total`, by result.
    pub client_crl_checks: ByReason<CrlCheck>,
    /// `moat_client_crl_fetches_total`, by result.
    pub client_crl_fetches: ByReason<CrlFetch>,
    /// `moat_client_ocsp_cache_entries`.
    pub client_ocsp_cache_entries: Gauge,
    /// `moat_sessions_rechecked_total` (by `conn::revocation`).
    pub sessions_rechecked: Counter,
    /// `moat_backend_connect_failures_total`.
    pub backend_failures: Counter,
    /// `moat_relayed_bytes_total{direction="client_to_backend"}`.
    pub to_backend: Counter,
    /// `moat_relayed_bytes_total{direction="backend_to_client"}`.
    pub to_client: Counter,
    /// `moat_idle_timeouts_total`.
    pub idle_timeouts: Counter,
    /// `moat_mqtt_connect_rejected_total`, by reason.
    pub mqtt_connect_rejected: ByReason<ConnectRefusal>,
    /// `moat_mqtt_sessions_closed_total`, by reason.
    pub mqtt_session_closed: ByReason<SessionClose>,
    /// `moat_connections_closed_total`, by reason.
    pub closed: ByReason<CloseReason>,
    /// MQTT guard counters (denied publishes and subscriptions).
    pub mqtt: Arc<GuardCounters>,
    /// `moat_mqtt_throttled_total` and `moat_mqtt_throttle_seconds_total`.
    pub throttle: ThrottleCounters,
    mqtt_connections: Family<ProtocolLabels, Counter>,
    /// `moat_websocket_upgrades_total`, by result.
    pub websocket_upgrades: ByReason<UpgradeResult>,
    /// `moat_websocket_closed_total`, by reason.
    pub websocket_closed: Arc<ByReason<Violation>>,
    /// `moat_connections_by_transport_total{transport="mqtt"}` and
    /// `{transport="websocket"}`.
    by_transport: [Counter; 2],
}

/// The counters of `family` (labelled `result`) for `listener`, one per
/// value of `R`.
fn by_result<R: crate::metrics::reason::Reason>(
    family: &Family<ResultLabels, Counter>,
    listener: &str,
) -> ByReason<R> {
    ByReason::new(|result| {
        family.get_or_create_owned(&ResultLabels {
            listener: listener.to_string(),
            result: result.to_string(),
        })
    })
}

/// The counters of `family` for `listener`, one per value of `R`.
fn by_reason<R: crate::metrics::reason::Reason>(
    family: &Family<ReasonLabels, Counter>,
    listener: &str,
) -> ByReason<R> {
    ByReason::new(|reason| {
        family.get_or_create_owned(&ReasonLabels {
            listener: listener.to_string(),
            reason: reason.to_string(),
        })
    })
}

impl ConnMetrics {
    /// The handles of listener `name`.
    pub fn new(metrics: &Metrics, name: &str) -> Self {
        let l = ListenerLabels {
            listener: name.to_string(),
        };
        let dir = |d: &str| DirectionLabels {
            listener: name.to_string(),
            direction: d.to_string(),
        };
        let handshakes = |result: &str, reason: &str| HandshakeLabels {
            listener: name.to_string(),
            result: result.to_string(),
            reason: reason.to_string(),
        };
        // get_or_create_owned: a borrowed handle would hold the family's lock.
        Self {
            name: name.to_string(),
            active: metrics.connections_active.get_or_create_owned(&l),
            accepted: metrics.connections.get_or_create_owned(&l),
            rejected: by_reason(&metrics.connections_rejected, name),
            handshake_ok: metrics
                .handshakes
                .get_or_create_owned(&handshakes("success", "")),
            handshake_failed: ByReason::new(|reason| {
                metrics
                    .handshakes
                    .get_or_create_owned(&handshakes("failure", reason))
            }),
            handshake_duration: metrics.handshake_duration.get_or_create_owned(&l),
            resumed: metrics.sessions_resumed.get_or_create_owned(&l),
            acme_validations: metrics.acme_tls_alpn_validations.get_or_create_owned(&l),
            client_auth_denied: by_reason(&metrics.client_auth_denied, name),
            client_ocsp_checks: by_result(&metrics.client_ocsp_checks, name),
            client_ocsp_queries: by_result(&metrics.client_ocsp_queries, name),
            client_crl_checks: by_result(&metrics.client_crl_checks, name),
            client_crl_fetches: by_result(&metrics.client_crl_fetches, name),
            client_ocsp_cache_entries: metrics.client_ocsp_cache_entries.get_or_create_owned(&l),
            sessions_rechecked: metrics.sessions_rechecked.get_or_create_owned(&l),
            backend_failures: metrics.backend_connect_failures.get_or_create_owned(&l),
            to_backend: metrics
                .relayed_bytes
                .get_or_create_owned(&dir("client_to_backend")),
            to_client: metrics
                .relayed_bytes
                .get_or_create_owned(&dir("backend_to_client")),
            idle_timeouts: metrics.idle_timeouts.get_or_create_owned(&l),
            mqtt_connect_rejected: by_reason(&metrics.mqtt_connect_rejected, name),
            mqtt_session_closed: by_reason(&metrics.mqtt_sessions_closed, name),
            closed: by_reason(&metrics.connections_closed, name),
            mqtt: Arc::new(GuardCounters {
                publish_denied: metrics.mqtt_publish_denied.get_or_create_owned(&l),
                subscribe_denied: metrics.mqtt_subscribe_denied.get_or_create_owned(&l),
            }),
            throttle: ThrottleCounters {
                throttled: metrics.mqtt_throttled.get_or_create_owned(&l),
                paused: metrics.mqtt_throttle_seconds.get_or_create_owned(&l),
            },
            mqtt_connections: metrics.mqtt_connections.clone(),
            websocket_upgrades: by_result(&metrics.websocket_upgrades, name),
            websocket_closed: Arc::new(by_reason(&metrics.websocket_closed, name)),
            by_transport: ["mqtt", "websocket"].map(|t| {
                metrics
                    .connections_by_transport
                    .get_or_create_owned(&TransportLabels {
                        listener: name.to_string(),
                        transport: t.to_string(),
                    })
            }),
        }
    }

    /// Counts a connection that starts its session over `transport`.
    pub fn transport(&self, transport: Transport) {
        let i = match transport {
            Transport::Mqtt => 0,
            Transport::WebSocket => 1,
        };
        self.by_transport[i].inc();
    }

    /// Counts an MQTT session accepted at CONNECT, by protocol version.
    pub fn mqtt_connected(&self, protocol: &str) {
        self.mqtt_connections
            .get_or_create_owned(&ProtocolLabels {
                listener: self.name.clone(),
                protocol: protocol.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_follows_prometheus_naming() {
        let m = Metrics::new();
        let l = ConnMetrics::new(&m, "mqtts");
        l.accepted.inc();
        l.handshake_failed.inc(HandshakeFailure::Timeout);
        l.to_backend.inc_by(10);
        let text = m.render();
        assert!(
            text.contains("moat_connections_total{listener=\"mqtts\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("moat_tls_handshakes_total{listener=\"mqtts\",result=\"failure\",reason=\"timeout\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "moat_relayed_bytes_total{listener=\"mqtts\",direction=\"client_to_backend\"} 10"
        ));
        assert!(text.contains("moat_build_info{version="), "{text}");
        assert!(text.contains("# TYPE moat_tls_handshake_duration_seconds histogram"));
        // Known reasons exist at zero before anything happens.
        assert!(text.contains("reason=\"other\"} 0"), "{text}");
        assert!(
            text.contains(
                "moat_connections_rejected_total{listener=\"mqtts\",reason=\"max_connections\"} 0"
            ),
            "{text}"
        );
    }
}
