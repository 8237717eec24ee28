//! Round-trips moat's PROXY protocol header through an independent parser.
//!
//! Builds arbitrary connection details (v1, v2 or none; IPv4, IPv6,
//! IPv4-mapped, IPv4-compatible and mixed address pairs, with any ports,
//! flow labels and scope ids; TLS version, cipher, SNI, ALPN, client
//! certificate and its common name, resumption, the server's algorithm
//! names; strings with control characters and strings far longer than a TLV
//! can hold), encodes them with `moat::proxy_protocol::encode`, and checks:
//!
//! - the `proxy-protocol` crate (not `ppp`, which the encoder itself uses)
//!   parses the header followed by arbitrary bytes (the MQTT CONNECT) and
//!   consumes exactly the header's bytes;
//! - the addresses and ports it reads are the inputs after moat's documented
//!   canonicalisation (`canonical_pair`): an IPv4-mapped IPv6 address becomes
//!   IPv4 when the other end is (or maps to) IPv4 too; a pair that still
//!   mixes families is sent as `UNKNOWN` (v1) or `AF_UNSPEC` (v2);
//! - v1 is ASCII, ends in CRLF and is at most 107 bytes, the spec's maximum;
//! - v2 is a PROXY command over a stream whose length field covers exactly
//!   the rest of the header, and whose TLVs are exactly `PP2_TYPE_ALPN`,
//!   `PP2_TYPE_AUTHORITY` and `PP2_TYPE_SSL`, in that order, with the SSL
//!   TLV's client flags, verify field and sub-TLVs (version, CN, cipher,
//!   sig_alg, key_alg) equal to the inputs. A value is sent byte for byte or
//!   not at all (never cut), by the encoder's documented rule: text values
//!   that are empty, longer than their limit or contain a control character
//!   are left out, ALPN is sent when it is 1 to 255 bytes.
//!
//! The `proxy-protocol` crate skips the TLV area without exposing it (its
//! v2 parser has a "TODO: Implement TLVs"), so the TLVs are decoded here: the
//! area is a plain list of type (1 byte), length (2 bytes, big endian),
//! value, and the SSL TLV's value is client (1 byte), verify (4 bytes), then
//! the same list.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use moat::config::ProxyProtocol;
use moat::proxy_protocol::{
    encode, ClientCertDetails, TlsDetails, MAX_COMMON_NAME_LEN, MAX_NAME_LEN,
};
use proxy_protocol::{version1, version2, ProxyHeader};

// From the PROXY protocol specification (section 2.2.x), not from `ppp`.
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest string built from a repeated unit: twice what a v2 header can
/// hold, so that every length limit is crossed.
const MAX_BUILT: usize = 2 * u16::MAX as usize + 16;

#[derive(Debug, Arbitrary)]
enum Mode {
    None,
    V1,
    V2,
}

#[derive(Debug, Arbitrary)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
    /// `::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4 peers.
    Mapped([u8; 4]),
    /// `::a.b.c.d`, the deprecated IPv4-compatible form: stays IPv6.
    Compatible([u8; 4]),
}

#[derive(Debug, Arbitrary)]
struct Addr {
    ip: Ip,
    port: u16,
    flowinfo: u32,
    scope_id: u32,
}

impl Addr {
    fn socket(&self) -> SocketAddr {
        let v6 = |ip: Ipv6Addr| {
            SocketAddr::V6(SocketAddrV6::new(
                ip,
                self.port,
                self.flowinfo,
                self.scope_id,
            ))
        };
        match self.ip {
            Ip::V4(o) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(o), self.port)),
            Ip::V6(o) => v6(Ipv6Addr::from(o)),
            Ip::Mapped(o) => v6(Ipv4Addr::from(o).to_ipv6_mapped()),
            Ip::Compatible(o) => {
                let [a, b, c, d] = o;
                v6(Ipv6Addr::from([
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d,
                ]))
            }
        }
    }
}

/// A string, short as generated or long as a repeated unit.
#[derive(Debug, Arbitrary)]
enum Text {
    Plain(String),
    Repeated { unit: String, times: u32 },
}

impl Text {
    fn build(&self) -> String {
        match self {
            Text::Plain(s) => s.clone(),
            Text::Repeated { unit, times } => {
                let times = (*times as usize).min(MAX_BUILT / unit.len().max(1));
                unit.repeat(times)
            }
        }
    }
}

/// Bytes, short as generated or long as a repeated unit.
#[derive(Debug, Arbitrary)]
enum Bytes {
    Plain(Vec<u8>),
    Repeated { unit: Vec<u8>, times: u32 },
}

impl Bytes {
    fn build(&self) -> Vec<u8> {
        match self {
            Bytes::Plain(b) => b.clone(),
            Bytes::Repeated { unit, times } => {
                let times = (*times as usize).min(MAX_BUILT / unit.len().max(1));
                unit.repeat(times)
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    mode: Mode,
    client: Addr,
    local: Addr,
    version: Text,
    cipher: Text,
    sni: Option<Text>,
    alpn: Option<Bytes>,
    /// `Some(None)`: a certificate without a common name.
    client_cert: Option<Option<Text>>,
    resumed: bool,
    server_sig_alg: Text,
    server_key_alg: Text,
    /// What follows the header on the wire (the MQTT CONNECT).
    trailer: Vec<u8>,
}

/// The addresses the backend must read.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    V4(SocketAddrV4, SocketAddrV4),
    /// Addresses and ports only: neither version carries flow or scope.
    V6((Ipv6Addr, u16), (Ipv6Addr, u16)),
    Mixed,
}

/// moat's canonicalisation, written independently of `canonical_pair`:
/// IPv4 on both ends when both are IPv4 or IPv4-mapped; otherwise the
/// addresses as given, which are then either both IPv6 or mixed.
fn expected(client: SocketAddr, local: SocketAddr) -> Expected {
    let as_v4 = |a: SocketAddr| match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    };
    match (as_v4(client), as_v4(local), client, local) {
        (Some(c), Some(l), _, _) => Expected::V4(c, l),
        (_, _, SocketAddr::V6(c), SocketAddr::V6(l)) => {
            Expected::V6((*c.ip(), c.port()), (*l.ip(), l.port()))
        }
        _ => Expected::Mixed,
    }
}

/// The encoder's documented rule for text values.
fn sendable(text: &str, max: usize) -> Option<Vec<u8>> {
    (!text.is_empty() && text.len() <= max && !text.chars().any(char::is_control))
        .then(|| text.as_bytes().to_vec())
}

/// Decodes a type/length/value list that must fill `area` exactly.
fn decode_tlvs(mut area: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !area.is_empty() {
        assert!(area.len() >= 3, "a truncated TLV header: {area:?}");
        let len = u16::from_be_bytes([area[1], area[2]]) as usize;
        assert!(
            area.len() >= 3 + len,
            "TLV {:#04x} claims {len} bytes, {} remain",
            area[0],
            area.len() - 3
        );
        out.push((area[0], area[3..3 + len].to_vec()));
        area = &area[3 + len..];
    }
    out
}

fuzz_target!(|input: Input| {
    let client = input.client.socket();
    let local = input.local.socket();
    let cert_cn = input
        .client_cert
        .as_ref()
        .map(|cn| cn.as_ref().map(Text::build));
    let tls = TlsDetails {
        version: input.version.build(),
        cipher: input.cipher.build(),
        sni: input.sni.as_ref().map(Text::build),
        alpn: input.alpn.as_ref().map(Bytes::build),
        client_cert: cert_cn
            .clone()
            .map(|common_name| ClientCertDetails { common_name }),
        resumed: input.resumed,
        server_sig_alg: input.server_sig_alg.build(),
        server_key_alg: input.server_key_alg.build(),
    };
    let mode = match input.mode {
        Mode::None => ProxyProtocol::None,
        Mode::V1 => ProxyProtocol::V1,
        Mode::V2 => ProxyProtocol::V2,
    };
    let Some(header) = encode(mode, client, local, &tls) else {
        assert_eq!(mode, ProxyProtocol::None, "only `none` sends no header");
        return;
    };
    assert_ne!(mode, ProxyProtocol::None, "`none` sends no header");
    let want = expected(client, local);

    let mut wire = header.clone();
    wire.extend_from_slice(&input.trailer);

    if mode == ProxyProtocol::V1 {
        assert!(header.len() <= 107, "v1 header of {} bytes", header.len());
        assert!(header.is_ascii() && header.ends_with(b"\r\n"), "{header:?}");
        assert_eq!(
            header.iter().filter(|&&b| b == b'\n').count(),
            1,
            "one line: {header:?}"
        );
        let mut rest = wire.as_slice();
        let parsed = proxy_protocol::parse(&mut rest).expect("the v1 header parses");
        assert_eq!(
            rest,
            input.trailer.as_slice(),
            "consumed exactly the header"
        );
        let ProxyHeader::Version1 { addresses } = parsed else {
            panic!("not v1: {parsed:?}");
        };
        let got = match addresses {
            version1::ProxyAddresses::Ipv4 {
                source,
                destination,
            } => Expected::V4(source, destination),
            version1::ProxyAddresses::Ipv6 {
                source,
                destination,
            } => Expected::V6(
                (*source.ip(), source.port()),
                (*destination.ip(), destination.port()),
            ),
            version1::ProxyAddresses::Unknown => Expected::Mixed,
        };
        assert_eq!(got, want);
        return;
    }

    // v2. Check the framing before handing it to the parser: it trusts the
    // length field and would panic past the end of a short buffer.
    assert!(header.len() >= 16, "v2 header of {} bytes", header.len());
    assert_eq!(header[..12], V2_SIGNATURE);
    assert_eq!(header[12], 0x21, "version 2, command PROXY");
    let length = u16::from_be_bytes([header[14], header[15]]) as usize;
    assert_eq!(
        16 + length,
        header.len(),
        "the length field covers the rest"
    );

    let mut rest = wire.as_slice();
    let parsed = proxy_protocol::parse(&mut rest).expect("the v2 header parses");
    assert_eq!(
        rest,
        input.trailer.as_slice(),
        "consumed exactly the header"
    );
    let ProxyHeader::Version2 {
        command,
        transport_protocol,
        addresses,
    } = parsed
    else {
        panic!("not v2: {parsed:?}");
    };
    assert_eq!(command, version2::ProxyCommand::Proxy);
    let (got, address_len) = match addresses {
        version2::ProxyAddresses::Ipv4 {
            source,
            destination,
        } => (Expected::V4(source, destination), 12),
        version2::ProxyAddresses::Ipv6 {
            source,
            destination,
        } => (
            Expected::V6(
                (*source.ip(), source.port()),
                (*destination.ip(), destination.port()),
            ),
            36,
        ),
        version2::ProxyAddresses::Unspec => (Expected::Mixed, 0),
        other => panic!("unexpected addresses {other:?}"),
    };
    assert_eq!(got, want);
    assert_eq!(transport_protocol, version2::ProxyTransportProtocol::Stream);

    let tlvs = decode_tlvs(&header[16 + address_len..]);
    let mut want_tlvs = Vec::new();
    if let Some(alpn) = tls
        .alpn
        .as_ref()
        .filter(|a| (1..=MAX_NAME_LEN).contains(&a.len()))
    {
        want_tlvs.push((PP2_TYPE_ALPN, alpn.clone()));
    }
    if let Some(sni) = tls.sni.as_deref().and_then(|s| sendable(s, MAX_NAME_LEN)) {
        want_tlvs.push((PP2_TYPE_AUTHORITY, sni));
    }
    let kinds: Vec<u8> = tlvs.iter().map(|t| t.0).collect();
    let want_kinds: Vec<u8> = want_tlvs
        .iter()
        .map(|t| t.0)
        .chain([PP2_TYPE_SSL])
        .collect();
    assert_eq!(kinds, want_kinds, "TLV types");
    let (ssl_tlv, others) = tlvs.split_last().expect("the SSL TLV is last");
    assert_eq!(others, want_tlvs.as_slice());

    let ssl = &ssl_tlv.1;
    assert!(ssl.len() >= 5, "SSL TLV of {} bytes", ssl.len());
    let mut client_flags = PP2_CLIENT_SSL;
    if cert_cn.is_some() {
        client_flags |= PP2_CLIENT_CERT_SESS;
        if !input.resumed {
            client_flags |= PP2_CLIENT_CERT_CONN;
        }
    }
    assert_eq!(ssl[0], client_flags, "client flags");
    let verify = u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]);
    assert_eq!(verify, if cert_cn.is_some() { 0 } else { 1 }, "verify");

    let mut want_sub = Vec::new();
    let mut text = |kind: u8, value: Option<&str>, max: usize| {
        if let Some(v) = value.and_then(|v| sendable(v, max)) {
            want_sub.push((kind, v));
        }
    };
    text(PP2_SUBTYPE_SSL_VERSION, Some(&tls.version), MAX_NAME_LEN);
    text(
        PP2_SUBTYPE_SSL_CN,
        cert_cn.as_ref().and_then(|cn| cn.as_deref()),
        MAX_COMMON_NAME_LEN,
    );
    text(PP2_SUBTYPE_SSL_CIPHER, Some(&tls.cipher), MAX_NAME_LEN);
    text(
        PP2_SUBTYPE_SSL_SIG_ALG,
        Some(&tls.server_sig_alg),
        MAX_NAME_LEN,
    );
    text(
        PP2_SUBTYPE_SSL_KEY_ALG,
        Some(&tls.server_key_alg),
        MAX_NAME_LEN,
    );
    assert_eq!(decode_tlvs(&ssl[5..]), want_sub, "SSL sub-TLVs");
});
