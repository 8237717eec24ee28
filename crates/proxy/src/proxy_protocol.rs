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
//!
//! Every value is sent byte for byte or not at all, never cut, and no value
//! can displace the addresses:
//!
//! - Text values (SNI, common name, version, cipher, algorithm names) are
//!   left out when empty, longer than [`MAX_NAME_LEN`] (the common name:
//!   [`MAX_COMMON_NAME_LEN`]) or containing a control character. A broker
//!   written in C may read a value as a NUL-terminated string or a line, so
//!   a common name such as `admin\0.device-7` could become `admin`; a value
//!   cleaned or cut would be a different identity, so it is dropped instead.
//!   The client flags and `verify` still say a verified certificate was
//!   presented; the broker just gets no name for it.
//! - ALPN is opaque bytes (RFC 7301) and is sent when 1 to 255 bytes long,
//!   the TLS limit; moat only negotiates protocols from its configuration.
//!
//! With these limits the whole header stays far below the 64 KiB its
//! 16-bit length allows (checked at compile time below), so no combination
//! of long values can overflow the SSL TLV or the header, or push out the
//! client address. Nothing dropped is logged here (the values are the
//! device's identity, and this module does no I/O).

use std::net::SocketAddr;

use ppp::v2;

use crate::config::ProxyProtocol;

/// `PP2_CLIENT_SSL`: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: it presented a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`: it presented one on the TLS session.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// Longest SNI, ALPN protocol, TLS version, cipher or algorithm name sent:
/// the TLS limit for a DNS name and an ALPN protocol, and far above any
/// OpenSSL name. A longer value is left out.
pub const MAX_NAME_LEN: usize = 255;

/// Longest client certificate common name sent: X.509's upper bound is 64
/// characters (at most 256 bytes of UTF-8), with room for certificates that
/// exceed it. A longer one is left out.
pub const MAX_COMMON_NAME_LEN: usize = 1024;

/// The largest v2 payload (address block and TLVs) these limits allow: IPv6
/// addresses, ALPN and AUTHORITY, and the SSL TLV with its five sub-TLVs.
const MAX_V2_PAYLOAD: usize =
    36 + 2 * (3 + MAX_NAME_LEN) + (3 + 5) + 4 * (3 + MAX_NAME_LEN) + (3 + MAX_COMMON_NAME_LEN);
const _: () = assert!(MAX_V2_PAYLOAD <= u16::MAX as usize);

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

/// The header of a connection the proxy makes for itself (a health
/// check): v1 `UNKNOWN`, v2 `LOCAL`; `None` for [`ProxyProtocol::None`].
pub fn encode_local(mode: ProxyProtocol) -> Option<Vec<u8>> {
    match mode {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(b"PROXY UNKNOWN\r\n".to_vec()),
        ProxyProtocol::V2 => Some(
            v2::Builder::new(v2::Version::Two | v2::Command::Local, 0)
                .build()
                .unwrap_or_default(),
        ),
    }
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

/// The bytes of a text value, if it may be sent (see the module docs).
fn sendable(text: &str, max: usize) -> Option<&[u8]> {
    let ok = !text.is_empty() && text.len() <= max && !text.chars().any(char::is_control);
    ok.then_some(text.as_bytes())
}

/// The ALPN protocol, if it may be sent.
fn sendable_alpn(alpn: Option<&[u8]>) -> Option<&[u8]> {
    alpn.filter(|a| (1..=MAX_NAME_LEN).contains(&a.len()))
}

/// Appends a TLV whose value the caller has bounded (see `sendable`).
fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Unreachable with bounded values; a value that did not fit would be
    // left out, never cut.
    let Ok(len) = u16::try_from(value.len()) else {
        return;
    };
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Appends a text sub-TLV when the value may be sent.
fn push_text(out: &mut Vec<u8>, kind: u8, text: &str, max: usize) {
    if let Some(value) = sendable(text, max) {
        push_tlv(out, kind, value);
    }
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
    push_text(
        &mut out,
        v2::Type::SSLVersion as u8,
        &tls.version,
        MAX_NAME_LEN,
    );
    if let Some(cn) = tls
        .client_cert
        .as_ref()
        .and_then(|c| c.common_name.as_deref())
    {
        push_text(
            &mut out,
            v2::Type::SSLCommonName as u8,
            cn,
            MAX_COMMON_NAME_LEN,
        );
    }
    push_text(
        &mut out,
        v2::Type::SSLCipher as u8,
        &tls.cipher,
        MAX_NAME_LEN,
    );
    push_text(
        &mut out,
        v2::Type::SSLSignatureAlgorithm as u8,
        &tls.server_sig_alg,
        MAX_NAME_LEN,
    );
    push_text(
        &mut out,
        v2::Type::SSLKeyAlgorithm as u8,
        &tls.server_key_alg,
        MAX_NAME_LEN,
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
    if let Some(alpn) = sendable_alpn(tls.alpn.as_deref()) {
        tlvs.push((v2::Type::ALPN as u8, alpn));
    }
    if let Some(sni) = tls.sni.as_deref().and_then(|s| sendable(s, MAX_NAME_LEN)) {
        tlvs.push((v2::Type::Authority as u8, sni));
    }
    tlvs.push((v2::Type::SSL as u8, &ssl));
    let built = tlvs
        .into_iter()
        .try_fold(builder, |b, (kind, value)| b.write_tlv(kind, value))
        .and_then(|b| b.build());
    // Writing into a Vec cannot fail, and the payload is at most
    // MAX_V2_PAYLOAD bytes, which fits the length field; fall back to a
    // LOCAL header rather than panic.
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

    /// The TLVs of a v2 header, decoded by hand; the header must be one
    /// PROXY command whose length field covers exactly the rest.
    fn v2_tlvs(bytes: &[u8]) -> (v2::Addresses, Vec<(u8, Vec<u8>)>) {
        let header = v2::Header::try_from(bytes).expect("ppp parses it");
        assert_eq!(header.command, v2::Command::Proxy);
        assert_eq!(
            16 + u16::from_be_bytes([bytes[14], bytes[15]]) as usize,
            bytes.len()
        );
        let tlvs = header
            .tlvs()
            .map(|t| t.map(|t| (t.kind, t.value.to_vec())))
            .collect::<Result<_, _>>()
            .expect("tlvs");
        (header.addresses, tlvs)
    }

    fn sub_tlvs(ssl: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = &ssl[5..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            out.push((rest[0], rest[3..3 + len].to_vec()));
            rest = &rest[3 + len..];
        }
        out
    }

    #[test]
    fn oversized_values_are_left_out_and_the_address_is_kept() {
        // Found by fuzz/fuzz_targets/proxy_header.rs: a value over 64 KiB
        // was cut to fit its TLV, and an SSL TLV or header over 64 KiB
        // became a LOCAL header, without the client address.
        let (c, l) = addrs();
        // Each value alone overflows a TLV, and together the SNI and CN
        // overflow the header's 16-bit length even though each fits.
        for (len, cn_len) in [(70_000, 70_000), (40_000, 40_000), (300, 2_000)] {
            let mut d = details();
            d.sni = Some("s".repeat(len));
            d.alpn = Some(vec![b'a'; len]);
            d.cipher = "c".repeat(len);
            d.client_cert = Some(ClientCertDetails {
                common_name: Some("n".repeat(cn_len)),
            });
            let bytes = encode(ProxyProtocol::V2, c, l, &d).unwrap();
            let (addresses, tlvs) = v2_tlvs(&bytes);
            assert_eq!(addresses, v2::Addresses::from((c, l)), "{len}");
            // Only the SSL TLV is left, without the CN and cipher, and its
            // flags still say a verified certificate was presented.
            assert_eq!(tlvs.len(), 1, "{len}");
            let ssl = &tlvs[0].1;
            assert_eq!(
                ssl[0],
                PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
            );
            assert_eq!(&ssl[1..5], &[0, 0, 0, 0]);
            let subs = sub_tlvs(ssl);
            assert_eq!(
                subs.iter().map(|s| s.0).collect::<Vec<_>>(),
                [0x21, 0x24, 0x25],
                "{len}"
            );
        }
    }

    #[test]
    fn values_at_the_limits_are_sent_whole() {
        let (c, l) = addrs();
        let mut d = details();
        d.sni = Some("s".repeat(MAX_NAME_LEN));
        d.alpn = Some(vec![0; MAX_NAME_LEN]);
        // 64 four-byte characters: X.509's longest common name.
        let cn = "\u{1F512}".repeat(64) + &"n".repeat(MAX_COMMON_NAME_LEN - 256);
        d.client_cert = Some(ClientCertDetails {
            common_name: Some(cn.clone()),
        });
        let bytes = encode(ProxyProtocol::V2, c, l, &d).unwrap();
        let (_, tlvs) = v2_tlvs(&bytes);
        assert_eq!(tlvs[0], (0x01, vec![0; MAX_NAME_LEN]));
        assert_eq!(tlvs[1], (0x02, "s".repeat(MAX_NAME_LEN).into_bytes()));
        assert_eq!(sub_tlvs(&tlvs[2].1)[1], (0x22, cn.into_bytes()));
    }

    #[test]
    fn control_characters_and_empty_values_are_left_out() {
        // Found by fuzz/fuzz_targets/proxy_header.rs: these went out as they
        // were, and a broker reading C strings sees `admin` in the first.
        let (c, l) = addrs();
        for bad in ["admin\0.device-7", "device-7\r\nadmin", "\u{85}x", ""] {
            let mut d = details();
            d.sni = Some(bad.into());
            d.client_cert = Some(ClientCertDetails {
                common_name: Some(bad.into()),
            });
            d.version = bad.into();
            let bytes = encode(ProxyProtocol::V2, c, l, &d).unwrap();
            let (_, tlvs) = v2_tlvs(&bytes);
            let kinds: Vec<u8> = tlvs.iter().map(|t| t.0).collect();
            assert_eq!(kinds, [0x01, 0x20], "{bad:?}");
            let ssl = &tlvs[1].1;
            assert_eq!(
                ssl[0],
                PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
            );
            assert_eq!(sub_tlv_types(ssl), [0x23, 0x24, 0x25], "{bad:?}");
        }
        // Non-ASCII text is fine.
        let mut d = details();
        d.client_cert = Some(ClientCertDetails {
            common_name: Some("capteur-é-7".into()),
        });
        let bytes = encode(ProxyProtocol::V2, c, l, &d).unwrap();
        let (_, tlvs) = v2_tlvs(&bytes);
        assert_eq!(
            sub_tlvs(&tlvs[2].1)[1],
            (0x22, "capteur-é-7".as_bytes().to_vec())
        );
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
