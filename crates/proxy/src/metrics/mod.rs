//! Prometheus metrics: every family's name and help, in one registry
//! rendered in the Prometheus text format by the admin endpoint.
//!
//! Names follow Prometheus conventions: a `moat_` prefix, base units,
//! `_total` counters, `_timestamp_seconds` for absolute times. Labels are
//! bounded (see `labels`). This module knows nothing of what is counted:
//! the connection path resolves its handles once per listener
//! (`conn::metrics`), so counting there is an atomic add, and the control
//! plane sets the certificate, reload and stapling series itself.
//!
//! - `labels`: the label sets;
//! - `reason`: closed sets of label values, and a counter per value.

pub mod labels;
pub mod reason;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use labels::*;

fn handshake_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Declares [`Metrics`]: one field per family, registered in this order
/// (which is the order of the rendered text).
macro_rules! families {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $name:literal, $help:literal, $make:expr; )+) => {
        /// Every metric moat exports.
        pub struct Metrics {
            registry: Registry,
            $( $(#[$doc])* pub(crate) $field: $ty, )+
        }

        impl Metrics {
            fn register_all() -> Self {
                let mut registry = Registry::default();
                $( let $field: $ty = $make;
                   registry.register($name, $help, $field.clone()); )+
                Self { registry, $($field,)+ }
            }
        }
    };
}

families! {
    /// `moat_connections_active`.
    connections_active: Family<ListenerLabels, Gauge> = "moat_connections_active", "Client connections currently open (handshaking or relaying)", Default::default();
    /// `moat_connections`.
    connections: Family<ListenerLabels, Counter> = "moat_connections", "Client connections accepted", Default::default();
    /// `moat_connections_rejected`.
    connections_rejected: Family<ReasonLabels, Counter> = "moat_connections_rejected", "Client connections closed at once because a limit was reached", Default::default();
    /// `moat_tls_handshakes`.
    handshakes: Family<HandshakeLabels, Counter> = "moat_tls_handshakes", "TLS handshakes by result; failures carry a reason", Default::default();
    /// `moat_tls_handshake_duration_seconds`.
    handshake_duration: Family<ListenerLabels, Histogram, fn() -> Histogram> = "moat_tls_handshake_duration_seconds", "Time from accepting a connection to a completed TLS handshake", Family::new_with_constructor(handshake_histogram as fn() -> Histogram);
    /// `moat_tls_sessions_resumed`.
    sessions_resumed: Family<ListenerLabels, Counter> = "moat_tls_sessions_resumed", "TLS handshakes that resumed an earlier session", Default::default();
    /// `moat_backend_connect_failures`.
    backend_connect_failures: Family<ListenerLabels, Counter> = "moat_backend_connect_failures", "Failed attempts to connect to the backend broker", Default::default();
    /// `moat_mqtt_throttled`.
    mqtt_throttled: Family<ListenerLabels, Counter> = "moat_mqtt_throttled", "Times a device over mqtt.limits had its reads paused (it is slowed, not dropped)", Default::default();
    /// `moat_mqtt_throttle_seconds`.
    mqtt_throttle_seconds: Family<ListenerLabels, Counter<f64, std::sync::atomic::AtomicU64>> = "moat_mqtt_throttle_seconds", "Time devices over mqtt.limits spent with their reads paused", Default::default();
    /// `moat_backend_up`.
    backend_up: Family<BackendLabels, Gauge> = "moat_backend_up", "1 while a backend node is in rotation, 0 while it is held down after a failed connect (backend_health.hold_down) or out by its active checks", Default::default();
    /// `moat_backend_health_checks_total`.
    backend_health_checks: Family<BackendCheckLabels, Counter> = "moat_backend_health_checks", "Active health checks of each backend node (backend_health.check), by result: ok, connect_failed, timeout, rejected (CONNACK code not 0), bad_reply", Default::default();
    /// `moat_backend_connections`.
    backend_connections: Family<BackendLabels, Gauge> = "moat_backend_connections", "Open connections to each backend node", Default::default();
    /// `moat_backend_selected`.
    backend_selected: Family<BackendLabels, Counter> = "moat_backend_selected", "Connections that went to each backend node", Default::default();
    /// `moat_backend_node_connect_failures`.
    backend_node_failures: Family<BackendLabels, Counter> = "moat_backend_node_connect_failures", "Failed connects to each backend node (a connection then tries the next node)", Default::default();
    /// `moat_backend_dns_nodes`.
    backend_dns_nodes: Family<DnsLabels, Gauge> = "moat_backend_dns_nodes", "Nodes a backend entry with discover: has now (its last good DNS answer)", Default::default();
    /// `moat_backend_dns_failures`.
    backend_dns_failures: Family<DnsLabels, Counter> = "moat_backend_dns_failures", "Look-ups of a discovered backend entry that failed or found nothing (its last good nodes stay)", Default::default();
    /// `moat_relayed_bytes`.
    relayed_bytes: Family<DirectionLabels, Counter> = "moat_relayed_bytes", "Plaintext bytes relayed between clients and the backend", Default::default();
    /// `moat_ready`.
    ready: Gauge = "moat_ready", "1 while /readyz answers 200: every listener bound and serving, every ACME certificate obtained, no backend lost; else 0", Default::default();
    /// `moat_landlock_enforced`.
    landlock_enforced: Gauge = "moat_landlock_enforced", "1 when the kernel confines moat's file access with Landlock (sandbox.landlock), else 0", Default::default();
    /// `moat_certificate_not_after_timestamp_seconds`.
    cert_not_after: Family<CertLabels, Gauge> = "moat_certificate_not_after_timestamp_seconds", "End of validity of each served certificate and client CA certificate (stays after expiry)", Default::default();
    /// `moat_certificate_not_before_timestamp_seconds`.
    cert_not_before: Family<CertLabels, Gauge> = "moat_certificate_not_before_timestamp_seconds", "Start of validity of each served certificate and client CA certificate", Default::default();
    /// `moat_certificate_reloads`.
    reloads: Family<ResultLabels, Counter> = "moat_certificate_reloads", "Certificate reload attempts by result: success, failure (the previous certificates stay in service) or unchanged", Default::default();
    /// `moat_certificate_last_reload_success_timestamp_seconds`.
    last_reload_success: Family<ListenerLabels, Gauge> = "moat_certificate_last_reload_success_timestamp_seconds", "When the listener's certificates were last loaded successfully (start-up included)", Default::default();
    /// `moat_certificate_reload_pending`.
    reload_pending: Family<ListenerLabels, Gauge> = "moat_certificate_reload_pending", "1 when the certificate files on disk differ from what is served because loading them failed", Default::default();
    /// `moat_config_reload_failures`.
    config_reload_failures: Counter = "moat_config_reload_failures", "Reloads whose configuration file was refused (does not parse or validate, or changes a setting that needs a restart); the previous configuration stays", Default::default();
    /// `moat_config_reload_pending`.
    config_reload_pending: Gauge = "moat_config_reload_pending", "1 while the configuration file differs from the configuration in service because it was refused", Default::default();
    /// `moat_client_auth_denied`.
    client_auth_denied: Family<ReasonLabels, Counter> = "moat_client_auth_denied", "Client certificates refused, by reason (not on the allow-list, revoked, unknown CA, ...)", Default::default();
    /// `moat_client_ocsp_checks`.
    client_ocsp_checks: Family<ResultLabels, Counter> = "moat_client_ocsp_checks", "OCSP checks of device certificates (tls.client_auth.ocsp), by what they found, whether from the cache or a query", Default::default();
    /// `moat_client_ocsp_queries`.
    client_ocsp_queries: Family<ResultLabels, Counter> = "moat_client_ocsp_queries", "OCSP queries sent to device certificates' responders, by result (error: no verified answer)", Default::default();
    /// `moat_client_crl_checks`.
    client_crl_checks: Family<ResultLabels, Counter> = "moat_client_crl_checks", "Checks of device certificates against the CRL they name (tls.client_auth.crl_distribution_points), by what they found", Default::default();
    /// `moat_client_crl_fetches`.
    client_crl_fetches: Family<ResultLabels, Counter> = "moat_client_crl_fetches", "CRL downloads from device certificates' distribution points, by result (error: no verified, current CRL)", Default::default();
    /// `moat_client_ocsp_cache_entries`.
    client_ocsp_cache_entries: Family<ListenerLabels, Gauge> = "moat_client_ocsp_cache_entries", "Device certificates whose OCSP answer (or query in flight) the listener holds", Default::default();
    /// `moat_crl_next_update_timestamp_seconds`.
    crl_next_update: Family<CrlLabels, Gauge> = "moat_crl_next_update_timestamp_seconds", "nextUpdate of each client-certificate CRL (stays after it passes)", Default::default();
    /// `moat_crl_this_update_timestamp_seconds`.
    crl_this_update: Family<CrlLabels, Gauge> = "moat_crl_this_update_timestamp_seconds", "thisUpdate of each client-certificate CRL", Default::default();
    /// `moat_mqtt_connections`.
    mqtt_connections: Family<ProtocolLabels, Counter> = "moat_mqtt_connections", "MQTT sessions accepted on MQTT-aware listeners, by protocol version", Default::default();
    /// `moat_connections_by_transport`.
    connections_by_transport: Family<TransportLabels, Counter> = "moat_connections_by_transport", "Established connections by transport: mqtt (raw MQTT on TLS) or websocket", Default::default();
    /// `moat_websocket_upgrades`.
    websocket_upgrades: Family<ResultLabels, Counter> = "moat_websocket_upgrades", "WebSocket upgrade requests, by result (ok, or why refused)", Default::default();
    /// `moat_websocket_closed`.
    websocket_closed: Family<ReasonLabels, Counter> = "moat_websocket_closed", "WebSocket sessions moat closed on a protocol violation, by reason", Default::default();
    /// `moat_mqtt_connect_rejected`.
    mqtt_connect_rejected: Family<ReasonLabels, Counter> = "moat_mqtt_connect_rejected", "MQTT connections refused at CONNECT, by reason", Default::default();
    /// `moat_mqtt_publish_denied`.
    mqtt_publish_denied: Family<ListenerLabels, Counter> = "moat_mqtt_publish_denied", "PUBLISH packets denied by the topic ACL", Default::default();
    /// `moat_mqtt_subscribe_denied`.
    mqtt_subscribe_denied: Family<ListenerLabels, Counter> = "moat_mqtt_subscribe_denied", "SUBSCRIBE filters denied by the topic ACL", Default::default();
    /// `moat_mqtt_sessions_closed`.
    mqtt_sessions_closed: Family<ReasonLabels, Counter> = "moat_mqtt_sessions_closed", "MQTT sessions closed by moat after CONNECT, by reason (oversize packet, malformed packet, denial with on_deny: disconnect, ...)", Default::default();
    /// `moat_ocsp_response_next_update_timestamp_seconds`.
    ocsp_next_update: Family<StapleLabels, Gauge> = "moat_ocsp_response_next_update_timestamp_seconds", "nextUpdate of the OCSP response last stapled for each certificate (stays after it passes)", Default::default();
    /// `moat_ocsp_response_this_update_timestamp_seconds`.
    ocsp_this_update: Family<StapleLabels, Gauge> = "moat_ocsp_response_this_update_timestamp_seconds", "thisUpdate of the OCSP response last stapled for each certificate", Default::default();
    /// `moat_ocsp_staple_present`.
    ocsp_stapled: Family<StapleLabels, Gauge> = "moat_ocsp_staple_present", "1 while a verified, unexpired OCSP response is stapled to the certificate, else 0", Default::default();
    /// `moat_ocsp_must_staple_unmet`.
    ocsp_must_staple_unmet: Family<StapleLabels, Gauge> = "moat_ocsp_must_staple_unmet", "1 when a Must-Staple certificate has no valid OCSP response to staple", Default::default();
    /// `moat_ocsp_certificate_status`.
    ocsp_status: Family<StapleStatusLabels, Gauge> = "moat_ocsp_certificate_status", "1 for the status the responder gives the certificate (good, revoked, unknown), 0 for the others", Default::default();
    /// `moat_ocsp_refreshes`.
    ocsp_refreshes: Family<StapleResultLabels, Counter> = "moat_ocsp_refreshes", "OCSP refresh attempts by result: success, or why the response was not stapled", Default::default();
    /// `moat_ocsp_cache_write_failures`.
    ocsp_cache_write_failures: Family<StapleLabels, Counter> = "moat_ocsp_cache_write_failures", "Failed writes of the OCSP response disk cache (stapling goes on)", Default::default();
    /// `moat_acme_next_renewal_timestamp_seconds`.
    acme_next_renewal: Family<ListenerLabels, Gauge> = "moat_acme_next_renewal_timestamp_seconds", "When moat next orders each ACME listener's certificate (a renewal, or the retry after a failure)", Default::default();
    /// `moat_acme_last_success_timestamp_seconds`.
    acme_last_success: Family<ListenerLabels, Gauge> = "moat_acme_last_success_timestamp_seconds", "When an ACME certificate was last obtained and written for each listener", Default::default();
    /// `moat_acme_tls_alpn_validations`.
    acme_tls_alpn_validations: Family<ListenerLabels, Counter> = "moat_acme_tls_alpn_validations", "TLS-ALPN-01 validations answered on each listener (handshakes with ALPN acme-tls/1 given a challenge certificate, then closed)", Default::default();
    /// `moat_acme_failures`.
    acme_failures: Family<ReasonLabels, Counter> = "moat_acme_failures", "Failed ACME orders by reason: directory_unreachable, order_refused, challenge_failed, other (the current certificate stays served)", Default::default();
    /// `moat_connections_closed`.
    connections_closed: Family<ReasonLabels, Counter> = "moat_connections_closed", "Established sessions moat closed on its own, by reason (revoked or no longer trusted after a reload, certificate expired, max_connection_lifetime, kicked through the admin API)", Default::default();
    /// `moat_admin_unauthorized`.
    admin_unauthorized: Counter = "moat_admin_unauthorized", "Admin API requests refused (401) for a missing or wrong bearer token, or a missing client certificate", Default::default();
    /// `moat_admin_tls_handshake_failures`.
    admin_handshake_failed: Family<AdminReasonLabels, Counter> = "moat_admin_tls_handshake_failures", "Failed TLS handshakes on the admin endpoint (admin.tls), by reason: no_client_certificate and bad_client_certificate are clients refused for their certificate", Default::default();
    /// `moat_sessions_rechecked`.
    sessions_rechecked: Family<ListenerLabels, Counter> = "moat_sessions_rechecked", "Live sessions whose client certificate was checked again: by a reload, against the new CA bundle, CRLs and allow-list; and by tls.client_auth.revocation_recheck, against its OCSP answer and CRL distribution points", Default::default();
    /// `moat_idle_timeouts`.
    idle_timeouts: Family<ListenerLabels, Counter> = "moat_idle_timeouts", "Connections closed after no traffic for timeouts.idle (or 1.5 times the MQTT keep-alive)", Default::default();
    /// `moat_build_info`.
    build_info: Family<BuildLabels, Gauge> = "moat_build_info", "Build information; always 1", Default::default();
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates the registry with every metric family.
    pub fn new() -> Arc<Self> {
        let m = Self::register_all();
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                rustls_provider: "aws-lc-rs".to_string(),
            })
            .set(1);
        Arc::new(m)
    }

    /// Sets `moat_ready`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Sets `moat_landlock_enforced`.
    pub fn set_landlock_enforced(&self, enforced: bool) {
        self.landlock_enforced.set(i64::from(enforced));
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The Content-Type of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}
