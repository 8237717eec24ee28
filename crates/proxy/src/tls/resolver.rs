//! Choosing the server certificate for a handshake by SNI.
//!
//! Exact names win over wildcards; a wildcard covers one label. When several
//! certificates cover a name (an RSA and an ECDSA one, say), the first one
//! whose key the client can verify is chosen. A client that sends no SNI,
//! as many embedded MQTT clients connecting by IP do, or an unknown name,
//! gets the first certificate the client can use, in configuration order.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// An immutable SNI index over a listener's certificates. A reload builds a
/// new one.
#[derive(Debug)]
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    exact: HashMap<String, Vec<usize>>,
    wildcard: HashMap<String, Vec<usize>>,
}

impl SniResolver {
    /// Indexes certificates by their DNS SANs; order is preference order.
    pub fn new(certs: &[LoadedCert]) -> Self {
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
            exact,
            wildcard,
        }
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
        let chosen = by_name
            .iter()
            .copied()
            .find(usable)
            // No name, or no match: the first certificate the client can use,
            // and failing that the first one (rustls then reports the error).
            .or_else(|| (0..self.keys.len()).find(usable))
            .or(if self.keys.is_empty() { None } else { Some(0) })?;
        Some(self.keys[chosen].clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name(), hello.signature_schemes())
    }
}
