//! Which transport a TLS connection speaks (raw MQTT or MQTT over
//! WebSocket), and whether a WebSocket upgrade request is accepted. Pure
//! decisions, no I/O: the caller reads the ALPN protocol, the first byte
//! and the request, and acts on the answer.

use crate::metrics::reason::reasons;

reasons! {
    /// How a WebSocket upgrade request ended (`moat_websocket_upgrades_total`).
    pub enum UpgradeResult {
        /// Switched to WebSocket.
        Accepted => "ok",
        /// Not a GET with `Upgrade: websocket` (426).
        NotUpgrade => "not_upgrade",
        /// No `Sec-WebSocket-Key`, or a version other than 13 (400).
        BadRequest => "bad_request",
        /// Not `websocket.path` (404).
        WrongPath => "wrong_path",
        /// An `Origin` not in `websocket.origins` (403).
        BadOrigin => "bad_origin",
        /// Subprotocols offered, none of them `mqtt` or `mqttv3.1` (400).
        BadSubprotocol => "bad_subprotocol",
        /// No complete request within the handshake timeout.
        Timeout => "timeout",
        /// Not HTTP, or the connection ended before the upgrade.
        Broken => "broken",
    }
}

impl UpgradeResult {
    /// The HTTP status answered.
    pub fn status(self) -> u16 {
        match self {
            Self::Accepted => 101,
            Self::NotUpgrade => 426,
            Self::WrongPath => 404,
            Self::BadOrigin => 403,
            _ => 400,
        }
    }
}

/// What a connection carries once TLS is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// MQTT packets directly on the TLS stream.
    Mqtt,
    /// An HTTP/1.1 upgrade, then MQTT inside WebSocket binary frames.
    WebSocket,
}

/// The transport of a connection on a listener that serves WebSockets:
/// the negotiated ALPN protocol decides (`http/1.1` is WebSocket, any
/// other name, such as `mqtt` or `x-amzn-mqtt-ca`, raw MQTT); without one,
/// the first byte does (an HTTP request starts with `G`, an MQTT CONNECT
/// with 0x10; anything else goes to the MQTT path, which refuses it as it
/// does on a listener without WebSockets).
pub fn choose(alpn: Option<&[u8]>, first: Option<u8>) -> Transport {
    match (alpn, first) {
        (Some(b"http/1.1"), _) => Transport::WebSocket,
        (Some(_), _) => Transport::Mqtt,
        (None, Some(b'G')) => Transport::WebSocket,
        (None, _) => Transport::Mqtt,
    }
}

/// The parts of an HTTP request the upgrade decision looks at.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The `Upgrade` header, if any.
    pub upgrade: Option<&'a str>,
    /// The `Origin` header, if any (browsers always send it).
    pub origin: Option<&'a str>,
    /// The `Sec-WebSocket-Protocol` header, if any.
    pub protocols: Option<&'a str>,
    /// The `Sec-WebSocket-Key` header, if any.
    pub key: Option<&'a str>,
    /// The `Sec-WebSocket-Version` header, if any.
    pub version: Option<&'a str>,
}

/// A listener's `websocket:` policy.
pub struct Policy<'a> {
    pub path: &'a str,
    /// Empty: any Origin (and none) is accepted.
    pub allowed_origins: &'a [String],
}

/// What to answer an upgrade request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Switch protocols, echoing this subprotocol (if the client asked).
    Accept(Option<&'static str>),
    /// Answer with the refusal's status and a short reason.
    Reject(UpgradeResult),
}

/// The subprotocols moat speaks, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Decides an upgrade request: not a GET upgrade -> 426, no key or a
/// version other than 13 -> 400, wrong path -> 404, Origin not allowed ->
/// 403, subprotocols offered but none is MQTT -> 400.
pub fn decide(req: &Request<'_>, policy: &Policy<'_>) -> Decision {
    let is_upgrade = req
        .upgrade
        .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    if req.method != "GET" || !is_upgrade {
        return Decision::Reject(UpgradeResult::NotUpgrade);
    }
    if req.key.is_none_or(|k| k.trim().is_empty()) || req.version.map(str::trim) != Some("13") {
        return Decision::Reject(UpgradeResult::BadRequest);
    }
    let path = req.path.split('?').next().unwrap_or("");
    if path != policy.path {
        return Decision::Reject(UpgradeResult::WrongPath);
    }
    if !policy.allowed_origins.is_empty() {
        let ok = req.origin.is_some_and(|o| {
            policy
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o.trim()))
        });
        if !ok {
            return Decision::Reject(UpgradeResult::BadOrigin);
        }
    }
    match req.protocols {
        None => Decision::Accept(None),
        Some(list) => {
            let offered: Vec<&str> = list.split(',').map(str::trim).collect();
            SUBPROTOCOLS
                .iter()
                .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
                .map_or(Decision::Reject(UpgradeResult::BadSubprotocol), |p| {
                    Decision::Accept(Some(p))
                })
        }
    }
}

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key` (RFC 6455
/// §4.2.2): the key and a fixed GUID, hashed with SHA-1, in base64.
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(path: &'a str, origin: Option<&'a str>, protos: Option<&'a str>) -> Request<'a> {
        Request {
            method: "GET",
            path,
            upgrade: Some("websocket"),
            origin,
            protocols: protos,
            key: Some("dGhlIHNhbXBsZSBub25jZQ=="),
            version: Some("13"),
        }
    }

    #[test]
    fn transport_choice() {
        assert_eq!(choose(Some(b"mqtt"), Some(b'G')), Transport::Mqtt);
        assert_eq!(choose(Some(b"x-amzn-mqtt-ca"), None), Transport::Mqtt);
        assert_eq!(choose(Some(b"http/1.1"), Some(0x10)), Transport::WebSocket);
        assert_eq!(choose(None, Some(b'G')), Transport::WebSocket);
        assert_eq!(choose(None, Some(0x10)), Transport::Mqtt);
        assert_eq!(choose(None, Some(0x16)), Transport::Mqtt);
        assert_eq!(choose(None, None), Transport::Mqtt);
    }

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_needs_key_and_version_13() {
        let open = Policy {
            path: "/mqtt",
            allowed_origins: &[],
        };
        let mut r = req("/mqtt", None, None);
        r.version = Some("8");
        assert_eq!(
            decide(&r, &open),
            Decision::Reject(UpgradeResult::BadRequest)
        );
        let mut r = req("/mqtt", None, None);
        r.key = None;
        assert_eq!(
            decide(&r, &open),
            Decision::Reject(UpgradeResult::BadRequest)
        );
    }

    #[test]
    fn upgrade_decisions() {
        let origins = vec!["https://app.example".to_string()];
        let open = Policy {
            path: "/mqtt",
            allowed_origins: &[],
        };
        let strict = Policy {
            path: "/mqtt",
            allowed_origins: &origins,
        };
        assert_eq!(
            decide(&req("/mqtt", None, None), &open),
            Decision::Accept(None)
        );
        assert_eq!(
            decide(&req("/mqtt?x=1", None, Some("foo, mqtt")), &open),
            Decision::Accept(Some("mqtt"))
        );
        assert_eq!(
            decide(&req("/mqtt", None, Some("mqttv3.1")), &open),
            Decision::Accept(Some("mqttv3.1"))
        );
        assert_eq!(
            decide(&req("/mqtt", None, Some("chat")), &open),
            Decision::Reject(UpgradeResult::BadSubprotocol)
        );
        assert_eq!(
            decide(&req("/x", None, None), &open),
            Decision::Reject(UpgradeResult::WrongPath)
        );
        assert_eq!(
            decide(&req("/mqtt", Some("https://evil.example"), None), &strict),
            Decision::Reject(UpgradeResult::BadOrigin)
        );
        assert_eq!(
            decide(&req("/mqtt", None, None), &strict),
            Decision::Reject(UpgradeResult::BadOrigin)
        );
        assert_eq!(
            decide(&req("/mqtt", Some("https://app.example"), None), &strict),
            Decision::Accept(None)
        );
        let plain = Request {
            upgrade: None,
            ..req("/mqtt", None, None)
        };
        assert_eq!(
            decide(&plain, &open),
            Decision::Reject(UpgradeResult::NotUpgrade)
        );
    }
}
