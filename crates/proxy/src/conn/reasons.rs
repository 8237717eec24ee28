//! Why a connection ended before its session: refused at admission, or its
//! TLS handshake failed; and what an OCSP check of its client certificate
//! found. Each is a closed set of metric label values, and
//! a handshake error is classified into one.

use std::io;

use crate::metrics::reason::reasons;

reasons! {
    /// Why a connection was closed at once (`moat_connections_rejected_total`).
    pub enum RejectReason {
        /// The listener has `max_connections` open.
        MaxConnections => "max_connections",
        /// The process is out of file descriptors or memory.
        ResourceExhaustion => "resource_exhaustion",
        /// `limits.max_handshakes` handshakes are in progress.
        HandshakeLimit => "handshake_limit",
        /// The source address has `per_ip_connections` open.
        PerIpConnections => "per_ip_connections",
        /// The source address opens connections faster than `per_ip_rate`.
        PerIpRate => "per_ip_rate",
        /// The source address, or the verified identity, is banned
        /// (`POST /bans`).
        Banned => "banned",
    }
}

reasons! {
    /// Why a TLS handshake failed (`moat_tls_handshakes_total{result="failure"}`).
    pub enum HandshakeFailure {
        /// Not finished within `timeouts.handshake`.
        Timeout => "timeout",
        /// A client certificate was required and none was sent.
        NoClientCertificate => "no_client_certificate",
        /// The client certificate was refused.
        BadClientCertificate => "bad_client_certificate",
        /// The client sent an alert.
        ClientAlert => "client_alert",
        /// No cipher suite in common.
        NoSharedCipher => "no_shared_cipher",
        /// No key exchange group in common.
        NoSharedGroup => "no_shared_group",
        /// No signature scheme in common.
        NoSharedSignatureScheme => "no_shared_signature_scheme",
        /// The client speaks only TLS versions moat refuses.
        ProtocolVersion => "protocol_version",
        /// Another incompatibility.
        IncompatibleClient => "incompatible_client",
        /// The bytes are not TLS.
        NotTls => "not_tls",
        /// The client broke the protocol.
        ProtocolError => "protocol_error",
        /// No ALPN protocol in common.
        NoApplicationProtocol => "no_application_protocol",
        /// No certificate for the name asked for: an ACME entry whose
        /// certificate is not obtained yet.
        NoCertificate => "no_certificate",
        /// ALPN `acme-tls/1` for a name with no ACME challenge in progress.
        AcmeNoChallenge => "acme_no_challenge",
        /// Another TLS error.
        Other => "other",
        /// The client closed the connection.
        ClientClosed => "client_closed",
        /// The client reset the connection.
        ClientReset => "client_reset",
        /// Another I/O error.
        IoError => "io_error",
    }
}

reasons! {
    /// What a check found (`moat_client_ocsp_checks_total{result}`).
    pub enum CheckResult {
        /// Not revoked.
        Good => "good",
        /// Revoked.
        Revoked => "revoked",
        /// The responder does not know the certificate.
        Unknown => "unknown",
        /// No verified answer (down, timeout, HTTP error, garbage, bad
        /// signature).
        ResponderError => "responder_error",
        /// The certificate names no responder.
        NoResponder => "no_responder",
    }
}

reasons! {
    /// What a query sent to a responder brought
    /// (`moat_client_ocsp_queries_total{result}`).
    pub enum QueryResult {
        /// A verified "good".
        Good => "good",
        /// A verified "revoked".
        Revoked => "revoked",
        /// A verified "unknown".
        Unknown => "unknown",
        /// No verified answer.
        Error => "error",
    }
}

reasons! {
    /// What a check of a device certificate's CRL distribution points
    /// found (`moat_client_crl_checks_total{result}`).
    pub enum CrlCheck {
        /// No CRL it names revokes it.
        Good => "good",
        /// Revoked.
        Revoked => "revoked",
        /// A CRL could not be fetched, did not verify, or is stale.
        Unavailable => "unavailable",
        /// The certificate names no HTTP distribution point.
        NoDistributionPoint => "no_distribution_point",
    }
}

reasons! {
    /// How a CRL download went (`moat_client_crl_fetches_total{result}`).
    pub enum CrlFetch {
        /// A CRL that verified.
        Ok => "ok",
        /// No usable CRL (unreachable, HTTP error, garbage, bad signature).
        Error => "error",
    }
}

impl HandshakeFailure {
    /// The reason for a failed handshake's error.
    pub fn of(e: &io::Error) -> Self {
        use rustls::{Error as E, PeerIncompatible as P};
        if e.get_ref()
            .is_some_and(|i| i.is::<crate::tls::acme_alpn::NoChallenge>())
        {
            return Self::AcmeNoChallenge;
        }
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        match inner {
            // What rustls says when the resolver has nothing for the name
            // (a pending ACME entry); the e2e test of a first start sees it.
            Some(E::General(m)) if m.starts_with("no server certificate") => Self::NoCertificate,
            Some(E::NoCertificatesPresented) => Self::NoClientCertificate,
            Some(E::InvalidCertificate(_)) => Self::BadClientCertificate,
            Some(E::AlertReceived(_)) => Self::ClientAlert,
            Some(E::PeerIncompatible(p)) => match p {
                P::NoCipherSuitesInCommon => Self::NoSharedCipher,
                P::NoKxGroupsInCommon => Self::NoSharedGroup,
                P::NoSignatureSchemesInCommon => Self::NoSharedSignatureScheme,
                // A hello without signature_algorithms comes from a client that
                // speaks only TLS 1.0 or 1.1.
                P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::Tls13RequiredForQuic
                | P::SupportedVersionsExtensionRequired
                | P::SignatureAlgorithmsExtensionRequired => Self::ProtocolVersion,
                _ => Self::IncompatibleClient,
            },
            Some(E::InvalidMessage(_)) => Self::NotTls,
            Some(E::PeerMisbehaved(_)) => Self::ProtocolError,
            Some(E::NoApplicationProtocol) => Self::NoApplicationProtocol,
            Some(_) => Self::Other,
            None => match e.kind() {
                io::ErrorKind::UnexpectedEof => Self::ClientClosed,
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Self::ClientReset,
                _ => Self::IoError,
            },
        }
    }
}
