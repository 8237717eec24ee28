//! The HTTP/1.1 upgrade that starts a WebSocket session (RFC 6455 §4.2),
//! served by hyper over the client's TLS stream: one request, answered
//! with 101 and the stream handed back, or with a short refusal and a
//! close. hyper's upgrade API (`with_upgrades`) is not used: it hands the
//! stream back boxed behind a trait object, and after some refusals (an
//! upgrade request answered 404) closes it without a close_notify. hyper's buffers live only for the request; the stream it hands
//! back is moat's own, so the WebSocket session holds no buffer while idle.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::choose::{accept_key, decide, Decision, Policy, UpgradeResult};
use super::frames::{Limits, Violation, WsStream};
use crate::config::WebSocketConfig;
use crate::metrics::reason::ByReason;
use crate::tls::stream::TlsStream;

/// The smallest read buffer hyper allows: a request's line and headers
/// must fit in it.
const MAX_REQUEST_HEAD: usize = 8192;

/// How long a refused request's close_notify may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the upgrade request on `tls` under `timeout`: the WebSocket
/// stream (counting its violations in `violations`), or how the request
/// was refused (the answer has been sent and the TLS session closed).
///
/// Every attempt is counted once in `results`: a decided request when it
/// is decided, before its answer goes out (so a client that reads the
/// answer and then scrapes the metrics sees it counted), and a request
/// that never came whole when the connection gives up.
pub async fn upgrade(
    tls: TlsStream,
    ws: &WebSocketConfig,
    timeout: Duration,
    violations: Arc<ByReason<Violation>>,
    results: &ByReason<UpgradeResult>,
) -> Result<WsStream<TlsStream>, UpgradeResult> {
    let policy = Policy {
        path: &ws.path,
        allowed_origins: &ws.origins,
    };
    // None until the request is decided.
    let verdict = Mutex::new(None);
    let service = hyper::service::service_fn(|req: Request<Incoming>| {
        let h = req.headers();
        let request = super::choose::Request {
            method: req.method().as_str(),
            path: req.uri().path(),
            upgrade: header(h, "upgrade"),
            origin: header(h, "origin"),
            protocols: header(h, "sec-websocket-protocol"),
            key: header(h, "sec-websocket-key"),
            version: header(h, "sec-websocket-version"),
        };
        let (result, response) = match (decide(&request, &policy), request.key) {
            (Decision::Accept(protocol), Some(key)) => (
                UpgradeResult::Accepted,
                switching(&accept_key(key), protocol),
            ),
            (Decision::Accept(_), None) => refusal(UpgradeResult::BadRequest),
            (Decision::Reject(why), _) => refusal(why),
        };
        *lock(&verdict) = Some(result);
        results.inc(result);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    // Without shutdown: hyper hands the stream back once it has answered
    // (after a 101 as after a refusal), so that moat sends the close_notify
    // after a refusal, and keeps the stream after a 101.
    let conn = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(tls), service)
        .without_shutdown();
    let ended = tokio::time::timeout(timeout, conn).await;
    let decided = *lock(&verdict);
    let parts = match (ended, decided) {
        (Ok(Ok(parts)), Some(_)) => parts,
        // Gave up after the decision (the answer did not go out whole):
        // counted already, as decided.
        (Err(_) | Ok(Err(_)), Some(outcome)) => {
            return Err(if outcome == UpgradeResult::Accepted {
                UpgradeResult::Broken
            } else {
                outcome
            })
        }
        (Err(_), _) => return Err(counted(results, UpgradeResult::Timeout)),
        (Ok(_), _) => return Err(counted(results, UpgradeResult::Broken)),
    };
    let outcome = decided.unwrap_or(UpgradeResult::Broken);
    let mut tls = parts.io.into_inner();
    if outcome != UpgradeResult::Accepted {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
        return Err(outcome);
    }
    let limits = Limits {
        max_frame: u64::from(ws.max_frame_size),
        max_message: u64::from(ws.max_message_size),
        violations,
    };
    // hyper's read buffer is an 8 KiB allocation that `read_buf` would keep
    // alive for the connection's life even when it holds nothing (a client
    // waits for the 101 before its first frame): copy out what it holds.
    let early = if parts.read_buf.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(&parts.read_buf)
    };
    Ok(WsStream::new(tls, early, limits))
}

/// `result`, counted in `results`.
fn counted(results: &ByReason<UpgradeResult>, result: UpgradeResult) -> UpgradeResult {
    results.inc(result);
    result
}

/// The lock's value; a panic elsewhere while it was held cannot leave it
/// half-written (it is only ever assigned), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A header's value, when it is one visible-ASCII string.
fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The 101 answer.
fn switching(accept: &str, protocol: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    r
}

/// A refusal: its status, a one-line body saying why, and for 426 the
/// upgrade the client should have asked for.
fn refusal(why: UpgradeResult) -> (UpgradeResult, Response<Full<Bytes>>) {
    let body = match why {
        UpgradeResult::NotUpgrade => {
            "this port serves MQTT over WebSocket: send a GET with Upgrade: websocket\n"
        }
        UpgradeResult::WrongPath => "no WebSocket endpoint at this path\n",
        UpgradeResult::BadOrigin => "this Origin is not allowed\n",
        UpgradeResult::BadSubprotocol => "offer the subprotocol mqtt (or mqttv3.1)\n",
        _ => "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    if why == UpgradeResult::NotUpgrade || why == UpgradeResult::BadRequest {
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    (why, r)
}
