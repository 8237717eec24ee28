//! The transport stage, on listeners with `websocket:`: raw MQTT or an
//! HTTP upgrade to WebSocket, chosen per connection by ALPN or, without
//! one, by the first byte; then the upgrade itself. Listeners without
//! `websocket:` skip it: their connections are raw TLS as before.

use tracing::{debug, info};

use super::context::Live;
use super::metrics::ConnMetrics;
use crate::tls::stream::TlsStream;
use crate::transport::{choose, upgrade, ClientStream, Transport};

/// The client's stream for its session, or `None` when the connection is
/// over (an upgrade refused or broken: answered, logged and counted here).
pub async fn negotiate(mut tls: TlsStream, live: &Live, m: &ConnMetrics) -> Option<ClientStream> {
    let Some(ws) = live.config.websocket.as_ref() else {
        m.transport(Transport::Mqtt);
        return Some(ClientStream::Tls(tls));
    };
    let timeout = live.config.timeouts.handshake.0;
    let transport = match tls.connection().alpn_protocol() {
        Some(p) => choose(Some(p), None),
        None => match tokio::time::timeout(timeout, tls.peek_first()).await {
            Ok(Ok(Some(first))) => choose(None, Some(first)),
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                debug!(error = %e, "connection ended before its first byte");
                return None;
            }
            // Silent: the session's own timeouts (MQTT connect_timeout,
            // idle) decide.
            Err(_) => Transport::Mqtt,
        },
    };
    m.transport(transport);
    if transport == Transport::Mqtt {
        return Some(ClientStream::Tls(tls));
    }
    let upgraded = upgrade(
        tls,
        ws,
        timeout,
        m.websocket_closed.clone(),
        &m.websocket_upgrades,
    );
    match upgraded.await {
        Ok(stream) => {
            debug!("WebSocket session started");
            Some(ClientStream::WebSocket(Box::new(stream)))
        }
        Err(why) => {
            info!(
                result = why.as_str(),
                status = why.status(),
                "WebSocket upgrade refused"
            );
            None
        }
    }
}
