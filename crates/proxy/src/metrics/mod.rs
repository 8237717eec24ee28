//! Prometheus metrics: their names, labels and help texts.
//!
//! All metrics live in one registry, rendered in the Prometheus text format
//! by the admin endpoint. Names follow Prometheus conventions: a `moat_`
//! prefix, base units, `_total` counters, `_timestamp_seconds` for absolute
//! times. Labels are bounded: listener names, fixed reason and direction
//! values; never a topic, a client id or an address.
//!
//! The connection path only touches pre-resolved handles
//! ([`ListenerMetrics`]), so counting is an atomic add.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels: the listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Listener name.
    pub listener: String,
}

/// Labels: listener and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Listener name.
    pub listener: String,
    /// A fixed reason value.
    pub reason: String,
}

/// Labels of `moat_tls_handshakes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// Listener name.
    pub listener: String,
    /// `success` or `failure`.
    pub result: String,
    /// Why it failed; empty for successes.
    pub reason: String,
}

/// Labels of `moat_relayed_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// Listener name.
    pub listener: String,
    /// `client_to_backend` or `backend_to_client`.
    pub direction: String,
}

/// Labels of the certificate validity gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// Listener name.
    pub listener: String,
    /// The file the certificate comes from.
    pub certificate: String,
    /// `leaf`, `chain` (an intermediate served with the leaf) or `client_ca`.
    pub role: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Serial number, lower-case hex.
    pub serial: String,
}

/// Labels of the CRL validity gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlLabels {
    /// Listener name.
    pub listener: String,
    /// The CRL file.
    pub crl: String,
    /// The CRL's issuer.
    pub issuer: String,
}

/// The metric series describing one listener's TLS state, to be replaced
/// on the next reload.
#[derive(Debug, Clone, Default)]
pub struct TlsSeries {
    certs: Vec<CertLabels>,
    crls: Vec<CrlLabels>,
}

/// Labels of `moat_certificate_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Listener name.
    pub listener: String,
    /// `success`, `failure` or `unchanged`.
    pub result: String,
}

/// Labels of `moat_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    rustls_provider: String,
}

/// Every metric moat exports.
pub struct Metrics {
    registry: Registry,
    connections_active: Family<ListenerLabels, Gauge>,
    connections: Family<ListenerLabels, Counter>,
    connections_rejected: Family<ReasonLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_duration: Family<ListenerLabels, Histogram>,
    sessions_resumed: Family<ListenerLabels, Counter>,
    backend_connect_failures: Family<ListenerLabels, Counter>,
    relayed_bytes: Family<DirectionLabels, Counter>,
    ready: Gauge,
    landlock_enforced: Gauge,
    cert_not_after: Family<CertLabels, Gauge>,
    cert_not_before: Family<CertLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Family<ListenerLabels, Gauge>,
    reload_pending: Family<ListenerLabels, Gauge>,
    client_auth_denied: Family<ReasonLabels, Counter>,
    crl_next_update: Family<CrlLabels, Gauge>,
    crl_this_update: Family<CrlLabels, Gauge>,
    mqtt_connections: Family<ProtocolLabels, Counter>,
    mqtt_connect_rejected: Family<ReasonLabels, Counter>,
    mqtt_publish_denied: Family<ListenerLabels, Counter>,
    mqtt_subscribe_denied: Family<ListenerLabels, Counter>,
    mqtt_sessions_closed: Family<ReasonLabels, Counter>,
    ocsp_next_update: Family<StapleLabels, Gauge>,
    ocsp_this_update: Family<StapleLabels, Gauge>,
    ocsp_stapled: Family<StapleLabels, Gauge>,
    ocsp_must_staple_unmet: Family<StapleLabels, Gauge>,
    ocsp_status: Family<StapleStatusLabels, Gauge>,
    ocsp_refreshes: Family<StapleResultLabels, Counter>,
    ocsp_cache_write_failures: Family<StapleLabels, Counter>,
    idle_timeouts: Family<ListenerLabels, Counter>,
}

/// Labels of the per-certificate OCSP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StapleLabels {
    /// Listener name.
    pub listener: String,
    /// The certificate file.
    pub certificate: String,
}

/// Labels of `moat_ocsp_certificate_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StapleStatusLabels {
    /// Listener name.
    pub listener: String,
    /// The certificate file.
    pub certificate: String,
    /// `good`, `revoked` or `unknown`.
    pub status: String,
}

/// Labels of `moat_ocsp_refreshes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StapleResultLabels {
    /// Listener name.
    pub listener: String,
    /// The certificate file.
    pub certificate: String,
    /// `success` or why the refresh failed.
    pub result: String,
}

/// Labels: listener and MQTT protocol version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// Listener name.
    pub listener: String,
    /// `3.1`, `3.1.1` or `5`.
    pub protocol: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn handshake_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Metrics {
    /// Creates the registry with every metric family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let connections_active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "moat_connections_active",
            "Client connections currently open (handshaking or relaying)",
            connections_active.clone(),
        );
        let connections = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_connections",
            "Client connections accepted",
            connections.clone(),
        );
        let connections_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "moat_connections_rejected",
            "Client connections closed at once because a limit was reached",
            connections_rejected.clone(),
        );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "moat_tls_handshakes",
            "TLS handshakes by result; failures carry a reason",
            handshakes.clone(),
        );
        let handshake_duration = Family::<ListenerLabels, Histogram>::new_with_constructor(
            handshake_histogram as fn() -> Histogram,
        );
        registry.register(
            "moat_tls_handshake_duration_seconds",
            "Time from accepting a connection to a completed TLS handshake",
            handshake_duration.clone(),
        );
        let sessions_resumed = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_tls_sessions_resumed",
            "TLS handshakes that resumed an earlier session",
            sessions_resumed.clone(),
        );
        let backend_connect_failures = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_backend_connect_failures",
            "Failed attempts to connect to the backend broker",
            backend_connect_failures.clone(),
        );
        let relayed_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "moat_relayed_bytes",
            "Plaintext bytes relayed between clients and the backend",
            relayed_bytes.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "moat_ready",
            "1 when every listener is bound and serving a certificate, else 0",
            ready.clone(),
        );
        let landlock_enforced = Gauge::default();
        registry.register(
            "moat_landlock_enforced",
            "1 when the kernel confines moat's file access with Landlock (sandbox.landlock), else 0",
            landlock_enforced.clone(),
        );
        let cert_not_after = Family::<CertLabels, Gauge>::default();
        registry.register(
            "moat_certificate_not_after_timestamp_seconds",
            "End of validity of each served certificate and client CA certificate (stays after expiry)",
            cert_not_after.clone(),
        );
        let cert_not_before = Family::<CertLabels, Gauge>::default();
        registry.register(
            "moat_certificate_not_before_timestamp_seconds",
            "Start of validity of each served certificate and client CA certificate",
            cert_not_before.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "moat_certificate_reloads",
            "Certificate reload attempts by result: success, failure (the previous certificates stay in service) or unchanged",
            reloads.clone(),
        );
        let last_reload_success = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "moat_certificate_last_reload_success_timestamp_seconds",
            "When the listener's certificates were last loaded successfully (start-up included)",
            last_reload_success.clone(),
        );
        let reload_pending = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "moat_certificate_reload_pending",
            "1 when the certificate files on disk differ from what is served because loading them failed",
            reload_pending.clone(),
        );
        let client_auth_denied = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "moat_client_auth_denied",
            "Client certificates refused, by reason (not on the allow-list, revoked, unknown CA, ...)",
            client_auth_denied.clone(),
        );
        let crl_next_update = Family::<CrlLabels, Gauge>::default();
        registry.register(
            "moat_crl_next_update_timestamp_seconds",
            "nextUpdate of each client-certificate CRL (stays after it passes)",
            crl_next_update.clone(),
        );
        let crl_this_update = Family::<CrlLabels, Gauge>::default();
        registry.register(
            "moat_crl_this_update_timestamp_seconds",
            "thisUpdate of each client-certificate CRL",
            crl_this_update.clone(),
        );
        let mqtt_connections = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "moat_mqtt_connections",
            "MQTT sessions accepted on MQTT-aware listeners, by protocol version",
            mqtt_connections.clone(),
        );
        let mqtt_connect_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "moat_mqtt_connect_rejected",
            "MQTT connections refused at CONNECT, by reason",
            mqtt_connect_rejected.clone(),
        );
        let mqtt_publish_denied = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_mqtt_publish_denied",
            "PUBLISH packets denied by the topic ACL",
            mqtt_publish_denied.clone(),
        );
        let mqtt_subscribe_denied = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_mqtt_subscribe_denied",
            "SUBSCRIBE filters denied by the topic ACL",
            mqtt_subscribe_denied.clone(),
        );
        let mqtt_sessions_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "moat_mqtt_sessions_closed",
            "MQTT sessions closed by moat after CONNECT, by reason (oversize packet, malformed packet, denial with on_deny: disconnect, ...)",
            mqtt_sessions_closed.clone(),
        );
        let ocsp_next_update = Family::<StapleLabels, Gauge>::default();
        registry.register(
            "moat_ocsp_response_next_update_timestamp_seconds",
            "nextUpdate of the OCSP response last stapled for each certificate (stays after it passes)",
            ocsp_next_update.clone(),
        );
        let ocsp_this_update = Family::<StapleLabels, Gauge>::default();
        registry.register(
            "moat_ocsp_response_this_update_timestamp_seconds",
            "thisUpdate of the OCSP response last stapled for each certificate",
            ocsp_this_update.clone(),
        );
        let ocsp_stapled = Family::<StapleLabels, Gauge>::default();
        registry.register(
            "moat_ocsp_staple_present",
            "1 while a verified, unexpired OCSP response is stapled to the certificate, else 0",
            ocsp_stapled.clone(),
        );
        let ocsp_must_staple_unmet = Family::<StapleLabels, Gauge>::default();
        registry.register(
            "moat_ocsp_must_staple_unmet",
            "1 when a Must-Staple certificate has no valid OCSP response to staple",
            ocsp_must_staple_unmet.clone(),
        );
        let ocsp_status = Family::<StapleStatusLabels, Gauge>::default();
        registry.register(
            "moat_ocsp_certificate_status",
            "1 for the status the responder gives the certificate (good, revoked, unknown), 0 for the others",
            ocsp_status.clone(),
        );
        let ocsp_refreshes = Family::<StapleResultLabels, Counter>::default();
        registry.register(
            "moat_ocsp_refreshes",
            "OCSP refresh attempts by result: success, or why the response was not stapled",
            ocsp_refreshes.clone(),
        );
        let ocsp_cache_write_failures = Family::<StapleLabels, Counter>::default();
        registry.register(
            "moat_ocsp_cache_write_failures",
            "Failed writes of the OCSP response disk cache (stapling goes on)",
            ocsp_cache_write_failures.clone(),
        );
        let idle_timeouts = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "moat_idle_timeouts",
            "Connections closed after no traffic for timeouts.idle (or 1.5 times the MQTT keep-alive)",
            idle_timeouts.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "moat_build_info",
            "Build information; always 1",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                rustls_provider: "aws-lc-rs".to_string(),
            })
            .set(1);
        Arc::new(Self {
            registry,
            connections_active,
            connections,
            connections_rejected,
            handshakes,
            handshake_duration,
            sessions_resumed,
            backend_connect_failures,
            relayed_bytes,
            ready,
            landlock_enforced,
            cert_not_after,
            cert_not_before,
            reloads,
            last_reload_success,
            reload_pending,
            client_auth_denied,
            crl_next_update,
            crl_this_update,
            mqtt_connections,
            mqtt_connect_rejected,
            mqtt_publish_denied,
            mqtt_subscribe_denied,
            mqtt_sessions_closed,
            ocsp_next_update,
            ocsp_this_update,
            ocsp_stapled,
            ocsp_must_staple_unmet,
            ocsp_status,
            ocsp_refreshes,
            ocsp_cache_write_failures,
            idle_timeouts,
        })
    }

    /// Handles for one listener's hot path. The failure and rejection
    /// series for every known reason are created at zero.
    pub fn listener(
        self: &Arc<Self>,
        name: &str,
        failure_reasons: &[&str],
        reject_reasons: &[&str],
    ) -> ListenerMetrics {
        let l = ListenerLabels {
            listener: name.to_string(),
        };
        let dir = |d: &str| DirectionLabels {
            listener: name.to_string(),
            direction: d.to_string(),
        };
        let handshake_ok = HandshakeLabels {
            listener: name.to_string(),
            result: "success".to_string(),
            reason: String::new(),
        };
        // get_or_create_owned: a borrowed handle would hold the family's lock.
        let active = self.connections_active.get_or_create_owned(&l);
        let accepted = self.connections.get_or_create_owned(&l);
        let handshake_ok = self.handshakes.get_or_create_owned(&handshake_ok);
        let handshake_duration = self.handshake_duration.get_or_create_owned(&l);
        let resumed = self.sessions_resumed.get_or_create_owned(&l);
        let backend_failures = self.backend_connect_failures.get_or_create_owned(&l);
        let to_backend = self
            .relayed_bytes
            .get_or_create_owned(&dir("client_to_backend"));
        let idle_timeouts = self.idle_timeouts.get_or_create_owned(&l);
        let to_client = self
            .relayed_bytes
            .get_or_create_owned(&dir("backend_to_client"));
        let mqtt = std::sync::Arc::new(crate::mqtt::guard::GuardCounters {
            publish_denied: self.mqtt_publish_denied.get_or_create_owned(&l),
            subscribe_denied: self.mqtt_subscribe_denied.get_or_create_owned(&l),
        });
        let m = ListenerMetrics {
            name: name.to_string(),
            mqtt,
            active,
            accepted,
            handshake_ok,
            handshake_duration,
            resumed,
            backend_failures,
            to_backend,
            to_client,
            idle_timeouts,
            all: self.clone(),
        };
        for r in failure_reasons {
            m.handshake_failures(r);
        }
        for r in reject_reasons {
            m.rejections(r);
        }
        for r in crate::tls::client_auth::DENIAL_REASONS {
            m.client_auth_denials(r);
        }
        for r in crate::mqtt::CONNECT_REJECT_REASONS {
            let _ = self
                .mqtt_connect_rejected
                .get_or_create_owned(&ReasonLabels {
                    listener: name.to_string(),
                    reason: r.to_string(),
                });
        }
        for r in crate::mqtt::SESSION_CLOSE_REASONS {
            let _ = self
                .mqtt_sessions_closed
                .get_or_create_owned(&ReasonLabels {
                    listener: name.to_string(),
                    reason: r.to_string(),
                });
        }
        for result in ["success", "failure", "unchanged"] {
            let _ = self.reloads.get_or_create_owned(&ResultLabels {
                listener: name.to_string(),
                result: result.to_string(),
            });
        }
        m
    }

    /// Exports the validity of every certificate a listener serves and
    /// trusts, and of its CRLs, replacing the series of `previous`.
    pub fn set_tls_state(
        &self,
        listener: &str,
        tls: &crate::tls::ListenerTls,
        previous: &TlsSeries,
    ) -> TlsSeries {
        for labels in &previous.certs {
            self.cert_not_after.remove(labels);
            self.cert_not_before.remove(labels);
        }
        for labels in &previous.crls {
            self.crl_next_update.remove(labels);
            self.crl_this_update.remove(labels);
        }
        let mut series = TlsSeries::default();
        let mut add = |path: &std::path::Path, role: &str, c: &crate::tls::certs::CertInfo| {
            let labels = CertLabels {
                listener: listener.to_string(),
                certificate: path.display().to_string(),
                role: role.to_string(),
                subject: c.subject.clone(),
                serial: c.serial.clone(),
            };
            self.cert_not_after
                .get_or_create_owned(&labels)
                .set(c.not_after);
            self.cert_not_before
                .get_or_create_owned(&labels)
                .set(c.not_before);
            series.certs.push(labels);
        };
        for cert in &tls.certs {
            for (i, c) in cert.chain.iter().enumerate() {
                add(&cert.cert_path, if i == 0 { "leaf" } else { "chain" }, c);
            }
        }
        if let Some(path) = &tls.client_ca_path {
            for c in &tls.client_cas {
                add(path, "client_ca", c);
            }
        }
        for crl in &tls.crls {
            let labels = CrlLabels {
                listener: listener.to_string(),
                crl: crl.path.display().to_string(),
                issuer: crl.issuer.clone(),
            };
            if let Some(next) = crl.next_update {
                self.crl_next_update.get_or_create_owned(&labels).set(next);
            }
            self.crl_this_update
                .get_or_create_owned(&labels)
                .set(crl.this_update);
            series.crls.push(labels);
        }
        series
    }

    /// Exports the stapling state of one certificate.
    pub fn set_staple(
        &self,
        listener: &str,
        certificate: &str,
        status: &moat_stapling::StapleStatus,
    ) {
        let l = StapleLabels {
            listener: listener.to_string(),
            certificate: certificate.to_string(),
        };
        self.ocsp_stapled
            .get_or_create_owned(&l)
            .set(i64::from(status.staple.is_some()));
        self.ocsp_must_staple_unmet
            .get_or_create_owned(&l)
            .set(i64::from(status.must_staple_unmet()));
        let Some(staple) = &status.staple else { return };
        let secs = crate::tls::certs::unix;
        self.ocsp_next_update
            .get_or_create_owned(&l)
            .set(secs(staple.next_update()));
        self.ocsp_this_update
            .get_or_create_owned(&l)
            .set(secs(staple.this_update()));
        let current = match staple.cert_status() {
            moat_stapling::CertStatus::Good => "good",
            moat_stapling::CertStatus::Revoked { .. } => "revoked",
            _ => "unknown",
        };
        for s in ["good", "revoked", "unknown"] {
            self.ocsp_status
                .get_or_create_owned(&StapleStatusLabels {
                    listener: listener.to_string(),
                    certificate: certificate.to_string(),
                    status: s.to_string(),
                })
                .set(i64::from(s == current));
        }
    }

    /// Counts an OCSP refresh by result.
    pub fn ocsp_refresh(&self, listener: &str, certificate: &str, result: &str) {
        self.ocsp_refreshes
            .get_or_create_owned(&StapleResultLabels {
                listener: listener.to_string(),
                certificate: certificate.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a failed OCSP cache write.
    pub fn ocsp_cache_write_failed(&self, listener: &str, certificate: &str) {
        self.ocsp_cache_write_failures
            .get_or_create_owned(&StapleLabels {
                listener: listener.to_string(),
                certificate: certificate.to_string(),
            })
            .inc();
    }

    /// Counts a reload attempt.
    pub fn reload_result(&self, listener: &str, result: &str) {
        self.reloads
            .get_or_create_owned(&ResultLabels {
                listener: listener.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Records a successful load at `unix_secs`, and that nothing is pending.
    pub fn reload_succeeded(&self, listener: &str, unix_secs: i64) {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        self.last_reload_success
            .get_or_create_owned(&l)
            .set(unix_secs);
        self.reload_pending.get_or_create_owned(&l).set(0);
    }

    /// Sets whether a listener has files on disk it could not load.
    pub fn set_reload_pending(&self, listener: &str, pending: bool) {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        self.reload_pending
            .get_or_create_owned(&l)
            .set(i64::from(pending));
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

/// Pre-resolved metric handles for one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    name: String,
    /// `moat_connections_active`.
    pub active: Gauge,
    /// `moat_connections_total`.
    pub accepted: Counter,
    /// `moat_tls_handshakes_total{result="success"}`.
    pub handshake_ok: Counter,
    /// `moat_tls_handshake_duration_seconds`.
    pub handshake_duration: Histogram,
    /// `moat_tls_sessions_resumed_total`.
    pub resumed: Counter,
    /// `moat_backend_connect_failures_total`.
    pub backend_failures: Counter,
    /// `moat_relayed_bytes_total{direction="client_to_backend"}`.
    pub to_backend: Counter,
    /// `moat_relayed_bytes_total{direction="backend_to_client"}`.
    pub to_client: Counter,
    /// `moat_idle_timeouts_total`.
    pub idle_timeouts: Counter,
    /// MQTT guard counters (denied publishes and subscriptions).
    pub mqtt: Arc<crate::mqtt::guard::GuardCounters>,
    all: Arc<Metrics>,
}

impl ListenerMetrics {
    fn handshake_failures(&self, reason: &str) -> Counter {
        self.all.handshakes.get_or_create_owned(&HandshakeLabels {
            listener: self.name.clone(),
            result: "failure".to_string(),
            reason: reason.to_string(),
        })
    }

    fn rejections(&self, reason: &str) -> Counter {
        self.all
            .connections_rejected
            .get_or_create_owned(&ReasonLabels {
                listener: self.name.clone(),
                reason: reason.to_string(),
            })
    }

    fn client_auth_denials(&self, reason: &str) -> Counter {
        self.all
            .client_auth_denied
            .get_or_create_owned(&ReasonLabels {
                listener: self.name.clone(),
                reason: reason.to_string(),
            })
    }

    /// Counts an MQTT session accepted at CONNECT.
    pub fn mqtt_connected(&self, protocol: &str) {
        self.all
            .mqtt_connections
            .get_or_create_owned(&ProtocolLabels {
                listener: self.name.clone(),
                protocol: protocol.to_string(),
            })
            .inc();
    }

    /// Counts a CONNECT refused.
    pub fn mqtt_connect_rejected(&self, reason: &str) {
        self.all
            .mqtt_connect_rejected
            .get_or_create_owned(&ReasonLabels {
                listener: self.name.clone(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a session closed by the guard.
    pub fn mqtt_session_closed(&self, reason: &str) {
        self.all
            .mqtt_sessions_closed
            .get_or_create_owned(&ReasonLabels {
                listener: self.name.clone(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refused client certificate.
    pub fn client_auth_denied(&self, reason: &str) {
        self.client_auth_denials(reason).inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures(reason).inc();
    }

    /// Counts a connection refused by a limit.
    pub fn rejected(&self, reason: &str) {
        self.rejections(reason).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_follows_prometheus_naming() {
        let m = Metrics::new();
        let l = m.listener("mqtts", &["timeout", "other"], &["max_connections"]);
        l.accepted.inc();
        l.handshake_failed("timeout");
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
