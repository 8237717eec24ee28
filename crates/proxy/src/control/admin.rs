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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::listener::ListenerShared;
use crate::metrics::Metrics;
use crate::reload::{self, Outcome, ReloadHandle, Trigger};
use crate::tls::certs::{rfc3339, unix, CertInfo};

/// Where `moat healthcheck` asks: an address and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTarget {
    /// The admin endpoint's address.
    pub addr: SocketAddr,
    /// The path to GET.
    pub path: String,
}

impl HealthTarget {
    /// `/healthz` on the admin listener; a wildcard address is asked on
    /// loopback.
    pub fn for_listen(listen: SocketAddr) -> Self {
        let ip = match listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        Self {
            addr: SocketAddr::new(ip, listen.port()),
            path: "/healthz".into(),
        }
    }

    /// Parses `http://HOST:PORT/PATH` (an IP address; no TLS, no names).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/healthz"),
        };
        let addr = authority.parse().map_err(|_| {
            format!("{url:?}: the host must be an IP address and port, e.g. 127.0.0.1:9090")
        })?;
        Ok(Self {
            addr,
            path: path.to_string(),
        })
    }

    /// GETs the path; `Ok` on a 2xx answer.
    pub fn check(&self, timeout: std::time::Duration) -> Result<(), String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.addr, timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = s.set_read_timeout(Some(timeout));
        let _ = s.set_write_timeout(Some(timeout));
        write!(
            s,
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        )
        .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head).map_err(|e| format!("no answer: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status = line.split(' ').nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "{} answered {:?}",
                self.path,
                line.lines().next().unwrap_or("")
            ))
        }
    }
}

/// Process health as the admin endpoint reports it: ready once serving and
/// not draining, and while no listener has lost its backend (when
/// `unready_after_backend_failures` is set).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    backends_down: std::sync::atomic::AtomicUsize,
}

impl Health {
    /// Marks the process ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.backends_down.load(Ordering::SeqCst) == 0
    }

    /// A listener's backend went down (`true`) or came back (`false`).
    pub fn backend_down(&self, down: bool) {
        if down {
            self.backends_down.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = self
                .backends_down
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }
}

/// What the handlers read.
pub struct AdminState {
    /// Readiness.
    pub health: Arc<Health>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The listeners, for `/certificates`.
    pub listeners: Vec<Arc<ListenerShared>>,
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
pub fn certificates_json(listeners: &[Arc<ListenerShared>]) -> serde_json::Value {
    let now = unix(std::time::SystemTime::now());
    let listeners: Vec<_> = listeners
        .iter()
        .map(|l| {
            let tls = l.tls.load();
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
                "name": l.config.name,
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
pub fn reload_json(outcomes: &[(String, Outcome)]) -> serde_json::Value {
    let listeners: Vec<_> = outcomes
        .iter()
        .map(|(name, o)| match o {
            Outcome::Reloaded { serial } => {
                serde_json::json!({ "name": name, "outcome": "reloaded", "serial": serial })
            }
            Outcome::Unchanged => serde_json::json!({ "name": name, "outcome": "unchanged" }),
            Outcome::StillFailing => serde_json::json!({ "name": name, "outcome": "failed" }),
            Outcome::Failed(e) => serde_json::json!({
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
