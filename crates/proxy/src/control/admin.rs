//! The admin HTTP endpoint: health, readiness and metrics.
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once every listener is bound and serving a
//!   certificate, 503 before that and while draining (readiness).
//! - `GET /metrics`: Prometheus text format.
//! - `GET /certificates`: JSON, the certificates each listener serves and
//!   trusts, with their source files and when they were loaded.
//! - `POST /reload`: reload certificates now; JSON with each listener's
//!   outcome, 200 when all succeeded or were unchanged, 500 otherwise.
//!   `?force=true` applies a client-auth state that closes every live
//!   session, which is otherwise refused.
//! - `GET /connections`: JSON, the live sessions (filters and paging in
//!   `connections`); `GET /connections/{id}`: one of them.
//! - `DELETE /connections/{id}`, `DELETE /connections?identity=...`: close
//!   live sessions (MQTT 5 clients get a DISCONNECT, "administrative
//!   action").
//! - `GET /bans`, `POST /bans?identity=...&duration=...` (or `client_id`,
//!   `source`), `DELETE /bans/{id}`: the ban list; a new ban also closes
//!   the live sessions it names.
//!
//! It binds only where `admin.listen` says. With `admin.tls` it speaks
//! HTTPS (`tls::admin`), and with `admin.tls.client_ca` it wants client
//! certificates. With `admin.token_file`, requests need `Authorization:
//! Bearer <token>` (`token`). `/healthz` and `/readyz` need neither while
//! `admin.health` is `open` (`access` has the rules). Without any
//! credential, `/connections` and `/bans` answer 403 and the rest is open:
//! keep it on loopback or a private network.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::access::{Access, Verdict};
use super::connections;
use super::health::Health;
use super::reload::{self, ReloadHandle, ReloadOutcome, Trigger};
use crate::conn::reasons::HandshakeFailure;
use crate::conn::registry::{CloseReason, Registry};
use crate::conn::Context;
use crate::metrics::labels::AdminReasonLabels;
use crate::metrics::reason::ByReason;
use crate::metrics::Metrics;
use crate::tls::certs::{rfc3339, unix, CertInfo};

/// What the handlers read.
pub struct AdminState {
    /// Readiness.
    pub health: Arc<Health>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The listeners, for `/certificates`.
    pub listeners: Arc<crate::conn::Catalog>,
    /// For `POST /reload`.
    pub reloader: ReloadHandle,
    /// The live sessions, for `/connections`.
    pub sessions: Arc<Registry>,
    /// Who may use which endpoint.
    pub access: Access,
    /// HTTPS (`admin.tls`), client certificates as `access` says.
    pub tls: Option<Arc<ServerConfig>>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = text(status, format!("{body:#}\n"));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn cert_json(c: &CertInfo, now: i64) -> serde_json::Value {
    serde_json::json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "sans": c.sans,
        "serial": c.serial,
        "not_before": c.not_before_rfc3339(),
        "not_after": c.not_after_rfc3339(),
        "days_left": (c.not_after - now).div_euclid(86_400),
        "key": format!("{} {}", c.key_type, c.key_bits),
        "sha256": c.sha256,
    })
}

/// The body of `GET /certificates`.
pub fn certificates_json(listeners: &[Arc<Context>]) -> serde_json::Value {
    let now = unix(std::time::SystemTime::now());
    let listeners: Vec<_> = listeners
        .iter()
        .map(|l| {
            let live = l.live.load();
            let tls = &live.tls;
            let certs: Vec<_> = tls
                .certs
                .iter()
                .map(|c| {
                    let mut v = cert_json(c.leaf(), now);
                    v["source"] = c.cert_path.display().to_string().into();
                    v["key_file"] = c.key_path.display().to_string().into();
                    v["chain"] = c.chain[1..].iter().map(|i| cert_json(i, now)).collect();
                    v
                })
                .collect();
            let cas: Vec<_> = tls.client_cas.iter().map(|c| cert_json(c, now)).collect();
            // ACME entries with no certificate yet: their names, not served.
            let pending: Vec<_> = tls
                .pending
                .iter()
                .filter_map(|&i| live.config.tls.certificates.get(i)?.acme.as_ref())
                .map(|a| serde_json::json!({ "domains": a.domains, "directory": a.directory }))
                .collect();
            serde_json::json!({
                "name": l.name,
                "loaded_at": rfc3339(unix(tls.loaded_at)),
                "certificates": certs,
                "acme_pending": pending,
                "client_ca_file": tls.client_ca_path.as_ref().map(|p| p.display().to_string()),
                "client_cas": cas,
            })
        })
        .collect();
    serde_json::json!({ "listeners": listeners })
}

/// The body of `POST /reload`.
pub fn reload_json(outcomes: &[(String, ReloadOutcome)]) -> serde_json::Value {
    let listeners: Vec<_> = outcomes
        .iter()
        .map(|(name, o)| match o {
            ReloadOutcome::Reloaded { serial } => {
                serde_json::json!({ "name": name, "outcome": "reloaded", "serial": serial })
            }
            ReloadOutcome::Unchanged => serde_json::json!({ "name": name, "outcome": "unchanged" }),
            ReloadOutcome::StillFailing => serde_json::json!({ "name": name, "outcome": "failed" }),
            ReloadOutcome::Failed(e) => serde_json::json!({
                "name": name,
                "outcome": "failed",
                "file": e.file.display().to_string(),
                "error": e.message,
                "hint": e.hint,
            }),
        })
        .collect();
    let ok = reload::all_ok(outcomes);
    serde_json::json!({ "ok": ok, "listeners": listeners })
}

/// The 401 for a request `access` refused.
fn unauthorized(state: &AdminState, path: &str, verdict: Verdict) -> Response<Full<Bytes>> {
    state.metrics.admin_unauthorized.inc();
    if verdict == Verdict::NeedClientCert {
        debug!(path, "admin request without a client certificate");
        return text(
            StatusCode::UNAUTHORIZED,
            "unauthorized: this endpoint needs a client certificate issued by admin.tls.client_ca\n",
        );
    }
    debug!(path, "admin request without the right token");
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "unauthorized: send Authorization: Bearer <admin.token_file's token>\n",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"moat\""),
    );
    r
}

/// The trigger `POST /reload` asks for: `?force=true` or nothing.
fn reload_trigger(query: Option<&str>) -> Result<Trigger, String> {
    match query {
        None | Some("") => Ok(Trigger::Admin),
        Some("force=true") => Ok(Trigger::AdminForced),
        Some(q) => Err(format!(
            "{q}: unknown parameter; POST /reload takes only force=true\n"
        )),
    }
}

/// `GET /connections` and `DELETE /connections` (with a filter).
fn connections(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let delete = req.method() == Method::DELETE;
    let (filter, page) = match connections::parse(req.uri().query(), !delete) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{}\n", e.0)),
    };
    let sessions = state.sessions.sessions();
    if !delete {
        let now = std::time::SystemTime::now();
        return json(
            StatusCode::OK,
            &connections::listing_json(&sessions, &filter, &page, now),
        );
    }
    if filter.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "DELETE /connections needs a filter (listener, identity, client_id or source); to close one session, DELETE /connections/{id}\n",
        );
    }
    let ids: Vec<u64> = sessions
        .iter()
        .filter(|s| filter.matches(s))
        .map(|s| s.id)
        .filter(|id| state.sessions.stop(*id, CloseReason::Kicked))
        .collect();
    kicked(ids)
}

/// The reply to a DELETE that closed `ids`: 404 when there were none.
fn kicked(ids: Vec<u64>) -> Response<Full<Bytes>> {
    if ids.is_empty() {
        return text(StatusCode::NOT_FOUND, "no live connection matches\n");
    }
    info!(connections = ids.len(), ids = ?ids, "closing connections at an operator's request");
    json(
        StatusCode::OK,
        &serde_json::json!({ "closed": ids.len(), "ids": ids }),
    )
}

/// `GET /bans`, `POST /bans?...` (which also closes the live sessions the
/// ban names) and `DELETE /bans/{id}`.
fn bans(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let now = std::time::SystemTime::now();
    let bans = &state.sessions.bans;
    let path = req.uri().path();
    match (req.method(), path.strip_prefix("/bans/")) {
        (&Method::GET | &Method::HEAD, None) => {
            let list: Vec<_> = bans.list(now).iter().map(connections::ban_json).collect();
            json(StatusCode::OK, &serde_json::json!({ "bans": list }))
        }
        (&Method::POST, None) => {
            let (target, duration) = match connections::parse_ban(req.uri().query()) {
                Ok(x) => x,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("{}\n", e.0)),
            };
            let ban = bans.add(target, duration.map(|d| now + d), now);
            let closed: Vec<u64> = state
                .sessions
                .sessions()
                .iter()
                .filter(|s| connections::banned(&ban.target, s))
                .map(|s| s.id)
                .filter(|id| state.sessions.stop(*id, CloseReason::Banned))
                .collect();
            info!(
                ban = ban.id,
                kind = ban.target.kind(),
                value = %ban.target.value(),
                until = ?ban.until.map(|u| crate::tls::certs::rfc3339(unix(u))),
                closed = closed.len(),
                "ban set"
            );
            let mut body = connections::ban_json(&ban);
            body["closed"] = closed.len().into();
            json(StatusCode::CREATED, &body)
        }
        (&Method::DELETE, Some(id)) => match id.parse::<u64>() {
            Ok(id) if bans.remove(id) => {
                info!(ban = id, "ban lifted");
                json(StatusCode::OK, &serde_json::json!({ "lifted": id }))
            }
            Ok(_) => text(StatusCode::NOT_FOUND, "no ban with this id\n"),
            Err(_) => text(
                StatusCode::BAD_REQUEST,
                format!("{id:?} is not a ban id; GET /bans lists them\n"),
            ),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// `GET` and `DELETE /connections/{id}`.
fn connection(state: &AdminState, req: &Request<Incoming>, id: &str) -> Response<Full<Bytes>> {
    let Ok(id) = id.parse::<u64>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a connection id; GET /connections lists them\n"),
        );
    };
    match *req.method() {
        Method::DELETE => {
            let closed = state.sessions.stop(id, CloseReason::Kicked);
            kicked(if closed { vec![id] } else { Vec::new() })
        }
        Method::GET | Method::HEAD => match state.sessions.sessions().iter().find(|s| s.id == id) {
            Some(s) => json(
                StatusCode::OK,
                &connections::session_json(s, std::time::SystemTime::now()),
            ),
            None => text(StatusCode::NOT_FOUND, "no live connection with this id\n"),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

async fn route(
    state: &AdminState,
    req: &Request<Incoming>,
    client_cert: bool,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let verdict = state.access.decide(path, header, client_cert);
    if verdict != Verdict::Allow {
        return unauthorized(state, path, verdict);
    }
    let control = ["/connections", "/bans"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
    if control && !state.access.has_credentials() {
        // Who is connected, and closing them, only for an authenticated
        // operator: an endpoint that was safe to leave open for probes and
        // scrapes does not become a way to disconnect the fleet.
        return text(
            StatusCode::FORBIDDEN,
            "the connections and bans API needs admin.token_file or admin.tls.client_ca; set one to list, close and ban sessions\n",
        );
    }
    if let Some(id) = path.strip_prefix("/connections/") {
        return connection(state, req, id);
    }
    if path == "/bans" || path.starts_with("/bans/") {
        return bans(state, req);
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/certificates") => {
            json(StatusCode::OK, &certificates_json(&state.listeners.load()))
        }
        (&Method::GET | &Method::HEAD | &Method::DELETE, "/connections") => connections(state, req),
        (&Method::POST, "/reload") => {
            let trigger = match reload_trigger(req.uri().query()) {
                Ok(t) => t,
                Err(e) => return text(StatusCode::BAD_REQUEST, e),
            };
            let outcomes = state.reloader.reload(trigger).await;
            let status = if reload::all_ok(&outcomes) {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json(status, &reload_json(&outcomes))
        }
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            match state.health.not_ready_because() {
                None => text(StatusCode::OK, "ready\n"),
                Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
            }
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // `moat_ready` says what /readyz would (a pending ACME
            // certificate, a lost backend), as of this scrape.
            state
                .metrics
                .set_ready(state.health.not_ready_because().is_none());
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(Metrics::CONTENT_TYPE),
            );
            r
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/certificates" | "/reload" | "/connections") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /metrics, /certificates, /connections, /bans or POST /reload\n",
        ),
    }
}

/// Serves the admin endpoint on an already-bound listener until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    match listener.local_addr() {
        Ok(addr) => info!(address = %addr, tls = state.tls.is_some(), "admin endpoint listening"),
        Err(_) => info!("admin endpoint listening"),
    }
    let failed: Option<ByReason<HandshakeFailure>> = state.tls.as_ref().map(|_| {
        ByReason::new(|reason| {
            state
                .metrics
                .admin_handshake_failed
                .get_or_create_owned(&AdminReasonLabels {
                    reason: reason.to_string(),
                })
        })
    });
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            match (&state.tls, failed) {
                (Some(config), Some(failed)) => {
                    let config = config.clone();
                    match handshake(stream, config).await {
                        Ok(tls) => {
                            let client_cert = tls.connection().peer_certificates().is_some();
                            http(tls, state, client_cert).await;
                        }
                        Err(reason) => failed.inc(reason),
                    }
                }
                _ => http(stream, state, false).await,
            }
        });
    }
}

/// The TLS handshake of one admin connection, within 10 seconds.
async fn handshake(
    stream: TcpStream,
    config: Arc<ServerConfig>,
) -> Result<crate::tls::stream::TlsStream, HandshakeFailure> {
    let done = async {
        let start = crate::tls::stream::accept(stream).await?;
        start.finish(config).await
    };
    let result = match tokio::time::timeout(std::time::Duration::from_secs(10), done).await {
        Ok(Ok(tls)) => return Ok(tls),
        Ok(Err(e)) => {
            let reason = HandshakeFailure::of(&e);
            debug!(error = %e, reason = reason.as_str(), "admin TLS handshake failed");
            reason
        }
        Err(_) => HandshakeFailure::Timeout,
    };
    Err(result)
}

/// Serves HTTP/1.1 on one admin connection until it ends.
async fn http<IO>(io: IO, state: Arc<AdminState>, client_cert: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, &req, client_cert).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(error = %e, "admin connection error");
    }
}
