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
//!
//! It binds only where `admin.listen` says; keep it on loopback or a
//! private network, as it has no authentication.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::health::Health;
use super::reload::{self, ReloadHandle, ReloadOutcome, Trigger};
use crate::conn::Context;
use crate::metrics::Metrics;
use crate::tls::certs::{rfc3339, unix, CertInfo};

/// What the handlers read.
pub struct AdminState {
    /// Readiness.
    pub health: Arc<Health>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The listeners, for `/certificates`.
    pub listeners: Vec<Arc<Context>>,
    /// For `POST /reload`.
    pub reloader: ReloadHandle,
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
            serde_json::json!({
                "name": l.name,
                "loaded_at": rfc3339(unix(tls.loaded_at)),
                "certificates": certs,
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

async fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/certificates") => {
            json(StatusCode::OK, &certificates_json(&state.listeners))
        }
        (&Method::POST, "/reload") => {
            let outcomes = state.reloader.reload(Trigger::Admin).await;
            let status = if reload::all_ok(&outcomes) {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json(status, &reload_json(&outcomes))
        }
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if state.health.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(Metrics::CONTENT_TYPE),
            );
            r
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/certificates" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /metrics, /certificates or POST /reload\n",
        ),
    }
}

/// Serves the admin endpoint on an already-bound listener until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    match listener.local_addr() {
        Ok(addr) => info!(address = %addr, "admin endpoint listening"),
        Err(_) => info!("admin endpoint listening"),
    }
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
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}
