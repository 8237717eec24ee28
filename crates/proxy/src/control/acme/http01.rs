//! The HTTP-01 challenge listener: a small HTTP/1.1 server that answers
//! `GET /.well-known/acme-challenge/<token>` with the key authorization of
//! an order in progress, and 404 to everything else.
//!
//! The socket is bound at start-up (port 80 usually needs the privileges
//! moat drops) and served for the life of the process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The tokens of the orders in progress and their key authorizations,
/// shared by every ACME entry and HTTP-01 listener (tokens are random).
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<Mutex<HashMap<String, String>>>);

impl Tokens {
    /// Answers `token` with `key_authorization` until removed.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_string(), key_authorization.to_string());
    }

    /// Stops answering `token`.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The answer to a request path, if it asks for a known token.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(PREFIX)?;
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Serves challenges on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, tokens: Tokens, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "ACME HTTP-01 challenge listener started");
    }
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "HTTP-01 accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = tokens.answer(req.uri().path());
                debug!(%peer, path = req.uri().path(), found = answer.is_some(), "HTTP-01 request");
                async move { Ok::<_, Infallible>(respond(answer)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

fn respond(answer: Option<String>) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Some(a) => (StatusCode::OK, a),
        None => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::Tokens;

    #[test]
    fn answers_only_known_tokens_under_the_prefix() {
        let t = Tokens::default();
        t.insert("abc", "abc.thumb");
        assert_eq!(
            t.answer("/.well-known/acme-challenge/abc").as_deref(),
            Some("abc.thumb")
        );
        assert_eq!(t.answer("/.well-known/acme-challenge/abd"), None);
        assert_eq!(t.answer("/abc"), None);
        t.remove("abc");
        assert_eq!(t.answer("/.well-known/acme-challenge/abc"), None);
    }
}
