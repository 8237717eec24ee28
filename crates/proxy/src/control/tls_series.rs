//! The metric series that describe one listener's TLS state: the validity
//! of every certificate it serves and trusts, and of its CRLs. A reload
//! replaces them, so a rotated certificate's series goes away.

use crate::metrics::labels::{CertLabels, CrlLabels};
use crate::metrics::Metrics;
use crate::tls::certs::CertInfo;
use crate::tls::ListenerTls;

/// The series of one listener's TLS state, to be replaced on the next
/// reload.
#[derive(Debug, Clone, Default)]
pub struct TlsSeries {
    certs: Vec<CertLabels>,
    crls: Vec<CrlLabels>,
}

impl TlsSeries {
    /// Takes these series out of `m`.
    pub fn remove(&self, m: &Metrics) {
        for labels in &self.certs {
            m.cert_not_after.remove(labels);
            m.cert_not_before.remove(labels);
        }
        for labels in &self.crls {
            m.crl_next_update.remove(labels);
            m.crl_this_update.remove(labels);
        }
    }

    /// Exports the validity of every certificate a listener serves and
    /// trusts, and of its CRLs, replacing the series of `previous`.
    pub fn export(
        m: &Metrics,
        listener: &str,
        tls: &ListenerTls,
        previous: &TlsSeries,
    ) -> TlsSeries {
        previous.remove(m);
        let mut series = TlsSeries::default();
        let mut add = |path: &std::path::Path, role: &str, c: &CertInfo| {
            let labels = CertLabels {
                listener: listener.to_string(),
                certificate: path.display().to_string(),
                role: role.to_string(),
                subject: c.subject.clone(),
                serial: c.serial.clone(),
            };
            m.cert_not_after
                .get_or_create_owned(&labels)
                .set(c.not_after);
            m.cert_not_before
                .get_or_create_owned(&labels)
                .set(c.not_before);
            series.certs.push(labels);
        };
        for cert in &tls.certs {
            for (i, c) in cert.chain.iter().enumerate() {
                add(&cert.cert_path, if i == 0 { "leaf" } else { "chain" }, c);
            }
        }
        if let Some(path) = &tls.client_ca_path {
            for c in &tls.client_cas {
                add(path, "client_ca", c);
            }
        }
        for crl in &tls.crls {
            let labels = CrlLabels {
                listener: listener.to_string(),
                crl: crl.path.display().to_string(),
                issuer: crl.issuer.clone(),
            };
            if let Some(next) = crl.next_update {
                m.crl_next_update.get_or_create_owned(&labels).set(next);
            }
            m.crl_this_update
                .get_or_create_owned(&labels)
                .set(crl.this_update);
            series.crls.push(labels);
        }
        series
    }
}
