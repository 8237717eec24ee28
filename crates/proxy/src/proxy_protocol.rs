//! The PROXY protocol header moat sends to the backend before the MQTT
//! bytes, so that the broker sees the real client address and, with v2, the
//! TLS details and the verified device identity.
//!
//! The v2 layout is HAProxy's (`send-proxy-v2-ssl-cn` and its
//! `ssl-cipher,cert-sig,cert-key` options), which Mosquitto 2.1, EMQX,
//! HiveMQ and VerneMQ read: a `PP2_TYPE_SSL` TLV whose client flags say TLS
//! was used and whether a client certificate was presented on this
//! connection or on the session it resumed, whose `verify` field is 0 when
//! that certificate was verified, and whose sub-TLVs carry the TLS version,
//! the client certificate's common name, the cipher, and the signature and
//! key algorithms of the certificate moat presented; plus
//! `PP2_TYPE_AUTHORITY` (the SNI) and `PP2_TYPE_ALPN`.
//!
//! Header framing and addresses come from the `ppp` crate; the body of the
//! SSL TLV is a small nested structure built here. Pure: no I/O.

use std::net::SocketAddr;

use ppp::v2;

use crate::config::ProxyProtocol;

/// `PP2_CLIENT_SSL`: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: it presented a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`: it presented one on the TLS session.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// TLS details of the client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsDetails {
    /// `TLSv1.3` or `TLSv1.2`, as OpenSSL names them.
    pub version: String,
    /// The cipher suite's OpenSSL name.
    pub cipher: String,
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The verified client certificate, if one was presented.
    pub client_cert: Option<ClientCertDetails>,
    /// Whether the session was resumed (the certificate came with it).
    pub resumed: bool,
    /// Signature algorithm of moat's own certificate, e.g. `ecdsa-with-SHA256`.
    pub server_sig_alg: String,
    /// Key algorithm of moat's own certificate, e.g. `EC256`, `RSA2048`.
    pub server_key_alg: String,
}

/// What the backend learns about the client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertDetails {
    /// The subject's common name.
    pub common_name: Option<String>,
}

/// Encodes the header for `mode`; `None` for [`ProxyProtocol::None`].
pub fn encode(
    mode: ProxyProtocol,
    client: SocketAddr,
    local: SocketAddr,
    tls: &TlsDetails,
) -> Option<Vec<u8>> {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    let (client, local) = canonical_pair(client, local);
    match mode {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(v1(client, local).into_bytes()),
        ProxyProtocol::V2 => Some(v2(client, local, tls)),
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn canonical_pair(client: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (c, l) = (canonical(client), canonical(local));
    if c.is_ipv4() == l.is_ipv4() {
        (c, l)
    } else {
        (client, local)
    }
}

fn v1(client: SocketAddr, local: SocketAddr) -> String {
    let addresses = match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V4(l)) => {
            ppp::v1::Addresses::new_tcp4(*c.ip(), *l.ip(), c.port(), l.port())
        }
        (SocketAddr::V6(c), SocketAddr::V6(l)) => {
            ppp::v1::Addresses::new_tcp6(*c.ip(), *l.ip(), c.port(), l.port())
        }
        _ => ppp::v1::Addresses::Unknown,
    };
    addresses.to_string()
}

fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Values here are short strings; longer ones cannot occur (a common name
    // is at most 64 characters), but clamp rather than corrupt the header.
    let len = value.len().min(u16::MAX as usize);
    out.push(kind);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&value[..len]);
}

/// The value of the `PP2_TYPE_SSL` TLV.
pub fn ssl_tlv_value(tls: &TlsDetails) -> Vec<u8> {
    let mut client = PP2_CLIENT_SSL;
    if tls.client_cert.is_some() {
        client |= PP2_CLIENT_CERT_SESS;
        if !tls.resumed {
            client |= PP2_CLIENT_CERT_CONN;
        }
    }
    // 0 means "a certificate was presented and verified"; moat never
    // admits an unverified one, so anything else means "none presented".
    let verify: u32 = if tls.client_cert.is_some() { 0 } else { 1 };
    let mut out = Vec::with_capacity(64);
    out.push(client);
    out.extend_from_slice(&verify.to_be_bytes());
    push_tlv(&mut out, v2::Type::SSLVersion as u8, tls.version.as_bytes());
    if let Some(cn) = tls
        .client_cert
        .as_ref()
        .and_then(|c| c.common_name.as_deref())
    {
        push_tlv(&mut out, v2::Type::SSLCommonName as u8, cn.as_bytes());
    }
    push_tlv(&mut out, v2::Type::SSLCipher as u8, tls.cipher.as_bytes());
    push_tlv(
        &mut out,
        v2::Type::SSLSignatureAlgorithm as u8,
        tls.server_sig_alg.as_bytes(),
    );
    push_tlv(
        &mut out,
        v2::Type::SSLKeyAlgorithm as u8,
        tls.server_key_alg.as_bytes(),
    );
    out
}

fn v2(client: SocketAddr, local: SocketAddr, tls: &TlsDetails) -> Vec<u8> {
    let builder = v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (client, local),
    );
    let ssl = ssl_tlv_value(tls);
    let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
    if let Some(alpn) = &tls.alpn {
        tlvs.push((v2::Type::ALPN as u8, alpn));
    }
    if let Some(sni) = &tls.sni {
        tlvs.push((v2::Type::Authority as u8, sni.as_bytes()));
    }
    tlvs.push((v2::Type::SSL as u8, &ssl));
    let built = tlvs
        .into_iter()
        .try_fold(builder, |b, (kind, value)| b.write_tlv(kind, value))
        .and_then(|b| b.build());
    // Writing into a Vec cannot fail, and the lengths fit (each TLV is well
    // under 64 KiB); fall back to a LOCAL header rather than panic.
    built.unwrap_or_else(|_| {
        v2::Builder::new(v2::Version::Two | v2::Command::Local, 0)
            .build()
            .unwrap_or_default()
    })
}

/// HAProxy's names for a certificate's signature and key algorithms
/// (`ecdsa-with-SHA256`, `RSA-SHA256`; `EC256`, `RSA2048`, `ED25519`).
pub fn haproxy_alg_names(cert: &crate::tls::certs::CertInfo) -> (String, String) {
    let sig = match cert.signature_algorithm.as_str() {
        "sha1WithRSAEncryption" => "RSA-SHA1",
        "sha256WithRSAEncryption" => "RSA-SHA256",
        "sha384WithRSAEncryption" => "RSA-SHA384",
        "sha512WithRSAEncryption" => "RSA-SHA512",
        "rsassaPss" => "RSASSA-PSS",
        "Ed25519" => "ED25519",
        other => other,
    };
    let key = match cert.key_type.as_str() {
        "RSA" => format!("RSA{}", cert.key_bits),
        t if t.starts_with("ECDSA") => format!("EC{}", cert.key_bits),
        "Ed25519" => "ED25519".to_string(),
        other => other.to_string(),
    };
    (sig.to_string(), key)
}

/// How OpenSSL names a protocol version.
pub fn openssl_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> TlsDetails {
        TlsDetails {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            sni: Some("mqtt.example.com".into()),
            alpn: Some(b"mqtt".to_vec()),
            client_cert: Some(ClientCertDetails {
                common_name: Some("device-1".into()),
            }),
            resumed: false,
            server_sig_alg: "ecdsa-with-SHA256".into(),
            server_key_alg: "EC256".into(),
        }
    }

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "192.0.2.7:50000".parse().unwrap(),
            "127.0.0.1:8883".parse().unwrap(),
        )
    }

    #[test]
    fn v1_text() {
        let (c, l) = addrs();
        let h = encode(ProxyProtocol::V1, c, l, &details()).unwrap();
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 50000 8883\r\n");
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:50000".parse().unwrap();
        let h = encode(ProxyProtocol::V1, mapped, l, &details()).unwrap();
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 50000 8883\r\n");
        assert!(encode(ProxyProtocol::None, c, l, &details()).is_none());
    }

    #[test]
    fn v2_parses_back_with_every_tlv() {
        let (c, l) = addrs();
        let bytes = encode(ProxyProtocol::V2, c, l, &details()).unwrap();
        let header = v2::Header::try_from(bytes.as_slice()).expect("ppp parses it");
        assert_eq!(header.addresses, v2::Addresses::from((c, l)));
        let tlvs: Vec<_> = header.tlvs().collect::<Result<_, _>>().expect("tlvs");
        assert_eq!(tlvs[0].kind, v2::Type::ALPN as u8);
        assert_eq!(&*tlvs[0].value, b"mqtt");
        assert_eq!(tlvs[1].kind, v2::Type::Authority as u8);
        assert_eq!(&*tlvs[1].value, b"mqtt.example.com");
        assert_eq!(tlvs[2].kind, v2::Type::SSL as u8);
        let ssl = &tlvs[2].value;
        assert_eq!(
            ssl[0],
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        );
        assert_eq!(&ssl[1..5], &[0, 0, 0, 0]);
        // First sub-TLV: the version.
        assert_eq!(ssl[5], 0x21);
        assert_eq!(u16::from_be_bytes([ssl[6], ssl[7]]), 7);
        assert_eq!(&ssl[8..15], b"TLSv1.3");
        assert_eq!(ssl[15], 0x22);
        assert_eq!(&ssl[18..26], b"device-1");
    }

    #[test]
    fn flags_for_resumed_and_anonymous_clients() {
        let mut d = details();
        d.resumed = true;
        let v = ssl_tlv_value(&d);
        assert_eq!(v[0], PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS);
        d.client_cert = None;
        let v = ssl_tlv_value(&d);
        assert_eq!(v[0], PP2_CLIENT_SSL);
        assert_eq!(&v[1..5], &[0, 0, 0, 1]);
        assert!(
            !sub_tlv_types(&v).contains(&0x22),
            "no CN without a certificate"
        );
        assert_eq!(sub_tlv_types(&v), [0x21, 0x23, 0x24, 0x25]);
    }

    fn sub_tlv_types(ssl: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut rest = &ssl[5..];
        while rest.len() >= 3 {
            let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            types.push(rest[0]);
            rest = &rest[3 + len..];
        }
        types
    }
}
