//! The label sets of moat's metrics. Labels are bounded: listener names,
//! fixed reason and direction values, certificate files and subjects,
//! backend nodes (as configured, or found by `discover:`, whose series
//! leave with the node); never a topic, a client id or a client address.

use prometheus_client::encoding::EncodeLabelSet;

/// Labels: the listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Listener name.
    pub listener: String,
}

/// Labels: the listener and one node of its backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Listener name.
    pub listener: String,
    /// The node's address, as configured or discovered (`ip:port`).
    pub backend: String,
}

/// Labels: one backend entry with `discover:`, by the name it looks up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    /// Listener name.
    pub listener: String,
    /// The entry's address (`host:port` or SRV name), as configured.
    pub name: String,
}

/// Labels: one node of a listener's backend and a health check result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendCheckLabels {
    /// Listener name.
    pub listener: String,
    /// The node's address, as configured.
    pub backend: String,
    /// A fixed result value.
    pub result: String,
}

/// Labels: listener and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Listener name.
    pub listener: String,
    /// A fixed reason value.
    pub reason: String,
}

/// Labels: a reason only (the admin endpoint's series).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminReasonLabels {
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

/// Labels of `moat_certificate_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Listener name.
    pub listener: String,
    /// The result: `success`, `failure` or `unchanged` for reloads; what an
    /// OCSP check or query of a device certificate found.
    pub result: String,
}

/// Labels of `moat_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// moat's version.
    pub version: String,
    /// The TLS crypto provider.
    pub rustls_provider: String,
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

/// Labels: listener and the transport a session used.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// Listener name.
    pub listener: String,
    /// `mqtt` (raw MQTT on TLS) or `websocket`.
    pub transport: String,
}
