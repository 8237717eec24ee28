//! Who connected and how: what the handshake negotiated, the verified
//! client certificate's identity, the one log line that says so, and what
//! the PROXY v2 header tells the broker about it.

use tracing::info;

use crate::proxy_protocol;
use crate::tls::client_auth::PeerIdentity;
use crate::tls::policy::{openssl_suite_name, suite_name};
use crate::tls::ListenerTls;

/// What a finished handshake negotiated, and who the client is.
pub struct ConnDetails {
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::SupportedCipherSuite>,
    group: &'static str,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    /// The session was resumed (no full handshake).
    pub resumed: bool,
    /// The verified client certificate, if one was presented.
    pub identity: Option<PeerIdentity>,
}

impl ConnDetails {
    /// What `conn` negotiated; `sni` is the name the client asked for.
    pub fn of(conn: &rustls::CommonState, sni: Option<String>) -> Self {
        Self {
            version: conn.protocol_version(),
            suite: conn.negotiated_cipher_suite(),
            group: conn
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
                .unwrap_or("none"),
            sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            identity: conn.peer_certificates().and_then(PeerIdentity::from_chain),
        }
    }

    /// The one line per connection that says who connected and how.
    pub fn log(&self) {
        let version = self.version.and_then(|v| v.as_str()).unwrap_or("unknown");
        let suite = self.suite.map(suite_name).unwrap_or("unknown");
        let sni = self.sni.as_deref().unwrap_or("");
        match &self.identity {
            Some(id) => info!(
                tls.version = version,
                tls.cipher = suite,
                tls.group = self.group,
                tls.sni = %sni,
                tls.resumed = self.resumed,
                client.subject = %id.subject,
                client.cn = id.common_name.as_deref().unwrap_or(""),
                client.sha256 = %id.sha256,
                "client authenticated"
            ),
            None => info!(
                tls.version = version,
                tls.cipher = suite,
                tls.group = self.group,
                tls.sni = %sni,
                tls.resumed = self.resumed,
                "client connected"
            ),
        }
    }

    /// What the PROXY v2 header says about this connection.
    pub fn proxy_details(&self, state: &ListenerTls) -> proxy_protocol::TlsDetails {
        // The certificate served: the first one covering the SNI, else the
        // default. (rustls does not report which one it chose.)
        let served = self
            .sni
            .as_deref()
            .and_then(|n| state.certs.iter().find(|c| c.leaf().covers(n)))
            .or(state.certs.first());
        let (server_sig_alg, server_key_alg) = served
            .map(|c| proxy_protocol::haproxy_alg_names(c.leaf()))
            .unwrap_or_default();
        proxy_protocol::TlsDetails {
            version: self
                .version
                .map(proxy_protocol::openssl_version_name)
                .unwrap_or("unknown")
                .to_string(),
            cipher: self
                .suite
                .map(openssl_suite_name)
                .unwrap_or("unknown")
                .to_string(),
            sni: self.sni.clone(),
            alpn: self.alpn.clone(),
            client_cert: self
                .identity
                .as_ref()
                .map(|id| proxy_protocol::ClientCertDetails {
                    common_name: id.common_name.clone(),
                }),
            resumed: self.resumed,
            server_sig_alg,
            server_key_alg,
        }
    }
}
