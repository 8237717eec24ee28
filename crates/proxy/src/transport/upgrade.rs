//! The HTTP/1.1 upgrade that starts a WebSocket session (RFC 6455 §4.2),
//! served by hyper over the client's TLS stream: one request, answered
//! with 101 and the stream handed back, or with a short refusal and a
//! close. hyper's buffers live only for the request; the stream it hands
//! back is moat's own, so the WebSocket session holds no buffer while idle.

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::choose::{accept_key, decide, Decision, Policy, UpgradeResult};
use super::frames::{Limits, WsStream};
use crate::config::WebSocketConfig;
use crate::tls::stream::TlsStream;

/// The smallest read buffer hyper allows: a request's line and headers
/// must fit in it.
const MAX_REQUEST_HEAD: usize = 8192;

/// Serves the upgrade request on `tls` under `timeout`: the WebSocket
/// stream, or how the request was refused (the answer has been sent and
/// the TLS session closed).
pub async fn upgrade(
    tls: TlsStream,
    ws: &WebSocketConfig,
    timeout: Duration,
) -> Result<WsStream<TlsStream>, UpgradeResult> {
    let policy = Policy {
        path: &ws.path,
        allowed_origins: &ws.origins,
    };
    let slot: Mutex<Option<OnUpgrade>> = Mutex::new(None);
    let verdict = Mutex::new(UpgradeResult::Broken);
    let service = hyper::service::service_fn(|mut req: Request<Incoming>| {
        let (decision, key) = {
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
            (decide(&request, &policy), request.key.map(accept_key))
        };
        let response = match (decision, key) {
            (Decision::Accept(protocol), Some(accept)) => {
                lock(&slot).replace(hyper::upgrade::on(&mut req));
                *lock(&verdict) = UpgradeResult::Accepted;
                switching(&accept, protocol)
            }
            (Decision::Accept(_), None) => refusal(UpgradeResult::BadRequest, &verdict),
            (Decision::Reject(why), _) => refusal(why, &verdict),
        };
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let conn = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    if tokio::time::timeout(timeout, conn).await.is_err() {
        return Err(UpgradeResult::Timeout);
    }
    let pending = lock(&slot).take();
    let outcome = *lock(&verdict);
    let Some(pending) = pending else {
        return Err(outcome);
    };
    let upgraded = pending.await.map_err(|_| UpgradeResult::Broken)?;
    let parts = upgraded
        .downcast::<TokioIo<TlsStream>>()
        .map_err(|_| UpgradeResult::Broken)?;
    let limits = Limits {
        max_frame: u64::from(ws.max_frame_size),
        max_message: u64::from(ws.max_message_size),
    };
    Ok(WsStream::new(parts.io.into_inner(), parts.read_buf, limits))
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
fn refusal(why: UpgradeResult, verdict: &Mutex<UpgradeResult>) -> Response<Full<Bytes>> {
    *lock(verdict) = why;
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
    r
}
