//! OCSP stapling for a listener's certificates: which ones to staple, the
//! stapling tasks (from `moat-stapling`), and their metrics.
//!
//! With `stapling: auto` (the default) a certificate is stapled when its
//! chain includes the issuer and it names an OCSP responder (or a
//! responder URL or response file is configured); the others are left
//! alone with a note in the log. `true` staples everything it can and says
//! loudly what it cannot. A reload keeps a certificate's task when the leaf
//! and issuer are unchanged, and starts a new one, which fetches at once,
//! for a new leaf.

use std::sync::Arc;

use moat_stapling::{
    leaf_facts, RefreshError, StapleObserver, StapleStatus, StapleTarget, Stapler, StaplerHandle,
    StaplingConfig,
};
use tracing::{debug, error, info, warn};

use crate::config::{ListenerConfig, Stapling};
use crate::metrics::labels::{StapleLabels, StapleResultLabels, StapleStatusLabels};
use crate::metrics::Metrics;
use crate::tls::ListenerTls;

/// Why a certificate is not stapled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `stapling: false`.
    Off,
    /// The certificate names no responder and none is configured: the
    /// normal case for private CAs, and no reason to worry.
    NoResponder(String),
    /// It could be stapled but the chain lacks the issuer: a mistake.
    NoIssuer(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("stapling is off"),
            Self::NoResponder(why) | Self::NoIssuer(why) => f.write_str(why),
        }
    }
}

/// Why a certificate is not stapled, or `None` when it should be.
pub fn skip_reason(listener: &ListenerConfig, index: usize, tls: &ListenerTls) -> Option<Skip> {
    let o = &listener.tls.ocsp;
    if o.stapling == Stapling::Off {
        return Some(Skip::Off);
    }
    let cert = &tls.certs[index];
    let entry = &listener.tls.certificates[tls.entry(index)];
    let has_file = o.static_file.is_some() || entry.ocsp_file.is_some();
    let has_url = o.responder_url.is_some()
        || leaf_facts(&cert.key.cert[0]).is_ok_and(|f| f.responder_url.is_some());
    if !has_file && !has_url {
        return Some(Skip::NoResponder(format!(
            "{} names no OCSP responder (no Authority Information Access OCSP URL); set tls.ocsp.responder_url or a response file",
            cert.cert_path.display()
        )));
    }
    if cert.issuer_der().is_none() {
        return Some(Skip::NoIssuer(format!(
            "{} holds only the leaf; stapling needs the issuer's certificate after it in the chain",
            cert.cert_path.display()
        )));
    }
    None
}

/// `entry` is the certificate's index in `tls.certificates`.
fn stapling_config(listener: &ListenerConfig, entry: usize) -> StaplingConfig {
    let o = &listener.tls.ocsp;
    StaplingConfig {
        responder_url: o.responder_url.clone(),
        refresh_fraction: o.refresh_fraction,
        cache_dir: o.cache_dir.clone(),
        static_file: listener.tls.certificates[entry]
            .ocsp_file
            .clone()
            .or_else(|| o.static_file.clone()),
        ..StaplingConfig::default()
    }
}

/// Turns stapling events into metrics.
struct MetricsObserver {
    listener: String,
    certificate: String,
    metrics: Arc<Metrics>,
}

impl StapleObserver for MetricsObserver {
    fn staple_changed(&self, status: &StapleStatus) {
        set_staple(&self.metrics, &self.listener, &self.certificate, status);
    }

    fn refresh_result(&self, _name: &str, result: Result<(), &RefreshError>) {
        let label = match result {
            Ok(()) => "success",
            Err(e) => e.reason(),
        };
        ocsp_refresh(&self.metrics, &self.listener, &self.certificate, label);
    }

    fn cache_write_failed(&self, name: &str, e: &std::io::Error) {
        warn!(certificate = name, error = %e, "cannot write the OCSP response cache; stapling goes on");
        ocsp_cache_write_failed(&self.metrics, &self.listener, &self.certificate);
    }

    fn must_staple_without_staple(&self, name: &str) {
        warn!(certificate = name, "this certificate is Must-Staple but has no valid OCSP response; clients that honour Must-Staple will refuse it");
    }
}

/// Exports the stapling state of one certificate.
fn set_staple(m: &Metrics, listener: &str, certificate: &str, status: &StapleStatus) {
    let l = StapleLabels {
        listener: listener.to_string(),
        certificate: certificate.to_string(),
    };
    m.ocsp_stapled
        .get_or_create_owned(&l)
        .set(i64::from(status.staple.is_some()));
    m.ocsp_must_staple_unmet
        .get_or_create_owned(&l)
        .set(i64::from(status.must_staple_unmet()));
    let Some(staple) = &status.staple else { return };
    let secs = crate::tls::certs::unix;
    m.ocsp_next_update
        .get_or_create_owned(&l)
        .set(secs(staple.next_update()));
    m.ocsp_this_update
        .get_or_create_owned(&l)
        .set(secs(staple.this_update()));
    let current = match staple.cert_status() {
        moat_stapling::CertStatus::Good => "good",
        moat_stapling::CertStatus::Revoked { .. } => "revoked",
        _ => "unknown",
    };
    for s in ["good", "revoked", "unknown"] {
        m.ocsp_status
            .get_or_create_owned(&StapleStatusLabels {
                listener: listener.to_string(),
                certificate: certificate.to_string(),
                status: s.to_string(),
            })
            .set(i64::from(s == current));
    }
}

/// Counts an OCSP refresh by result.
fn ocsp_refresh(m: &Metrics, listener: &str, certificate: &str, result: &str) {
    m.ocsp_refreshes
        .get_or_create_owned(&StapleResultLabels {
            listener: listener.to_string(),
            certificate: certificate.to_string(),
            result: result.to_string(),
        })
        .inc();
}

/// Counts a failed OCSP cache write.
fn ocsp_cache_write_failed(m: &Metrics, listener: &str, certificate: &str) {
    m.ocsp_cache_write_failures
        .get_or_create_owned(&StapleLabels {
            listener: listener.to_string(),
            certificate: certificate.to_string(),
        })
        .inc();
}

/// Starts, keeps or replaces the stapling task of every certificate of a
/// listener's new TLS state, and connects each to the state's resolver.
/// `tasks` holds the previous tasks, by certificate position.
pub fn sync(
    listener: &ListenerConfig,
    tls: &ListenerTls,
    tasks: &mut Vec<Option<StaplerHandle>>,
    metrics: &Arc<Metrics>,
) {
    let mut next: Vec<Option<StaplerHandle>> = Vec::with_capacity(tls.certs.len());
    let mut previous: Vec<StaplerHandle> = tasks.drain(..).flatten().collect();
    for (i, cert) in tls.certs.iter().enumerate() {
        let certificate = cert.cert_path.display().to_string();
        if let Some(why) = skip_reason(listener, i, tls) {
            match (listener.tls.ocsp.stapling, &why) {
                (_, Skip::Off) => {}
                (Stapling::On, _) => {
                    error!(listener = %listener.name, certificate, "OCSP stapling is on but impossible: {why}")
                }
                (_, Skip::NoIssuer(_)) => {
                    warn!(listener = %listener.name, certificate, "not stapling OCSP: {why}")
                }
                (_, Skip::NoResponder(_)) => {
                    debug!(listener = %listener.name, certificate, "not stapling OCSP: {why}")
                }
            }
            next.push(None);
            tls.resolver.set_stapler(i, None);
            continue;
        }
        let (leaf, issuer) = (&cert.key.cert[0], &cert.key.cert[1]);
        // A reload that kept the leaf keeps its task (and its staple).
        let handle = match previous.iter().position(|h| h.serves(leaf, issuer)) {
            Some(p) => Some(previous.swap_remove(p)),
            None => {
                let target = StapleTarget {
                    name: format!("{}:{}", listener.name, certificate),
                    leaf_der: leaf.to_vec(),
                    issuer_der: issuer.to_vec(),
                };
                let observer = Arc::new(MetricsObserver {
                    listener: listener.name.clone(),
                    certificate: certificate.clone(),
                    metrics: metrics.clone(),
                });
                match Stapler::spawn(target, stapling_config(listener, tls.entry(i)), observer) {
                    Ok(h) => {
                        info!(listener = %listener.name, certificate, "OCSP stapling started");
                        Some(h)
                    }
                    Err(e) => {
                        warn!(listener = %listener.name, certificate, error = %e, "cannot staple OCSP for this certificate");
                        None
                    }
                }
            }
        };
        tls.resolver
            .set_stapler(i, handle.as_ref().map(|h| h.reader()));
        next.push(handle);
    }
    // Tasks of leaves no longer served stop when dropped here.
    drop(previous);
    *tasks = next;
}
