//! Choosing the server certificate for a handshake by SNI.
//!
//! Exact names win over wildcards; a wildcard covers one label. When several
//! certificates cover a name (an RSA and an ECDSA one, say), the first one
//! whose key the client can verify is chosen. A client that sends no SNI,
//! as many embedded MQTT clients connecting by IP do, or an unknown name,
//! gets the first certificate the client can use, in configuration order.
//! A name of an ACME entry whose certificate is not obtained yet gets
//! nothing: the handshake fails rather than serve another name's
//! certificate.
//!
//! Each certificate has a staple slot. The stapling task publishes the
//! current OCSP response there; the resolver reads it on every handshake
//! (wait-free) and serves the certificate with that response, rebuilding
//! the `CertifiedKey` only when the response changes. A response past its
//! serving window is never read back, so it is never stapled.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use moat_stapling::{Staple, StapleReader};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// An immutable SNI index over a listener's certificates. A reload builds a
/// new one.
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    staples: Vec<StapleSlot>,
    exact: HashMap<String, Vec<usize>>,
    wildcard: HashMap<String, Vec<usize>>,
    /// Names of ACME entries not obtained yet (lowercase).
    pending: Vec<String>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Where a certificate's stapling task publishes, and the last key built
/// with its response.
#[derive(Default)]
struct StapleSlot {
    reader: ArcSwapOption<StapleReader>,
    stapled: ArcSwapOption<(Arc<Staple>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// Indexes certificates by their DNS SANs; order is preference order.
    /// `pending` names are refused unless a certificate names them exactly.
    pub fn new(certs: &[LoadedCert], pending: &[&str]) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for name in &c.leaf().dns_names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix.to_string()),
                    None => (&mut exact, name.clone()),
                };
                let slot = map.entry(key).or_default();
                if !slot.contains(&i) {
                    slot.push(i);
                }
            }
        }
        Self {
            keys: certs.iter().map(|c| c.key.clone()).collect(),
            staples: certs.iter().map(|_| StapleSlot::default()).collect(),
            exact,
            wildcard,
            pending: pending.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Connects (or disconnects) certificate `index` to a stapling task.
    pub fn set_stapler(&self, index: usize, reader: Option<StapleReader>) {
        if let Some(slot) = self.staples.get(index) {
            slot.reader.store(reader.map(Arc::new));
        }
    }

    /// The response currently stapled to certificate `index`, if any.
    pub fn current_staple(&self, index: usize) -> Option<Arc<Staple>> {
        self.staples.get(index)?.reader.load().as_ref()?.current()
    }

    /// Certificate `index` with its current staple, if it has one.
    fn with_staple(&self, index: usize) -> Arc<CertifiedKey> {
        let base = &self.keys[index];
        let Some(staple) = self.current_staple(index) else {
            return base.clone();
        };
        let slot = &self.staples[index];
        if let Some(cached) = &*slot.stapled.load() {
            if Arc::ptr_eq(&cached.0, &staple) {
                return cached.1.clone();
            }
        }
        let mut key = (**base).clone();
        key.ocsp = Some(staple.der().to_vec());
        let key = Arc::new(key);
        slot.stapled.store(Some(Arc::new((staple, key.clone()))));
        key
    }

    /// The candidate certificates for a server name, best first.
    fn candidates(&self, name: &str) -> &[usize] {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(v) = self.exact.get(&name) {
            return v;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(v) = self.wildcard.get(parent) {
                return v;
            }
        }
        &[]
    }

    /// Picks a certificate for a server name and the signature schemes the
    /// client offered.
    pub fn pick(
        &self,
        server_name: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let usable = |i: &usize| self.keys[*i].key.choose_scheme(schemes).is_some();
        let by_name = server_name.map(|n| self.candidates(n)).unwrap_or(&[]);
        if by_name.is_empty() && server_name.is_some_and(|n| self.is_pending(n)) {
            return None;
        }
        let chosen = by_name
            .iter()
            .copied()
            .find(usable)
            // No name, or no match: the first certificate the client can use,
            // and failing that the first one (rustls then reports the error).
            .or_else(|| (0..self.keys.len()).find(usable))
            .or(if self.keys.is_empty() { None } else { Some(0) })?;
        Some(self.with_staple(chosen))
    }
}

impl SniResolver {
    /// Whether `name` belongs to an ACME entry with no certificate yet.
    fn is_pending(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.pending.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name(), hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::path::Path;

    fn cert_for(name: &str) -> LoadedCert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        super::super::certs::build(
            Path::new("c.pem"),
            Path::new("k.pem"),
            vec![cert.der().clone()],
            der,
            &rustls::crypto::aws_lc_rs::default_provider(),
            std::time::SystemTime::now(),
        )
        .expect("loads")
    }

    #[test]
    fn a_pending_acme_name_gets_no_other_names_certificate() {
        let schemes = [rustls::SignatureScheme::ECDSA_NISTP256_SHA256];
        let r = SniResolver::new(&[cert_for("files.test")], &["Acme.Test"]);
        assert!(r.pick(Some("acme.test."), &schemes).is_none());
        // Other names, and hellos without SNI, still get the default.
        assert!(r.pick(Some("other.test"), &schemes).is_some());
        assert!(r.pick(None, &schemes).is_some());
        // Once a certificate names it, it is served.
        let r = SniResolver::new(
            &[cert_for("files.test"), cert_for("acme.test")],
            &["acme.test"],
        );
        let k = r.pick(Some("acme.test"), &schemes).expect("served");
        assert!(Arc::ptr_eq(&k, &r.keys[1]));
        // A listener whose only entry is pending serves nothing.
        let r = SniResolver::new(&[], &["acme.test"]);
        assert!(r.pick(None, &schemes).is_none());
    }
}
